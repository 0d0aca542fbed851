// Shared pieces of the safetensors format: dtypes, their sizes and float conversions, and per-tensor info.
// Deliberately not: a general tensor library. Only float dtypes (F32, F16, BF16, F64) convert to float32; integer and
// FP8 dtypes are recognised so that a file holding them still opens, but reading them as floats is refused.
using System.Runtime.CompilerServices;

namespace MiniSeq.IO;

/// <summary>Element types of the safetensors format (the <c>dtype</c> strings of the header).</summary>
public enum SafeTensorsDType
{
    /// <summary>IEEE binary32 (<c>"F32"</c>).</summary>
    F32,

    /// <summary>bfloat16: the top 16 bits of a binary32 (<c>"BF16"</c>).</summary>
    BF16,

    /// <summary>IEEE binary16 (<c>"F16"</c>).</summary>
    F16,

    /// <summary>IEEE binary64 (<c>"F64"</c>).</summary>
    F64,

    /// <summary>Boolean, one byte (<c>"BOOL"</c>; not convertible).</summary>
    Bool,

    /// <summary>Unsigned 8-bit integer (<c>"U8"</c>; not convertible).</summary>
    U8,

    /// <summary>Signed 8-bit integer (<c>"I8"</c>; not convertible).</summary>
    I8,

    /// <summary>Signed 16-bit integer (<c>"I16"</c>; not convertible).</summary>
    I16,

    /// <summary>Unsigned 16-bit integer (<c>"U16"</c>; not convertible).</summary>
    U16,

    /// <summary>Signed 32-bit integer (<c>"I32"</c>; not convertible).</summary>
    I32,

    /// <summary>Unsigned 32-bit integer (<c>"U32"</c>; not convertible).</summary>
    U32,

    /// <summary>Signed 64-bit integer (<c>"I64"</c>; not convertible).</summary>
    I64,

    /// <summary>Unsigned 64-bit integer (<c>"U64"</c>; not convertible).</summary>
    U64,

    /// <summary>FP8 E4M3 (<c>"F8_E4M3"</c>; not convertible).</summary>
    F8E4M3,

    /// <summary>FP8 E5M2 (<c>"F8_E5M2"</c>; not convertible).</summary>
    F8E5M2,
}

/// <summary>One tensor listed in a safetensors header.</summary>
/// <param name="Name">Tensor name (a Hugging Face state-dict key).</param>
/// <param name="DType">Element type as stored.</param>
/// <param name="Shape">Dimensions, outermost first; empty for a scalar.</param>
/// <param name="DataBegin">Byte offset of the data, relative to the start of the data section.</param>
/// <param name="DataEnd">Byte offset one past the data, relative to the start of the data section.</param>
public sealed record SafeTensorInfo(string Name, SafeTensorsDType DType, long[] Shape, long DataBegin, long DataEnd)
{
    /// <summary>Number of elements: the product of <see cref="Shape"/> (1 for a scalar).</summary>
    public long ElementCount
    {
        get
        {
            long count = 1;
            foreach (long d in Shape)
            {
                count *= d;
            }

            return count;
        }
    }

    /// <summary>Number of data bytes.</summary>
    public long ByteLength => DataEnd - DataBegin;

    /// <summary>Shape as "[a, b]".</summary>
    public string ShapeText => SafeTensors.FormatShape(Shape);

    /// <summary>Whether the tensor has exactly the dimensions <paramref name="shape"/>.</summary>
    public bool HasShape(ReadOnlySpan<int> shape)
    {
        if (shape.Length != Shape.Length)
        {
            return false;
        }

        for (int i = 0; i < shape.Length; i++)
        {
            if (shape[i] != Shape[i])
            {
                return false;
            }
        }

        return true;
    }
}

/// <summary>Format constants and dtype helpers shared by <see cref="SafeTensorsReader"/> and <see cref="SafeTensorsWriter"/>.</summary>
public static class SafeTensors
{
    /// <summary>The reserved header key holding string-to-string metadata.</summary>
    public const string MetadataKey = "__metadata__";

    /// <summary>Largest header accepted (100 MB, the limit of the reference implementation).</summary>
    public const long MaxHeaderBytes = 100_000_000;

    /// <summary>The header string of <paramref name="dtype"/> (e.g. <c>"BF16"</c>).</summary>
    public static string DTypeName(SafeTensorsDType dtype) => dtype switch
    {
        SafeTensorsDType.F32 => "F32",
        SafeTensorsDType.BF16 => "BF16",
        SafeTensorsDType.F16 => "F16",
        SafeTensorsDType.F64 => "F64",
        SafeTensorsDType.Bool => "BOOL",
        SafeTensorsDType.U8 => "U8",
        SafeTensorsDType.I8 => "I8",
        SafeTensorsDType.I16 => "I16",
        SafeTensorsDType.U16 => "U16",
        SafeTensorsDType.I32 => "I32",
        SafeTensorsDType.U32 => "U32",
        SafeTensorsDType.I64 => "I64",
        SafeTensorsDType.U64 => "U64",
        SafeTensorsDType.F8E4M3 => "F8_E4M3",
        SafeTensorsDType.F8E5M2 => "F8_E5M2",
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, null),
    };

    /// <summary>Parses a header dtype string; false for strings the format does not define.</summary>
    public static bool TryParseDType(string? name, out SafeTensorsDType dtype)
    {
        foreach (SafeTensorsDType candidate in Enum.GetValues<SafeTensorsDType>())
        {
            if (string.Equals(DTypeName(candidate), name, StringComparison.Ordinal))
            {
                dtype = candidate;
                return true;
            }
        }

        dtype = default;
        return false;
    }

    /// <summary>Bytes per element of <paramref name="dtype"/>.</summary>
    public static int ElementSize(SafeTensorsDType dtype) => dtype switch
    {
        SafeTensorsDType.F64 or SafeTensorsDType.I64 or SafeTensorsDType.U64 => 8,
        SafeTensorsDType.F32 or SafeTensorsDType.I32 or SafeTensorsDType.U32 => 4,
        SafeTensorsDType.BF16 or SafeTensorsDType.F16 or SafeTensorsDType.I16 or SafeTensorsDType.U16 => 2,
        _ => 1,
    };

    /// <summary>Whether <see cref="SafeTensorsReader"/> can convert <paramref name="dtype"/> to float32.</summary>
    public static bool IsConvertibleToFloat(SafeTensorsDType dtype)
        => dtype is SafeTensorsDType.F32 or SafeTensorsDType.BF16 or SafeTensorsDType.F16 or SafeTensorsDType.F64;

    /// <summary>Rounds a float to bfloat16 bits, round-to-nearest-even; NaN stays a (quiet) NaN with its sign.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort FloatToBFloat16(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value))
        {
            return (ushort)((bits >> 16) | 0x0040);
        }

        // Add 0x7FFF plus the lowest kept bit: ties go to the even neighbour; overflow rounds to infinity as it should.
        bits += 0x7FFFu + ((bits >> 16) & 1u);
        return (ushort)(bits >> 16);
    }

    /// <summary>Widens bfloat16 bits to float (exact: the bits become the top half of a binary32).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float BFloat16ToFloat(ushort bits) => BitConverter.Int32BitsToSingle(bits << 16);

    /// <summary>Shape as "[a, b]".</summary>
    public static string FormatShape<T>(IEnumerable<T> shape) => "[" + string.Join(", ", shape) + "]";
}
