// The key/value cache of incremental decoding: per layer, the rotated keys and the values of every position decoded so
// far, KvH·D floats per position (grouped-query aware: only the key/value heads are stored, never the H query heads).
using MiniSeq.Model;
using MiniSeq.Tensors;

namespace MiniSeq.Generation;

/// <summary>Keys (after q/k norm and RoPE) and values of positions [0, <see cref="Length"/>) for every layer.</summary>
public sealed unsafe class KvCache : IDisposable
{
    private readonly NativeBuffer _buffer; // layer l: keys (MaxLength, KvH·D) then values (MaxLength, KvH·D)

    /// <summary>Allocates the cache for up to <paramref name="maxLength"/> positions (accounted as activations).</summary>
    public KvCache(LlamaConfig config, int maxLength, MemoryLedger? ledger = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxLength);
        Layers = config.NumHiddenLayers;
        Width = config.KeyValueDim;
        MaxLength = maxLength;
        _buffer = new NativeBuffer(2L * Layers * maxLength * Width, MemoryCategory.Activations, ledger, "kv-cache");
    }

    /// <summary>Number of layers.</summary>
    public int Layers { get; }

    /// <summary>Floats per position and tensor: KvH·D.</summary>
    public int Width { get; }

    /// <summary>Positions the cache can hold.</summary>
    public int MaxLength { get; }

    /// <summary>Positions filled so far (the position of the next token).</summary>
    public int Length { get; private set; }

    /// <summary>Bytes held by the cache.</summary>
    public long Bytes => _buffer.Length * sizeof(float);

    /// <summary>Keys of layer <paramref name="layer"/>: (MaxLength, KvH·D), rows [0, Length) valid.</summary>
    public float* Keys(int layer) => _buffer.Pointer + (2L * layer * MaxLength * Width);

    /// <summary>Values of layer <paramref name="layer"/>: (MaxLength, KvH·D), rows [0, Length) valid.</summary>
    public float* Values(int layer) => Keys(layer) + ((long)MaxLength * Width);

    /// <summary>Marks one more position as filled (after every layer wrote its row at <see cref="Length"/>).</summary>
    internal void Advance()
    {
        if (Length >= MaxLength)
        {
            throw new InvalidOperationException($"The KV cache holds {MaxLength} positions and is full.");
        }

        Length++;
    }

    /// <summary>Marks <paramref name="count"/> more positions as filled (a batched prefill wrote their rows).</summary>
    internal void Advance(int count)
    {
        if (count < 0 || count > MaxLength - Length)
        {
            throw new InvalidOperationException($"The KV cache holds {MaxLength} positions; {Length} are filled and {count} more do not fit.");
        }

        Length += count;
    }

    /// <summary>Forgets every position (the memory is reused).</summary>
    public void Reset() => Length = 0;

    /// <summary>Frees the cache.</summary>
    public void Dispose() => _buffer.Dispose();
}
