// One 64-byte-aligned native block of floats, accounted to a MemoryLedger category. Arenas are NativeBuffers carved
// into views by a plan; there is no per-tensor allocation and no GC array for large data.
using System.Runtime.InteropServices;

namespace MiniSeq.Tensors;

/// <summary>An owned, 64-byte-aligned, zero-initialised native float buffer.</summary>
public sealed unsafe class NativeBuffer : IDisposable
{
    private float* _pointer;
    private readonly MemoryLedger _ledger;

    /// <summary>Allocates <paramref name="length"/> floats, zeroed, and accounts them to <paramref name="category"/>.</summary>
    public NativeBuffer(long length, MemoryCategory category, MemoryLedger? ledger = null, string? name = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        Length = length;
        Category = category;
        Name = name ?? category.ToString();
        _ledger = ledger ?? MemoryLedger.Shared;
        nuint bytes = (nuint)Math.Max(64, length * sizeof(float));
        try
        {
            _pointer = (float*)NativeMemory.AlignedAlloc(bytes, 64);
        }
        catch (OutOfMemoryException)
        {
            throw new OutOfMemoryException($"Could not allocate {ByteSize.Format((long)bytes)} for {Name} ({category}). Use a smaller sequence length or batch, or a memory-saving policy (--checkpoint on, --mst-mlp auto, --mst-lm auto); `miniseq plan` predicts what fits.");
        }

        NativeMemory.Clear(_pointer, bytes);
        _ledger.Add(category, length * sizeof(float));
    }

    /// <summary>Number of floats.</summary>
    public long Length { get; }

    /// <summary>What the buffer is accounted to.</summary>
    public MemoryCategory Category { get; }

    /// <summary>A name for messages.</summary>
    public string Name { get; }

    /// <summary>Start of the buffer.</summary>
    public float* Pointer => _pointer != null ? _pointer : throw new ObjectDisposedException(Name);

    /// <summary>The whole buffer as a view.</summary>
    public TensorView View => new(Pointer, Length);

    /// <summary>A view of [offset, offset + length).</summary>
    public TensorView Slice(long offset, long length)
    {
        if (offset < 0 || length < 0 || offset + length > Length)
        {
            throw new ArgumentOutOfRangeException(nameof(offset), $"Slice [{offset}, {offset + length}) is outside {Name} of {Length} floats.");
        }

        return new TensorView(Pointer + offset, length);
    }

    /// <summary>Frees the memory and returns its bytes to the ledger.</summary>
    public void Dispose()
    {
        if (_pointer != null)
        {
            NativeMemory.AlignedFree(_pointer);
            _pointer = null;
            _ledger.Add(Category, -Length * sizeof(float));
        }

        GC.SuppressFinalize(this);
    }

    /// <summary>Frees the memory if Dispose was not called.</summary>
    ~NativeBuffer()
    {
        if (_pointer != null)
        {
            NativeMemory.AlignedFree(_pointer);
            _pointer = null;
            _ledger.Add(Category, -Length * sizeof(float));
        }
    }
}
