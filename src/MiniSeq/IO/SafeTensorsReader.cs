// Reads .safetensors files: 8-byte little-endian header length N, N bytes of JSON header, then the raw data section.
// The header is validated completely when the file is opened; tensor data is streamed with RandomAccess.Read in
// bounded chunks straight into native memory, so multi-GB files never pass through managed arrays.
// Deliberately not: memory mapping, writing, or converting to anything other than float32.
using System.Buffers;
using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text.Json;
using Microsoft.Win32.SafeHandles;
using MiniSeq.Diagnostics;
using MiniSeq.Tensors;

namespace MiniSeq.IO;

/// <summary>An open <c>.safetensors</c> file: its validated header and float32 reads of its tensors.</summary>
/// <remarks>
/// Every structural problem (truncation, header length, malformed JSON, unknown dtype, offsets out of range or
/// overlapping, byte length ≠ shape product × element size) is reported by <see cref="Open"/> as an
/// <see cref="InvalidDataException"/> naming the file, the tensor and what to do. Reads are positional, so one reader
/// may serve several threads at once.
/// </remarks>
public sealed class SafeTensorsReader : IDisposable
{
    private const int ChunkBytes = 1 << 20;
    private const string ReExportHint = "Re-export the file with the safetensors library (e.g. model.save_pretrained(dir, safe_serialization=True)).";

    private readonly SafeFileHandle _handle;
    private readonly Dictionary<string, SafeTensorInfo> _byName;
    private readonly long _dataStart;

    private SafeTensorsReader(string path, SafeFileHandle handle, long dataStart, List<SafeTensorInfo> tensors,
        Dictionary<string, string> metadata)
    {
        Path = path;
        _handle = handle;
        _dataStart = dataStart;
        Tensors = tensors;
        Metadata = metadata;
        _byName = new Dictionary<string, SafeTensorInfo>(tensors.Count, StringComparer.Ordinal);
        foreach (SafeTensorInfo t in tensors)
        {
            _byName.Add(t.Name, t);
        }
    }

    /// <summary>The file this reader was opened on.</summary>
    public string Path { get; }

    /// <summary>All tensors, in the order of their data in the file.</summary>
    public IReadOnlyList<SafeTensorInfo> Tensors { get; }

    /// <summary>The optional <c>__metadata__</c> entries (empty when absent).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>Opens <paramref name="path"/> and validates its header.</summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="InvalidDataException">The file is not a well-formed safetensors file.</exception>
    public static SafeTensorsReader Open(string path)
    {
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"{path}: safetensors file not found.", path);
        }

        SafeFileHandle handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.RandomAccess);
        try
        {
            (long dataStart, List<SafeTensorInfo> tensors, Dictionary<string, string> metadata) = ReadHeader(path, handle);
            return new SafeTensorsReader(path, handle, dataStart, tensors, metadata);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    /// <summary>Whether the file holds a tensor named <paramref name="name"/>.</summary>
    public bool Contains(string name) => _byName.ContainsKey(name);

    /// <summary>Looks up a tensor by name.</summary>
    public bool TryGetTensor(string name, out SafeTensorInfo info) => _byName.TryGetValue(name, out info!);

    /// <summary>The tensor named <paramref name="name"/>.</summary>
    /// <exception cref="InvalidDataException">The file has no such tensor.</exception>
    public SafeTensorInfo GetTensor(string name)
    {
        if (!_byName.TryGetValue(name, out SafeTensorInfo? info))
        {
            Throw.InvalidData(Path, $"tensor '{name}' is missing (the file has {_byName.Count} tensors)",
                "Check that the checkpoint was exported from a model with the expected architecture.");
        }

        return info;
    }

    /// <summary>Reads tensor <paramref name="name"/> converted to float32 into <paramref name="destination"/>.</summary>
    /// <remarks>F32 is copied; BF16 effectively computes <c>BitConverter.Int32BitsToSingle(bits &lt;&lt; 16)</c> and F16
    /// <c>(float)Half</c>, both exact; F64 is rounded to the nearest float.</remarks>
    /// <exception cref="ArgumentException"><paramref name="destination"/> does not hold exactly the tensor's elements.</exception>
    /// <exception cref="InvalidDataException">The tensor is missing, not a float dtype, or the file ends early.</exception>
    public unsafe void ReadFloat32(string name, TensorView destination) => ReadFloat32(GetTensor(name), destination);

    /// <summary>Reads tensor <paramref name="name"/> converted to float32 into <paramref name="destination"/>.</summary>
    /// <inheritdoc cref="ReadFloat32(string, TensorView)"/>
    public unsafe void ReadFloat32(string name, Span<float> destination)
    {
        fixed (float* p = destination)
        {
            ReadFloat32(GetTensor(name), new TensorView(p, destination.Length));
        }
    }

    /// <summary>Reads tensor <paramref name="name"/> converted to float32 into a new array (for small tensors and tests).</summary>
    public float[] ReadFloat32(string name)
    {
        SafeTensorInfo info = GetTensor(name);
        var values = new float[checked((int)info.ElementCount)];
        ReadFloat32(name, values);
        return values;
    }

    /// <summary>Reads the tensor described by <paramref name="info"/> (from <see cref="Tensors"/>) into <paramref name="destination"/>.</summary>
    /// <inheritdoc cref="ReadFloat32(string, TensorView)"/>
    public unsafe void ReadFloat32(SafeTensorInfo info, TensorView destination)
    {
        ArgumentNullException.ThrowIfNull(info);
        if (destination.Length != info.ElementCount)
        {
            throw new ArgumentException(
                $"{Path}: tensor '{info.Name}' {info.ShapeText} has {info.ElementCount} elements but the destination holds {destination.Length}.",
                nameof(destination));
        }

        if (!SafeTensors.IsConvertibleToFloat(info.DType))
        {
            Throw.InvalidData(Path, $"tensor '{info.Name}' has dtype {SafeTensors.DTypeName(info.DType)}, which cannot be read as float32",
                "Export the weights as F32, BF16 or F16.");
        }

        long fileOffset = _dataStart + info.DataBegin;
        if (info.DType == SafeTensorsDType.F32)
        {
            // Straight into the destination, in chunks that fit a Span<byte>.
            byte* target = (byte*)destination.Pointer;
            long remaining = info.ByteLength;
            while (remaining > 0)
            {
                int n = (int)Math.Min(remaining, 64 * ChunkBytes);
                ReadExactly(info, new Span<byte>(target, n), fileOffset);
                if (!BitConverter.IsLittleEndian)
                {
                    Span<int> ints = MemoryMarshal.Cast<byte, int>(new Span<byte>(target, n));
                    BinaryPrimitives.ReverseEndianness(ints, ints);
                }

                target += n;
                fileOffset += n;
                remaining -= n;
            }

            return;
        }

        int elementSize = SafeTensors.ElementSize(info.DType);
        byte[] buffer = ArrayPool<byte>.Shared.Rent(ChunkBytes);
        try
        {
            float* output = destination.Pointer;
            long remainingElements = info.ElementCount;
            int chunkElements = ChunkBytes / elementSize;
            while (remainingElements > 0)
            {
                int count = (int)Math.Min(remainingElements, chunkElements);
                Span<byte> bytes = buffer.AsSpan(0, count * elementSize);
                ReadExactly(info, bytes, fileOffset);
                Convert(info.DType, bytes, new Span<float>(output, count));
                output += count;
                fileOffset += bytes.Length;
                remainingElements -= count;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>Closes the file.</summary>
    public void Dispose() => _handle.Dispose();

    private static void Convert(SafeTensorsDType dtype, ReadOnlySpan<byte> source, Span<float> destination)
    {
        switch (dtype)
        {
            case SafeTensorsDType.BF16:
                for (int i = 0; i < destination.Length; i++)
                {
                    destination[i] = SafeTensors.BFloat16ToFloat(BinaryPrimitives.ReadUInt16LittleEndian(source[(2 * i)..]));
                }

                break;
            case SafeTensorsDType.F16:
                for (int i = 0; i < destination.Length; i++)
                {
                    destination[i] = (float)BinaryPrimitives.ReadHalfLittleEndian(source[(2 * i)..]);
                }

                break;
            case SafeTensorsDType.F64:
                for (int i = 0; i < destination.Length; i++)
                {
                    destination[i] = (float)BinaryPrimitives.ReadDoubleLittleEndian(source[(8 * i)..]);
                }

                break;
            default:
                throw new InvalidOperationException($"No float conversion for {dtype}.");
        }
    }

    private void ReadExactly(SafeTensorInfo info, Span<byte> destination, long fileOffset)
    {
        while (!destination.IsEmpty)
        {
            int n = RandomAccess.Read(_handle, destination, fileOffset);
            if (n <= 0)
            {
                Throw.InvalidData(Path, $"tensor '{info.Name}': the file ended at byte {fileOffset} while reading its data (file truncated?)",
                    "Copy or download the file again; " + ReExportHint);
            }

            destination = destination[n..];
            fileOffset += n;
        }
    }

    private static (long DataStart, List<SafeTensorInfo> Tensors, Dictionary<string, string> Metadata) ReadHeader(
        string path, SafeFileHandle handle)
    {
        long fileLength = RandomAccess.GetLength(handle);
        if (fileLength < 8)
        {
            Throw.InvalidData(path, $"file is truncated: {fileLength} bytes, shorter than the 8-byte header length",
                "Copy or download the file again; " + ReExportHint);
        }

        Span<byte> lengthBytes = stackalloc byte[8];
        ReadAll(path, handle, lengthBytes, 0);
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(lengthBytes);
        if (headerLength > (ulong)(fileLength - 8))
        {
            Throw.InvalidData(path, $"header length {headerLength} reaches beyond the end of the file ({fileLength} bytes; file truncated or not safetensors?)",
                "Copy or download the file again; " + ReExportHint);
        }

        if (headerLength < 2 || headerLength > SafeTensors.MaxHeaderBytes)
        {
            Throw.InvalidData(path, $"header length {headerLength} is outside [2, {SafeTensors.MaxHeaderBytes}] (not a safetensors file?)", ReExportHint);
        }

        var header = new byte[headerLength];
        ReadAll(path, handle, header, 8);
        long dataStart = 8 + (long)headerLength;
        long dataLength = fileLength - dataStart;

        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(header);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: the header is not valid JSON ({e.Message}). {ReExportHint}", e);
        }

        var tensors = new List<SafeTensorInfo>();
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object)
            {
                Throw.InvalidData(path, $"the header is a JSON {document.RootElement.ValueKind}, not an object of tensors", ReExportHint);
            }

            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (JsonProperty property in document.RootElement.EnumerateObject())
            {
                if (!seen.Add(property.Name))
                {
                    Throw.InvalidData(path, $"tensor '{property.Name}' is listed twice in the header", ReExportHint);
                }

                if (property.Name == SafeTensors.MetadataKey)
                {
                    ReadMetadata(path, property.Value, metadata);
                    continue;
                }

                tensors.Add(ParseTensor(path, property.Name, property.Value, dataLength));
            }
        }

        // Data ranges must not overlap; sorted by offset, each must start at or after the previous end.
        tensors.Sort((a, b) => a.DataBegin != b.DataBegin ? a.DataBegin.CompareTo(b.DataBegin) : a.DataEnd.CompareTo(b.DataEnd));
        for (int i = 1; i < tensors.Count; i++)
        {
            SafeTensorInfo previous = tensors[i - 1], current = tensors[i];
            if (current.DataBegin < previous.DataEnd && current.ByteLength > 0)
            {
                Throw.InvalidData(path,
                    $"tensor '{current.Name}' data_offsets [{current.DataBegin}, {current.DataEnd}) overlap tensor '{previous.Name}' [{previous.DataBegin}, {previous.DataEnd})",
                    ReExportHint);
            }
        }

        return (dataStart, tensors, metadata);
    }

    private static void ReadMetadata(string path, JsonElement value, Dictionary<string, string> metadata)
    {
        if (value.ValueKind != JsonValueKind.Object)
        {
            Throw.InvalidData(path, $"{SafeTensors.MetadataKey} is a JSON {value.ValueKind}, not an object of strings", ReExportHint);
        }

        foreach (JsonProperty entry in value.EnumerateObject())
        {
            if (entry.Value.ValueKind != JsonValueKind.String)
            {
                Throw.InvalidData(path, $"{SafeTensors.MetadataKey} entry '{entry.Name}' is a JSON {entry.Value.ValueKind}, not a string", ReExportHint);
            }

            metadata[entry.Name] = entry.Value.GetString()!;
        }
    }

    private static SafeTensorInfo ParseTensor(string path, string name, JsonElement value, long dataLength)
    {
        string where = $"tensor '{name}'";
        if (value.ValueKind != JsonValueKind.Object)
        {
            Throw.InvalidData(path, $"{where}: header entry is a JSON {value.ValueKind}, not an object with dtype, shape and data_offsets", ReExportHint);
        }

        if (!value.TryGetProperty("dtype", out JsonElement dtypeElement) || dtypeElement.ValueKind != JsonValueKind.String)
        {
            Throw.InvalidData(path, $"{where}: header entry has no \"dtype\" string", ReExportHint);
        }

        string? dtypeName = dtypeElement.GetString();
        if (!SafeTensors.TryParseDType(dtypeName, out SafeTensorsDType dtype))
        {
            Throw.InvalidData(path, $"{where}: unknown dtype \"{dtypeName}\"",
                "Known dtypes are F32, BF16, F16, F64, BOOL, U8, I8, I16, U16, I32, U32, I64, U64, F8_E4M3, F8_E5M2; export the weights as F32, BF16 or F16.");
        }

        long[] shape = ReadLongArray(path, where, value, "shape", -1);
        long[] offsets = ReadLongArray(path, where, value, "data_offsets", 2);
        long begin = offsets[0], end = offsets[1];
        if (begin > end)
        {
            Throw.InvalidData(path, $"{where}: data_offsets [{begin}, {end}) end before they begin", ReExportHint);
        }

        if (end > dataLength)
        {
            Throw.InvalidData(path,
                $"{where}: data_offsets [{begin}, {end}) are out of range: the data section has only {dataLength} bytes (file truncated?)",
                "Copy or download the file again; " + ReExportHint);
        }

        long expectedBytes = SafeTensors.ElementSize(dtype);
        try
        {
            foreach (long d in shape)
            {
                expectedBytes = checked(expectedBytes * d);
            }
        }
        catch (OverflowException)
        {
            Throw.InvalidData(path, $"{where}: shape {SafeTensors.FormatShape(shape)} is too large", ReExportHint);
        }

        if (end - begin != expectedBytes)
        {
            Throw.InvalidData(path,
                $"{where}: data_offsets span {end - begin} bytes but shape {SafeTensors.FormatShape(shape)} of {dtypeName} needs {expectedBytes} (product of the shape × {SafeTensors.ElementSize(dtype)} bytes)",
                ReExportHint);
        }

        return new SafeTensorInfo(name, dtype, shape, begin, end);
    }

    private static long[] ReadLongArray(string path, string where, JsonElement entry, string key, int requiredLength)
    {
        if (!entry.TryGetProperty(key, out JsonElement array) || array.ValueKind != JsonValueKind.Array)
        {
            Throw.InvalidData(path, $"{where}: header entry has no \"{key}\" array", ReExportHint);
        }

        int length = array.GetArrayLength();
        if (requiredLength >= 0 && length != requiredLength)
        {
            Throw.InvalidData(path, $"{where}: \"{key}\" has {length} numbers, expected {requiredLength}", ReExportHint);
        }

        var values = new long[length];
        int i = 0;
        foreach (JsonElement item in array.EnumerateArray())
        {
            long v = -1;
            if (item.ValueKind != JsonValueKind.Number || !item.TryGetInt64(out v) || v < 0)
            {
                Throw.InvalidData(path, $"{where}: \"{key}\"[{i}] is {item.GetRawText()}, not a non-negative integer", ReExportHint);
            }

            values[i++] = v;
        }

        return values;
    }

    private static void ReadAll(string path, SafeFileHandle handle, Span<byte> destination, long fileOffset)
    {
        while (!destination.IsEmpty)
        {
            int n = RandomAccess.Read(handle, destination, fileOffset);
            if (n <= 0)
            {
                Throw.InvalidData(path, $"file ended at byte {fileOffset} while reading the header (file truncated?)",
                    "Copy or download the file again; " + ReExportHint);
            }

            destination = destination[n..];
            fileOffset += n;
        }
    }
}
