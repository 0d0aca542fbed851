// AdamW, SGD (momentum, dampening, Nesterov), Lion and LAMB against hand-computed double-precision references over
// several steps, at every length 0..257 and SIMD width, plus the torch-style float factors and thread-count
// independence. The PyTorch references over several steps are OptimizerReferenceTests.
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

    public static TheoryData<IsaWidth, float, float, bool> SgdVariants()
    {
        var data = new TheoryData<IsaWidth, float, float, bool>();
        foreach (IsaWidth width in KernelSelector.AllWidths)
        {
            data.Add(width, 0f, 0f, false);     // plain
            data.Add(width, 0.9f, 0f, false);   // momentum
            data.Add(width, 0.9f, 0.5f, false); // dampened momentum
            data.Add(width, 0.9f, 0f, true);    // Nesterov
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(SgdVariants))]
    public void Sgd_ThreeSteps_MatchesDoubleReference(IsaWidth width, float mu, float dampening, bool nesterov)
    {
        using var _ = KernelSelector.Force(width);
        var rng = new Random(KernelTestHelpers.Seed + 1);
        for (int n = 0; n <= KernelTestHelpers.MaxLength; n++)
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
                    OptimizerKernels.Sgd(pp, pg, pb, n, 0.05f, mu, dampening, nesterov, 0.01f, step);
                }

                ReferenceKernels.SgdStep(pD, KernelTestHelpers.ToDouble(g), bufD, 0.05, mu, dampening, nesterov, 0.01, step);
            }

            KernelTestHelpers.AssertAllClose(pD, p, 1e-6, 1e-5, $"p n={n} mu={mu} dampening={dampening} nesterov={nesterov}");
            if (bufD != null)
            {
                KernelTestHelpers.AssertAllClose(bufD, buf!, 1e-6, 1e-5, $"buf n={n}");
            }
        }
    }

    [Theory]
    [ClassData(typeof(IsaWidths))]
    public void Lion_FiveSteps_MatchesDoubleReference(IsaWidth width)
    {
        using var _ = KernelSelector.Force(width);
        var rng = new Random(KernelTestHelpers.Seed + 3);
        for (int n = 0; n <= KernelTestHelpers.MaxLength; n++)
        {
            float[] p = KernelTestHelpers.RandomFloats(rng, n);
            var m = new float[n];
            double[] pD = KernelTestHelpers.ToDouble(p);
            var mD = new double[n];
            for (int step = 1; step <= 5; step++)
            {
                float[] g = KernelTestHelpers.RandomFloats(rng, n, 0.5f);
                fixed (float* pp = p, pg = g, pm = m)
                {
                    OptimizerKernels.Lion(pp, pg, pm, n, 1e-2f, 0.9f, 0.99f, 0.1f);
                }

                ReferenceKernels.LionStep(pD, KernelTestHelpers.ToDouble(g), mD, 0.01, 0.9, 0.99, 0.1);
            }

            // Every move is ±lr exactly (the seed has no near-tie where float and double signs differ): p agrees to the
            // rounding of five decays and moves, m to float rounding.
            KernelTestHelpers.AssertAllClose(pD, p, 1e-6, 1e-6, $"p n={n}");
            KernelTestHelpers.AssertAllClose(mD, m, 1e-7, 1e-5, $"m n={n}");
        }
    }

    [Fact]
    public void Lion_ZeroMomentumAndGradient_SignIsZero_OnlyDecays()
    {
        // torch.sign(0) = 0: a parameter whose interpolation is ±0 moves by its weight decay only.
        float[] p = [1f, -2f, 0.5f];
        float[] g = [0f, -0f, 0.25f];
        var m = new float[3];
        fixed (float* pp = p, pg = g, pm = m)
        {
            OptimizerKernels.Lion(pp, pg, pm, 3, 0.1f, 0.9f, 0.99f, 0.5f);
        }

        Assert.Equal(1f * 0.95f, p[0]);
        Assert.Equal(-2f * 0.95f, p[1]);
        Assert.Equal((0.5f * 0.95f) - 0.1f, p[2]);
        Assert.Equal(0.0025f, m[2], 1e-9f);
    }

    [Theory]
    [ClassData(typeof(IsaWidths))]
    public void Lamb_FiveSteps_MatchesDoubleReference(IsaWidth width)
    {
        using var _ = KernelSelector.Force(width);
        var rng = new Random(KernelTestHelpers.Seed + 4);
        for (int n = 0; n <= KernelTestHelpers.MaxLength; n++)
        {
            float wd = n % 2 == 0 ? 0.1f : 0f;
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
                    OptimizerKernels.Lamb(pp, pg, pm, pv, n, 1e-2f, 0.9f, 0.95f, 1e-6f, wd, step);
                }

                ReferenceKernels.LambStep(pD, KernelTestHelpers.ToDouble(g), mD, vD, 0.01, 0.9, 0.95, 1e-6, wd, step);
            }

            // As AdamW: moves of ≈lr·trust·r, with the trust ratio's norms summed in double.
            KernelTestHelpers.AssertAllClose(pD, p, 2e-6, 1e-5, $"p n={n} wd={wd}");
            KernelTestHelpers.AssertAllClose(mD, m, 1e-7, 1e-5, $"m n={n}");
            KernelTestHelpers.AssertAllClose(vD, v, 1e-9, 1e-5, $"v n={n}");
        }
    }

    [Fact]
    public void Lamb_ZeroParametersOrUpdate_TrustIsOne()
    {
        // ‖p‖ = 0 (a zero-initialised bias): the update is r itself, an Adam step (lr·sign(g) at step 1).
        float[] p = [0f, 0f, 0f];
        float[] g = [0.5f, -2f, 1f];
        var m = new float[3];
        var v = new float[3];
        fixed (float* pp = p, pg = g, pm = m, pv = v)
        {
            OptimizerKernels.Lamb(pp, pg, pm, pv, 3, 1e-2f, 0.9f, 0.999f, 1e-8f, 0.1f, 1);
        }

        KernelTestHelpers.AssertClose(-1e-2, p[0], 1e-8, 0, "p0");
        KernelTestHelpers.AssertClose(1e-2, p[1], 1e-8, 0, "p1");
        KernelTestHelpers.AssertClose(-1e-2, p[2], 1e-8, 0, "p2");

        // r = 0 (zero gradient, no decay): nothing moves.
        float[] q = [1f, -2f];
        float[] zero = [0f, 0f];
        var m2 = new float[2];
        var v2 = new float[2];
        fixed (float* pq = q, pg = zero, pm = m2, pv = v2)
        {
            OptimizerKernels.Lamb(pq, pg, pm, pv, 2, 1e-2f, 0.9f, 0.999f, 1e-8f, 0f, 1);
        }

        Assert.Equal([1f, -2f], q);
    }

    [Fact]
    public void Lamb_ManyBlocks_MatchesDoubleReference_ThreadCountBitIdentical()
    {
        // Over several 16K-element blocks and 1K-element runs: the trust ratio's sums are blocked, so one and two
        // threads give the same bits, and both match the double reference.
        var rng = new Random(KernelTestHelpers.Seed + 5);
        const int N = (4 * 16384) + 1000 + 7;
        float[] p0 = KernelTestHelpers.RandomFloats(rng, N);
        float[][] grads = [KernelTestHelpers.RandomFloats(rng, N), KernelTestHelpers.RandomFloats(rng, N, 0.1f)];
        float[] Run()
        {
            float[] p = (float[])p0.Clone();
            var m = new float[N];
            var v = new float[N];
            for (int step = 1; step <= grads.Length; step++)
            {
                fixed (float* pp = p, pg = grads[step - 1], pm = m, pv = v)
                {
                    OptimizerKernels.Lamb(pp, pg, pm, pv, N, 1e-2f, 0.9f, 0.999f, 1e-6f, 0.01f, step);
                }
            }

            return p;
        }

        float[] one = [];
        float[] two = [];
        KernelTestHelpers.WithThreads(1, () => one = Run());
        KernelTestHelpers.WithThreads(2, () => two = Run());
        Assert.Equal(one, two);

        double[] pD = KernelTestHelpers.ToDouble(p0);
        var mD = new double[N];
        var vD = new double[N];
        for (int step = 1; step <= grads.Length; step++)
        {
            ReferenceKernels.LambStep(pD, KernelTestHelpers.ToDouble(grads[step - 1]), mD, vD, 0.01, 0.9, 0.999, 1e-6, 0.01, step);
        }

        KernelTestHelpers.AssertAllClose(pD, one, 1e-6, 1e-5, "p");
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

    [Fact]
    public void LionAndSgdNesterov_ThreadCount_BitIdentical()
    {
        var rng = new Random(KernelTestHelpers.Seed + 6);
        const int N = 250_007;
        float[] p0 = KernelTestHelpers.RandomFloats(rng, N);
        float[] g = KernelTestHelpers.RandomFloats(rng, N);
        (float[], float[]) Run()
        {
            float[] lion = (float[])p0.Clone();
            float[] sgd = (float[])p0.Clone();
            var m = new float[N];
            var buf = new float[N];
            fixed (float* pl = lion, ps = sgd, pg = g, pm = m, pb = buf)
            {
                for (int step = 1; step <= 2; step++)
                {
                    OptimizerKernels.Lion(pl, pg, pm, N, 3e-4f, 0.9f, 0.99f, 0.1f);
                    OptimizerKernels.Sgd(ps, pg, pb, N, 1e-2f, 0.9f, 0f, true, 0.01f, step);
                }
            }

            return (lion, sgd);
        }

        (float[], float[]) one = ([], []);
        (float[], float[]) two = ([], []);
        KernelTestHelpers.WithThreads(1, () => one = Run());
        KernelTestHelpers.WithThreads(2, () => two = Run());
        Assert.Equal(one.Item1, two.Item1);
        Assert.Equal(one.Item2, two.Item2);
    }
}
