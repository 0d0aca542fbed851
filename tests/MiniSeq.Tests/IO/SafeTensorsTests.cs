// Round trips and one test per malformed-file case for SafeTensorsReader / SafeTensorsWriter.
using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using MiniSeq.IO;
using MiniSeq.Tensors;

namespace MiniSeq.Tests.IO;

public class SafeTensorsTests
{
    private static readonly float[] s_a = [1f, -2.5f, 3.25f, 0f, -0f, 1e-30f];
    private static readonly float[] s_b = [float.MaxValue, float.Epsilon, -7f, 0.1f];

    /// <summary>Writes a file from a literal header and data section.</summary>
    internal static void WriteRaw(string path, string headerJson, ReadOnlySpan<byte> data, long? headerLengthOverride = null)
    {
        byte[] header = Encoding.UTF8.GetBytes(headerJson);
        using var stream = File.Create(path);
        Span<byte> length = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)(headerLengthOverride ?? header.Length));
        stream.Write(length);
        stream.Write(header);
        stream.Write(data);
    }

    private static InvalidDataException AssertInvalid(string path, params string[] keywords)
    {
        var e = Assert.Throws<InvalidDataException>(() =>
        {
            using SafeTensorsReader reader = SafeTensorsReader.Open(path);
        });
        Assert.Contains(path, e.Message, StringComparison.Ordinal);
        foreach (string keyword in keywords)
        {
            Assert.Contains(keyword, e.Message, StringComparison.Ordinal);
        }

        return e;
    }

    [Fact]
    public void WriteF32_ReadBack_ValuesAndBytesMatch()
    {
        using var dir = new TempDirectory();
        string path = dir.File("t.safetensors");
        var writer = new SafeTensorsWriter();
        writer.Metadata["format"] = "pt";
        writer.Add("z.b", [2, 2], (ReadOnlyMemory<float>)s_b);
        writer.Add("a", [2, 3], (ReadOnlyMemory<float>)s_a);
        writer.Write(path);

        using (SafeTensorsReader reader = SafeTensorsReader.Open(path))
        {
            Assert.Equal(["a", "z.b"], reader.Tensors.Select(t => t.Name));
            Assert.Equal("pt", reader.Metadata["format"]);
            SafeTensorInfo a = reader.GetTensor("a");
            Assert.Equal(SafeTensorsDType.F32, a.DType);
            Assert.Equal([2L, 3L], a.Shape);
            Assert.Equal(s_a, reader.ReadFloat32("a"));
            Assert.Equal(s_b, reader.ReadFloat32("z.b"));
        }

        // Bytes: 8-byte length, header padded to 8, then the data in name order, little-endian F32.
        byte[] bytes = File.ReadAllBytes(path);
        long headerLength = (long)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        Assert.Equal(0, headerLength % 8);
        byte[] expectedData = [.. MemoryMarshal.AsBytes(s_a.AsSpan()), .. MemoryMarshal.AsBytes(s_b.AsSpan())];
        Assert.Equal(expectedData, bytes.AsSpan((int)(8 + headerLength)).ToArray());
        string header = Encoding.UTF8.GetString(bytes, 8, (int)headerLength);
        Assert.StartsWith("{\"__metadata__\":{\"format\":\"pt\"},\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}", header, StringComparison.Ordinal);

        // Deterministic: the same tensors added in another order give the same bytes.
        string again = dir.File("again.safetensors");
        var second = new SafeTensorsWriter();
        second.Metadata["format"] = "pt";
        second.Add("a", [2, 3], (ReadOnlyMemory<float>)s_a);
        second.Add("z.b", [2, 2], (ReadOnlyMemory<float>)s_b);
        second.Write(again);
        Assert.Equal(bytes, File.ReadAllBytes(again));
    }

    [Fact]
    public void WriteF32_FromTensorView_ReadsIntoTensorView()
    {
        using var dir = new TempDirectory();
        string path = dir.File("t.safetensors");
        var plan = new ArenaPlan("test", MemoryCategory.Scratch);
        ArenaSlot source = plan.Add("source", 40);
        ArenaSlot target = plan.Add("target", 40);
        using var arena = new Arena(plan);
        for (int i = 0; i < 40; i++)
        {
            arena[source].Span[i] = i * 0.5f - 3f;
        }

        var writer = new SafeTensorsWriter();
        writer.Add("w", [5, 8], arena[source]);
        writer.Write(path);
        using SafeTensorsReader reader = SafeTensorsReader.Open(path);
        reader.ReadFloat32("w", arena[target]);
        Assert.Equal(arena[source].Span.ToArray(), arena[target].Span.ToArray());
        Assert.Throws<ArgumentException>(() => reader.ReadFloat32("w", arena[target].Slice(0, 39)));
    }

    [Fact]
    public void WriteBF16_ReadBack_RoundsToNearestEven()
    {
        using var dir = new TempDirectory();
        string path = dir.File("t.safetensors");
        // 1 + 2^-8 is halfway between 1 (0x3F80, even) and 1 + 2^-7; 1 + 3·2^-8 is halfway between 0x3F81 and 0x3F82 (even).
        float[] values = [1f, 1.00390625f, 1.01171875f, BitConverter.Int32BitsToSingle(0x3F808001), -2f, float.PositiveInfinity, 3.4e38f];
        ushort[] expectedBits = [0x3F80, 0x3F80, 0x3F82, 0x3F81, 0xC000, 0x7F80, 0x7F80];
        var writer = new SafeTensorsWriter();
        writer.Add("x", [values.Length], (ReadOnlyMemory<float>)values, SafeTensorsDType.BF16);
        writer.Write(path);

        byte[] bytes = File.ReadAllBytes(path);
        int dataStart = 8 + (int)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        ushort[] storedBits = MemoryMarshal.Cast<byte, ushort>(bytes.AsSpan(dataStart)).ToArray();
        Assert.Equal(expectedBits, storedBits);

        using SafeTensorsReader reader = SafeTensorsReader.Open(path);
        Assert.Equal(SafeTensorsDType.BF16, reader.GetTensor("x").DType);
        Assert.Equal(expectedBits.Select(b => BitConverter.Int32BitsToSingle(b << 16)).ToArray(), reader.ReadFloat32("x"));
        Assert.True(float.IsNaN(SafeTensors.BFloat16ToFloat(SafeTensors.FloatToBFloat16(float.NaN))));
    }

    [Fact]
    public void ReadF16_HandWrittenFile_ConvertsExactly()
    {
        using var dir = new TempDirectory();
        string path = dir.File("t.safetensors");
        Half[] halves = [(Half)1.5f, (Half)(-0.25f), Half.MaxValue, Half.Epsilon];
        byte[] data = MemoryMarshal.AsBytes(halves.AsSpan()).ToArray();
        WriteRaw(path, "{\"h\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0,8]}}", data);

        using SafeTensorsReader reader = SafeTensorsReader.Open(path);
        Assert.Empty(reader.Metadata);
        Assert.Equal(halves.Select(h => (float)h).ToArray(), reader.ReadFloat32("h"));
        Assert.Equal([1.5f, -0.25f, 65504f, (float)Half.Epsilon], reader.ReadFloat32("h"));
    }

    [Fact]
    public void WriteF16_ReadBack_MatchesHalfConversion()
    {
        using var dir = new TempDirectory();
        string path = dir.File("t.safetensors");
        float[] values = [0.1f, -3.3f, 1000.7f];
        var writer = new SafeTensorsWriter();
        writer.Add("x", [3], (ReadOnlyMemory<float>)values, SafeTensorsDType.F16);
        writer.Write(path);
        using SafeTensorsReader reader = SafeTensorsReader.Open(path);
        Assert.Equal(values.Select(v => (float)(Half)v).ToArray(), reader.ReadFloat32("x"));
    }

    [Fact]
    public void ReadFloat32_LargeTensor_StreamsAcrossChunks()
    {
        using var dir = new TempDirectory();
        string path = dir.File("t.safetensors");
        var values = new float[700_000]; // > 1 MiB of BF16 and > 2 MiB of F32: several chunks
        for (int i = 0; i < values.Length; i++)
        {
            values[i] = (i % 256) - 128;
        }

        var writer = new SafeTensorsWriter();
        writer.Add("f32", [700, 1000], (ReadOnlyMemory<float>)values);
        writer.Add("bf16", [700, 1000], (ReadOnlyMemory<float>)values, SafeTensorsDType.BF16);
        writer.Write(path);
        using SafeTensorsReader reader = SafeTensorsReader.Open(path);
        Assert.Equal(values, reader.ReadFloat32("f32"));
        Assert.Equal(values, reader.ReadFloat32("bf16")); // small integers are exact in BF16
    }

    [Fact]
    public void Open_TruncatedFile_ThrowsInvalidData()
    {
        using var dir = new TempDirectory();
        string path = dir.File("t.safetensors");
        File.WriteAllBytes(path, [1, 2, 3]);
        AssertInvalid(path, "truncated");
    }

    [Fact]
    public void Open_HeaderLengthBeyondFile_ThrowsInvalidData()
    {
        using var dir = new TempDirectory();
        string path = dir.File("t.safetensors");
        WriteRaw(path, "{}", [], headerLengthOverride: 1000);
        AssertInvalid(path, "header length 1000", "beyond the end of the file");
    }

    [Fact]
    public void Open_BadJson_ThrowsInvalidData()
    {
        using var dir = new TempDirectory();
        string path = dir.File("t.safetensors");
        WriteRaw(path, "{\"a\":{\"dtype\":\"F32\",", []);
        AssertInvalid(path, "not valid JSON", "safetensors");
    }

    [Fact]
    public void Open_UnknownDType_ThrowsInvalidData()
    {
        using var dir = new TempDirectory();
        string path = dir.File("t.safetensors");
        WriteRaw(path, "{\"w\":{\"dtype\":\"F12\",\"shape\":[1],\"data_offsets\":[0,4]}}", new byte[4]);
        AssertInvalid(path, "tensor 'w'", "unknown dtype \"F12\"", "F32, BF16 or F16");
    }

    [Fact]
    public void Open_OffsetsOutOfRange_ThrowsInvalidData()
    {
        using var dir = new TempDirectory();
        string path = dir.File("t.safetensors");
        WriteRaw(path, "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", new byte[8]);
        AssertInvalid(path, "tensor 'w'", "out of range", "8 bytes");
    }

    [Fact]
    public void Open_TruncatedData_ThrowsInvalidData()
    {
        using var dir = new TempDirectory();
        string path = dir.File("t.safetensors");
        var writer = new SafeTensorsWriter();
        writer.Add("a", [6], (ReadOnlyMemory<float>)s_a);
        writer.Write(path);
        byte[] bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..^4]);
        AssertInvalid(path, "tensor 'a'", "truncated");
    }

    [Fact]
    public void Open_OverlappingOffsets_ThrowsInvalidData()
    {
        using var dir = new TempDirectory();
        string path = dir.File("t.safetensors");
        WriteRaw(path, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", new byte[12]);
        AssertInvalid(path, "tensor 'b'", "overlap", "'a'");
    }

    [Fact]
    public void Open_OffsetsReversed_ThrowsInvalidData()
    {
        using var dir = new TempDirectory();
        string path = dir.File("t.safetensors");
        WriteRaw(path, "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}", new byte[12]);
        AssertInvalid(path, "tensor 'a'", "end before they begin");
    }

    [Fact]
    public void Open_ShapeByteMismatch_ThrowsInvalidData()
    {
        using var dir = new TempDirectory();
        string path = dir.File("t.safetensors");
        WriteRaw(path, "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", new byte[20]);
        AssertInvalid(path, "tensor 'w'", "span 20 bytes", "[2, 3]", "needs 24");
    }

    [Fact]
    public void Open_MissingShape_ThrowsInvalidData()
    {
        using var dir = new TempDirectory();
        string path = dir.File("t.safetensors");
        WriteRaw(path, "{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", new byte[4]);
        AssertInvalid(path, "tensor 'w'", "\"shape\"");
    }

    [Fact]
    public void Open_DuplicateTensor_ThrowsInvalidData()
    {
        using var dir = new TempDirectory();
        string path = dir.File("t.safetensors");
        WriteRaw(path, "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", new byte[8]);
        AssertInvalid(path, "tensor 'w'", "twice");
    }

    [Fact]
    public void GetTensor_Missing_ThrowsInvalidData()
    {
        using var dir = new TempDirectory();
        string path = dir.File("t.safetensors");
        WriteRaw(path, "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", new byte[4]);
        using SafeTensorsReader reader = SafeTensorsReader.Open(path);
        var e = Assert.Throws<InvalidDataException>(() => reader.GetTensor("v"));
        Assert.Contains(path, e.Message, StringComparison.Ordinal);
        Assert.Contains("'v' is missing", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ReadFloat32_IntegerDType_ThrowsInvalidData()
    {
        using var dir = new TempDirectory();
        string path = dir.File("t.safetensors");
        WriteRaw(path, "{\"ids\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[0,16]}}", new byte[16]);
        using SafeTensorsReader reader = SafeTensorsReader.Open(path);
        Assert.Equal(SafeTensorsDType.I64, reader.GetTensor("ids").DType);
        var e = Assert.Throws<InvalidDataException>(() => reader.ReadFloat32("ids"));
        Assert.Contains("'ids'", e.Message, StringComparison.Ordinal);
        Assert.Contains("I64", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Add_ShapeDoesNotMatchData_ThrowsArgument()
    {
        var writer = new SafeTensorsWriter();
        Assert.Throws<ArgumentException>(() => writer.Add("a", [2, 2], (ReadOnlyMemory<float>)s_a));
        writer.Add("a", [6], (ReadOnlyMemory<float>)s_a);
        Assert.Throws<ArgumentException>(() => writer.Add("a", [6], (ReadOnlyMemory<float>)s_a));
    }
}
