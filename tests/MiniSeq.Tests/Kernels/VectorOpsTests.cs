// VectorOps: Add (with aliasing) and Scale bit-exact at every length and width; SumOfSquares against a double sum,
// and identical for any thread count.
using MiniSeq.Kernels;

namespace MiniSeq.Tests.Kernels;

public unsafe class VectorOpsTests
{
    [Theory]
    [ClassData(typeof(IsaWidths))]
    public void AddScale_AllLengths_ExactIncludingAliasing(IsaWidth width)
    {
        using var _ = KernelSelector.Force(width);
        var rng = new Random(KernelTestHelpers.Seed);
        for (int n = 0; n <= KernelTestHelpers.MaxLength; n++)
        {
            float[] a = KernelTestHelpers.RandomFloats(rng, n);
            float[] b = KernelTestHelpers.RandomFloats(rng, n);
            var sum = new float[n];
            float[] inPlace = (float[])a.Clone();
            float[] scaled = (float[])a.Clone();
            fixed (float* pa = a, pb = b, ps = sum, pi = inPlace, pc = scaled)
            {
                VectorOps.Add(pa, pb, n, ps);
                VectorOps.Add(pi, pb, n, pi);
                VectorOps.Scale(pc, n, -1.75f);
            }

            for (int i = 0; i < n; i++)
            {
                Assert.Equal(a[i] + b[i], sum[i]);
                Assert.Equal(a[i] + b[i], inPlace[i]);
                Assert.Equal(a[i] * -1.75f, scaled[i]);
            }
        }
    }

    [Theory]
    [ClassData(typeof(IsaWidths))]
    public void SumOfSquares_AllLengths_MatchesDoubleSum(IsaWidth width)
    {
        using var _ = KernelSelector.Force(width);
        var rng = new Random(KernelTestHelpers.Seed + 1);
        for (int n = 0; n <= KernelTestHelpers.MaxLength; n++)
        {
            float[] x = KernelTestHelpers.RandomFloats(rng, n, 3f);
            double expected = 0;
            foreach (float v in x)
            {
                expected += (double)v * v;
            }

            double actual;
            fixed (float* px = x)
            {
                actual = VectorOps.SumOfSquares(px, n);
            }

            KernelTestHelpers.AssertClose(expected, actual, 0, 1e-14, $"n={n}");
        }
    }

    [Fact]
    public void SumOfSquares_ThreadCount_BitIdentical()
    {
        var rng = new Random(KernelTestHelpers.Seed + 2);
        float[] x = KernelTestHelpers.RandomFloats(rng, 2_000_003, 2f);
        double one = 0, two = 0, expected = 0;
        foreach (float v in x)
        {
            expected += (double)v * v;
        }

        fixed (float* px = x)
        {
            float* p = px;
            KernelTestHelpers.WithThreads(1, () => one = VectorOps.SumOfSquares(p, x.Length));
            KernelTestHelpers.WithThreads(2, () => two = VectorOps.SumOfSquares(p, x.Length));
        }

        Assert.Equal(one, two);
        KernelTestHelpers.AssertClose(expected, one, 0, 1e-12, "sum");
    }
}
