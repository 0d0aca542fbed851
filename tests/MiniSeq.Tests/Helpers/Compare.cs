// Norm-wise relative error, the comparison used against PyTorch and between policies; and bit-for-bit equality, for
// paths that must compute the very same floats.
namespace MiniSeq.Tests.Helpers;

internal static class Compare
{
    /// <summary>‖actual − expected‖ / max(‖expected‖, tiny), in double.</summary>
    public static double RelativeError(ReadOnlySpan<float> actual, ReadOnlySpan<float> expected)
    {
        Assert.Equal(expected.Length, actual.Length);
        double diff = 0, norm = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            double d = (double)actual[i] - expected[i];
            diff += d * d;
            norm += (double)expected[i] * expected[i];
        }

        return Math.Sqrt(diff) / Math.Max(Math.Sqrt(norm), 1e-30);
    }

    public static void Close(ReadOnlySpan<float> actual, ReadOnlySpan<float> expected, double tolerance, string what)
    {
        double err = RelativeError(actual, expected);
        Assert.True(err <= tolerance, $"{what}: relative error {err:E3} > {tolerance:E1}");
    }

    public static void Close(double actual, double expected, double tolerance, string what)
    {
        double err = Math.Abs(actual - expected) / Math.Max(Math.Abs(expected), 1e-30);
        Assert.True(err <= tolerance, $"{what}: {actual:R} vs {expected:R}, relative error {err:E3} > {tolerance:E1}");
    }

    /// <summary>Every element of <paramref name="actual"/> has the bits of the one in <paramref name="expected"/>
    /// (stricter than ==: +0 and −0 differ, and so do NaN payloads).</summary>
    public static void Bitwise(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            Assert.True(BitConverter.SingleToInt32Bits(expected[i]) == BitConverter.SingleToInt32Bits(actual[i]), $"{what}: element {i}: {expected[i]:R} vs {actual[i]:R}");
        }
    }
}
