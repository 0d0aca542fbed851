// AdamW and SGD against hand-computed double-precision references over several steps, at every length 0..257 and
// SIMD width, plus the torch-style float factors and thread-count independence.
using MiniSeq.Kernels;
using MiniSeq.Kernels.Reference;

namespace MiniSeq.Tests.Kernels;

public unsafe class OptimizerKernelsTests
{
    [Theory]
    [ClassData(typeof(IsaWidths))]
    public void AdamW_FiveSteps_MatchesDoubleReference(IsaWidth width)
    {
        using var _ = KernelSelector.Force(width);
        var rng = new Random(KernelTestHelpers.Seed);
        const float Lr = 1e-2f, Beta1 = 0.9f, Beta2 = 0.95f, Eps = 1e-8f, Wd = 0.1f;
        for (int n = 0; n <= KernelTestHelpers.MaxLength; n++)
        {
            float[] p = KernelTestHelpers.RandomFloats(rng, n);
            var m = new float[n];
            var v = new float[n];
            double[] pD = KernelTestHelpers.ToDouble(p);
            var mD = new double[n];
            var vD = new double[n];
            for (int step = 1; step <= 5; step++)
            {
                float[] g = KernelTestHelpers.RandomFloats(rng, n, 0.5f);
                fixed (float* pp = p, pg = g, pm = m, pv = v)
                {
                    OptimizerKernels.AdamW(pp, pg, pm, pv, n, Lr, Beta1, Beta2, Eps, Wd, step);
                }

                ReferenceKernels.AdamWStep(pD, KernelTestHelpers.ToDouble(g), mD, vD, 0.01, 0.9, 0.95, 1e-8, 0.1, step);
            }

            // Five steps of ≈lr-sized moves: p agrees to ≈1e-6 absolute, m and v to float rounding.
            KernelTestHelpers.AssertAllClose(pD, p, 2e-6, 1e-5, $"p n={n}");
            KernelTestHelpers.AssertAllClose(mD, m, 1e-7, 1e-5, $"m n={n}");
            KernelTestHelpers.AssertAllClose(vD, v, 1e-9, 1e-5, $"v n={n}");
        }
    }

    [Fact]
    public void AdamW_FirstStep_MovesEachParameterByLr()
    {
        // Step 1 with wd = 0: m̂ = g, v̂ = g², so p moves by lr·g/(|g| + eps) ≈ lr·sign(g).
        float[] p = [1f, -2f, 0.5f];
        float[] g = [0.3f, -4f, 1e-3f];
        var m = new float[3];
        var v = new float[3];
        fixed (float* pp = p, pg = g, pm = m, pv = v)
        {
            OptimizerKernels.AdamW(pp, pg, pm, pv, 3, 1e-3f, 0.9f, 0.999f, 1e-8f, 0f, 1);
        }

        KernelTestHelpers.AssertClose(1 - 1e-3, p[0], 1e-7, 0, "p0");
        KernelTestHelpers.AssertClose(-2 + 1e-3, p[1], 1e-7, 0, "p1");
        KernelTestHelpers.AssertClose(0.5 - (1e-3 * 1e-3 / (1e-3 + 1e-8)), p[2], 1e-7, 0, "p2");
    }

    [Fact]
    public void AsPythonFloat_DecimalLiterals_RecoverDouble()
    {
        Assert.Equal(0.9, OptimizerKernels.AsPythonFloat(0.9f));
        Assert.Equal(0.999, OptimizerKernels.AsPythonFloat(0.999f));
        Assert.Equal(3e-4, OptimizerKernels.AsPythonFloat(3e-4f));
        Assert.Equal(1e-8, OptimizerKernels.AsPythonFloat(1e-8f));
        Assert.Equal(double.PositiveInfinity, OptimizerKernels.AsPythonFloat(float.PositiveInfinity));
    }

    [Theory]
    [ClassData(typeof(IsaWidths))]
    public void Sgd_ThreeStepsWithAndWithoutMomentum_MatchesDoubleReference(IsaWidth width)
    {
        using var _ = KernelSelector.Force(width);
        var rng = new Random(KernelTestHelpers.Seed + 1);
        for (int n = 0; n <= KernelTestHelpers.MaxLength; n++)
        {
            foreach (float mu in new[] { 0f, 0.9f })
            {
                float[] p = KernelTestHelpers.RandomFloats(rng, n);
                float[]? buf = mu == 0 ? null : new float[n];
                double[] pD = KernelTestHelpers.ToDouble(p);
                double[]? bufD = mu == 0 ? null : new double[n];
                for (int step = 1; step <= 3; step++)
                {
                    float[] g = KernelTestHelpers.RandomFloats(rng, n);
                    fixed (float* pp = p, pg = g, pb = buf)
                    {
                        OptimizerKernels.Sgd(pp, pg, pb, n, 0.05f, mu, 0.01f, step);
                    }

                    ReferenceKernels.SgdStep(pD, KernelTestHelpers.ToDouble(g), bufD, 0.05f, mu, 0.01f, step);
                }

                KernelTestHelpers.AssertAllClose(pD, p, 1e-6, 1e-5, $"p n={n} mu={mu}");
                if (bufD != null)
                {
                    KernelTestHelpers.AssertAllClose(bufD, buf!, 1e-6, 1e-5, $"buf n={n}");
                }
            }
        }
    }

    [Fact]
    public void AdamW_ThreadCount_BitIdentical()
    {
        var rng = new Random(KernelTestHelpers.Seed + 2);
        const int N = 250_007;
        float[] p0 = KernelTestHelpers.RandomFloats(rng, N);
        float[] g = KernelTestHelpers.RandomFloats(rng, N);
        float[] Run()
        {
            float[] p = (float[])p0.Clone();
            var m = new float[N];
            var v = new float[N];
            fixed (float* pp = p, pg = g, pm = m, pv = v)
            {
                OptimizerKernels.AdamW(pp, pg, pm, pv, N, 3e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 1);
                OptimizerKernels.AdamW(pp, pg, pm, pv, N, 3e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 2);
            }

            return p;
        }

        float[] one = [];
        float[] two = [];
        KernelTestHelpers.WithThreads(1, () => one = Run());
        KernelTestHelpers.WithThreads(2, () => two = Run());
        Assert.Equal(one, two);
    }
}
