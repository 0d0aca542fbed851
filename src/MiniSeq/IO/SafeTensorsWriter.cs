// Writes .safetensors files from float32 data: F32 as is, or rounded to BF16 / F16. Tensors are written in ordinal
// name order (header keys and data alike), so the same tensors always give the same bytes. The header is padded
// with spaces to a multiple of 8 bytes, as the reference implementation does, which keeps the data section aligned.
// Deliberately not: atomic replacement (see AtomicDirectory) or integer dtypes.
using System.Buffers;
using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text.Json;
using MiniSeq.Tensors;

namespace MiniSeq.IO;

/// <summary>Collects float32 tensors and writes them as one <c>.safetensors</c> file.</summary>
/// <remarks>
/// Views added with <see cref="Add(string, ReadOnlySpan{int}, TensorView, SafeTensorsDType)"/> are not copied: their
/// memory must stay alive and unchanged until <see cref="Write(string)"/> returns.
/// </remarks>
public sealed class SafeTensorsWriter
{
    private const int ChunkBytes = 1 << 20;

    private readonly SortedDictionary<string, Entry> _entries = new(StringComparer.Ordinal);

    /// <summary>The <c>__metadata__</c> entries to write; written only when non-empty. Transformers expects
    /// <c>{"format": "pt"}</c>, which <see cref="ModelDirectory"/> sets.</summary>
    public IDictionary<string, string> Metadata { get; } = new SortedDictionary<string, string>(StringComparer.Ordinal);

    /// <summary>Number of tensors added.</summary>
    public int Count => _entries.Count;

    /// <summary>Bytes the data section will take.</summary>
    public long DataBytes => _entries.Values.Sum(e => e.ByteLength);

    /// <summary>Adds a tensor backed by native memory (not copied).</summary>
    /// <param name="name">Unique tensor name.</param>
    /// <param name="shape">Dimensions, outermost first; their product must equal <paramref name="data"/>'s length.</param>
    /// <param name="data">The values, row-major.</param>
    /// <param name="dtype">Stored type: F32 (exact), BF16 or F16 (round-to-nearest-even).</param>
    public unsafe void Add(string name, ReadOnlySpan<int> shape, TensorView data, SafeTensorsDType dtype = SafeTensorsDType.F32)
    {
        float* pointer = data.Pointer;
        AddEntry(name, shape, data.Length, dtype, (offset, count) => new ReadOnlySpan<float>(pointer + offset, count));
    }

    /// <summary>Adds a tensor backed by managed memory (not copied).</summary>
    /// <inheritdoc cref="Add(string, ReadOnlySpan{int}, TensorView, SafeTensorsDType)"/>
    public void Add(string name, ReadOnlySpan<int> shape, ReadOnlyMemory<float> data, SafeTensorsDType dtype = SafeTensorsDType.F32)
        => AddEntry(name, shape, data.Length, dtype, (offset, count) => data.Span.Slice(checked((int)offset), count));

    /// <summary>Writes the file (overwriting <paramref name="path"/>) and flushes it to disk.</summary>
    public void Write(string path)
    {
        byte[] header = BuildHeader();
        using var stream = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, bufferSize: 1 << 16);
        Span<byte> length = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)header.Length);
        stream.Write(length);
        stream.Write(header);
        byte[] buffer = ArrayPool<byte>.Shared.Rent(ChunkBytes);
        try
        {
            foreach (Entry entry in _entries.Values)
            {
                WriteData(stream, entry, buffer);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }

        stream.Flush(flushToDisk: true);
    }

    private void AddEntry(string name, ReadOnlySpan<int> shape, long length, SafeTensorsDType dtype, Func<long, int, ReadOnlySpan<float>> source)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        if (name == SafeTensors.MetadataKey)
        {
            throw new ArgumentException($"'{SafeTensors.MetadataKey}' is reserved for metadata.", nameof(name));
        }

        if (dtype is not (SafeTensorsDType.F32 or SafeTensorsDType.BF16 or SafeTensorsDType.F16))
        {
            throw new ArgumentException($"Tensor '{name}': the writer stores F32, BF16 or F16, not {SafeTensors.DTypeName(dtype)}.", nameof(dtype));
        }

        long count = 1;
        foreach (int d in shape)
        {
            ArgumentOutOfRangeException.ThrowIfNegative(d, nameof(shape));
            count = checked(count * d);
        }

        if (count != length)
        {
            throw new ArgumentException($"Tensor '{name}': shape {SafeTensors.FormatShape(shape.ToArray())} has {count} elements but the data has {length}.", nameof(shape));
        }

        if (!_entries.TryAdd(name, new Entry(dtype, shape.ToArray(), count, source)))
        {
            throw new ArgumentException($"Tensor '{name}' was already added.", nameof(name));
        }
    }

    private byte[] BuildHeader()
    {
        var output = new ArrayBufferWriter<byte>();
        using (var json = new Utf8JsonWriter(output))
        {
            json.WriteStartObject();
            if (Metadata.Count > 0)
            {
                json.WriteStartObject(SafeTensors.MetadataKey);
                foreach (KeyValuePair<string, string> pair in Metadata)
                {
                    json.WriteString(pair.Key, pair.Value);
                }

                json.WriteEndObject();
            }

            long offset = 0;
            foreach (KeyValuePair<string, Entry> pair in _entries)
            {
                Entry entry = pair.Value;
                json.WriteStartObject(pair.Key);
                json.WriteString("dtype", SafeTensors.DTypeName(entry.DType));
                json.WriteStartArray("shape");
                foreach (int d in entry.Shape)
                {
                    json.WriteNumberValue(d);
                }

                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                json.WriteNumberValue(offset + entry.ByteLength);
                json.WriteEndArray();
                json.WriteEndObject();
                offset += entry.ByteLength;
            }

            json.WriteEndObject();
        }

        // Pad with spaces (valid trailing JSON whitespace) so that the data section starts 8-byte aligned.
        int padded = (output.WrittenCount + 7) & ~7;
        byte[] header = new byte[padded];
        output.WrittenSpan.CopyTo(header);
        header.AsSpan(output.WrittenCount).Fill((byte)' ');
        return header;
    }

    private static void WriteData(FileStream stream, Entry entry, byte[] buffer)
    {
        int elementSize = SafeTensors.ElementSize(entry.DType);
        int chunkElements = ChunkBytes / elementSize;
        for (long done = 0; done < entry.Count;)
        {
            int n = (int)Math.Min(chunkElements, entry.Count - done);
            ReadOnlySpan<float> values = entry.Source(done, n);
            Span<byte> bytes = buffer.AsSpan(0, n * elementSize);
            switch (entry.DType)
            {
                case SafeTensorsDType.F32 when BitConverter.IsLittleEndian:
                    MemoryMarshal.AsBytes(values).CopyTo(bytes);
                    break;
                case SafeTensorsDType.F32:
                    for (int i = 0; i < n; i++)
                    {
                        BinaryPrimitives.WriteSingleLittleEndian(bytes[(4 * i)..], values[i]);
                    }

                    break;
                case SafeTensorsDType.BF16:
                    for (int i = 0; i < n; i++)
                    {
                        BinaryPrimitives.WriteUInt16LittleEndian(bytes[(2 * i)..], SafeTensors.FloatToBFloat16(values[i]));
                    }

                    break;
                default:
                    for (int i = 0; i < n; i++)
                    {
                        BinaryPrimitives.WriteHalfLittleEndian(bytes[(2 * i)..], (Half)values[i]);
                    }

                    break;
            }

            stream.Write(bytes);
            done += n;
        }
    }

    private sealed record Entry(SafeTensorsDType DType, int[] Shape, long Count, Func<long, int, ReadOnlySpan<float>> Source)
    {
        public long ByteLength => Count * SafeTensors.ElementSize(DType);
    }
}
