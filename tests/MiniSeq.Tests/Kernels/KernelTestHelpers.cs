// Shared helpers for the kernel tests: ISA widths as theory data, seeded random inputs, tolerance checks, and scopes
// that force a SIMD width or a thread count and restore it afterwards.
using MiniSeq.Kernels;
using MiniSeq.Threading;

namespace MiniSeq.Tests.Kernels;

internal static class KernelTestHelpers
{
    public const int Seed = 20230828;

    /// <summary>Row and array lengths every SIMD kernel is swept over.</summary>
    public const int MaxLength = 257;

    public static float[] RandomFloats(Random rng, int count, float scale = 1f, float offset = 0f)
    {
        var values = new float[count];
        for (int i = 0; i < count; i++)
        {
            values[i] = offset + (scale * (float)((rng.NextDouble() * 2) - 1));
        }

        return values;
    }

    public static double[] ToDouble(float[] values) => Array.ConvertAll(values, v => (double)v);

    public static void AssertClose(double expected, double actual, double absoluteTolerance, double relativeTolerance, string context)
    {
        double error = Math.Abs(expected - actual);
        double allowed = absoluteTolerance + (relativeTolerance * Math.Abs(expected));
        if (!(error <= allowed) && !(double.IsNaN(expected) && double.IsNaN(actual)))
        {
            Assert.Fail($"{context}: expected {expected:R}, got {actual:R} (error {error:E3} > {allowed:E3})");
        }
    }

    public static void AssertAllClose(double[] expected, float[] actual, double absoluteTolerance, double relativeTolerance, string context)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            AssertClose(expected[i], actual[i], absoluteTolerance, relativeTolerance, $"{context} [{i}]");
        }
    }

    /// <summary>Runs <paramref name="action"/> with the pool at <paramref name="threads"/> threads, then restores the count.</summary>
    public static void WithThreads(int threads, Action action)
    {
        int previous = KernelThreads.ThreadCount;
        KernelThreads.SetThreadCount(threads);
        try
        {
            action();
        }
        finally
        {
            KernelThreads.SetThreadCount(previous);
        }
    }

    /// <summary>Central finite difference of f at x[i] in double.</summary>
    public static double FiniteDifference(Func<double[], double> f, double[] x, int i, double h = 1e-5)
    {
        double saved = x[i];
        x[i] = saved + h;
        double plus = f(x);
        x[i] = saved - h;
        double minus = f(x);
        x[i] = saved;
        return (plus - minus) / (2 * h);
    }

    public static double Dot(double[] a, double[] b)
    {
        double sum = 0;
        for (int i = 0; i < a.Length; i++)
        {
            sum += a[i] * b[i];
        }

        return sum;
    }
}

/// <summary>Every SIMD width as theory data.</summary>
public sealed class IsaWidths : TheoryData<IsaWidth>
{
    public IsaWidths()
    {
        foreach (IsaWidth width in KernelSelector.AllWidths)
        {
            Add(width);
        }
    }
}
