// RMSNorm forward/backward against the double reference for every row width 1..257 at every SIMD width, finite
// differences, the fused residual-add variant, accumulation semantics and thread-count independence.
using MiniSeq.Kernels;
using MiniSeq.Kernels.Reference;

namespace MiniSeq.Tests.Kernels;

public unsafe class RmsNormTests
{
    private const float Eps = 1e-5f;

    [Theory]
    [ClassData(typeof(IsaWidths))]
    public void Forward_AllRowWidths_MatchesReference(IsaWidth width)
    {
        using var _ = KernelSelector.Force(width);
        var rng = new Random(KernelTestHelpers.Seed);
        const int Rows = 3;
        for (int dim = 1; dim <= KernelTestHelpers.MaxLength; dim++)
        {
            float[] x = KernelTestHelpers.RandomFloats(rng, Rows * dim, 2f);
            float[] w = KernelTestHelpers.RandomFloats(rng, dim, 1f, 1f);
            var output = new float[Rows * dim];
            var rstd = new float[Rows];
            fixed (float* px = x, pw = w, po = output, pr = rstd)
            {
                RmsNorm.Forward(px, pw, Rows, dim, Eps, po, pr);
            }

            double[] expected = ReferenceKernels.RmsNormForward(KernelTestHelpers.ToDouble(x), KernelTestHelpers.ToDouble(w), Rows, dim, Eps, out double[] rstdExpected);
            KernelTestHelpers.AssertAllClose(expected, output, 1e-6, 2e-6, $"out dim={dim}");
            KernelTestHelpers.AssertAllClose(rstdExpected, rstd, 0, 2e-6, $"rstd dim={dim}");
        }
    }

    [Theory]
    [ClassData(typeof(IsaWidths))]
    public void Backward_AllRowWidths_AccumulatesReferenceGradients(IsaWidth width)
    {
        using var _ = KernelSelector.Force(width);
        var rng = new Random(KernelTestHelpers.Seed + 1);
        const int Rows = 3;
        for (int dim = 1; dim <= KernelTestHelpers.MaxLength; dim++)
        {
            float[] x = KernelTestHelpers.RandomFloats(rng, Rows * dim, 2f);
            float[] w = KernelTestHelpers.RandomFloats(rng, dim, 1f, 1f);
            float[] dOut = KernelTestHelpers.RandomFloats(rng, Rows * dim);
            float[] dx = KernelTestHelpers.RandomFloats(rng, Rows * dim);   // accumulated into
            float[] dw = KernelTestHelpers.RandomFloats(rng, dim);
            double[] dx0 = KernelTestHelpers.ToDouble(dx);
            double[] dw0 = KernelTestHelpers.ToDouble(dw);
            var output = new float[Rows * dim];
            var rstd = new float[Rows];
            fixed (float* px = x, pw = w, po = output, pr = rstd, pd = dOut, pdx = dx, pdw = dw)
            {
                RmsNorm.Forward(px, pw, Rows, dim, Eps, po, pr);
                RmsNorm.Backward(pd, px, pw, pr, Rows, dim, pdx, pdw);
            }

            (double[] dxRef, double[] dwRef) = ReferenceKernels.RmsNormBackward(KernelTestHelpers.ToDouble(dOut), KernelTestHelpers.ToDouble(x), KernelTestHelpers.ToDouble(w), Rows, dim, Eps);
            for (int i = 0; i < dxRef.Length; i++)
            {
                dxRef[i] += dx0[i];
            }

            for (int i = 0; i < dim; i++)
            {
                dwRef[i] += dw0[i];
            }

            KernelTestHelpers.AssertAllClose(dxRef, dx, 2e-5, 1e-5, $"dx dim={dim}");
            KernelTestHelpers.AssertAllClose(dwRef, dw, 2e-5, 1e-5, $"dw dim={dim}");
        }
    }

    [Fact]
    public void Backward_RandomInput_MatchesFiniteDifference()
    {
        // loss = Σ dOut·RMSNorm(x; w) in double; tolerance 1e-4 relative + 1e-5 absolute.
        var rng = new Random(KernelTestHelpers.Seed + 2);
        const int Rows = 2, Dim = 19;
        float[] x = KernelTestHelpers.RandomFloats(rng, Rows * Dim, 2f);
        float[] w = KernelTestHelpers.RandomFloats(rng, Dim, 1f, 1f);
        float[] dOut = KernelTestHelpers.RandomFloats(rng, Rows * Dim);
        var dx = new float[Rows * Dim];
        var dw = new float[Dim];
        var output = new float[Rows * Dim];
        var rstd = new float[Rows];
        fixed (float* px = x, pw = w, po = output, pr = rstd, pd = dOut, pdx = dx, pdw = dw)
        {
            RmsNorm.Forward(px, pw, Rows, Dim, Eps, po, pr);
            RmsNorm.Backward(pd, px, pw, pr, Rows, Dim, pdx, pdw);
        }

        double[] xD = KernelTestHelpers.ToDouble(x);
        double[] wD = KernelTestHelpers.ToDouble(w);
        double[] dOutD = KernelTestHelpers.ToDouble(dOut);
        double Loss(double[] xx, double[] ww) => KernelTestHelpers.Dot(dOutD, ReferenceKernels.RmsNormForward(xx, ww, Rows, Dim, Eps, out _));
        for (int i = 0; i < xD.Length; i++)
        {
            KernelTestHelpers.AssertClose(KernelTestHelpers.FiniteDifference(v => Loss(v, wD), xD, i), dx[i], 1e-5, 1e-4, $"dx[{i}]");
        }

        for (int i = 0; i < Dim; i++)
        {
            KernelTestHelpers.AssertClose(KernelTestHelpers.FiniteDifference(v => Loss(xD, v), wD, i), dw[i], 1e-5, 1e-4, $"dw[{i}]");
        }
    }

    [Theory]
    [ClassData(typeof(IsaWidths))]
    public void AddForward_InPlaceResidual_EqualsAddThenForward(IsaWidth width)
    {
        using var _ = KernelSelector.Force(width);
        var rng = new Random(KernelTestHelpers.Seed + 3);
        foreach (int dim in new[] { 1, 15, 16, 33, 100, 257 })
        {
            const int Rows = 4;
            float[] residual = KernelTestHelpers.RandomFloats(rng, Rows * dim);
            float[] x = KernelTestHelpers.RandomFloats(rng, Rows * dim);
            float[] w = KernelTestHelpers.RandomFloats(rng, dim, 1f, 1f);
            var sum = new float[Rows * dim];
            var expected = new float[Rows * dim];
            var expectedRstd = new float[Rows];
            float[] stream = (float[])residual.Clone();
            var output = new float[Rows * dim];
            var rstd = new float[Rows];
            fixed (float* pr = residual, px = x, pw = w, ps = sum, pe = expected, per = expectedRstd, pst = stream, po = output, prs = rstd)
            {
                VectorOps.Add(pr, px, Rows * dim, ps);
                RmsNorm.Forward(ps, pw, Rows, dim, Eps, pe, per);
                RmsNorm.AddForward(pst, px, pw, Rows, dim, Eps, pst, po, prs);
            }

            Assert.Equal(sum, stream);
            Assert.Equal(expected, output);
            Assert.Equal(expectedRstd, rstd);
        }
    }

    [Fact]
    public void ForwardBackward_ThreadCount_BitIdentical()
    {
        var rng = new Random(KernelTestHelpers.Seed + 4);
        const int Rows = 96, Dim = 1000;
        float[] x = KernelTestHelpers.RandomFloats(rng, Rows * Dim, 2f);
        float[] w = KernelTestHelpers.RandomFloats(rng, Dim, 1f, 1f);
        float[] dOut = KernelTestHelpers.RandomFloats(rng, Rows * Dim);
        float[][] Run()
        {
            var output = new float[Rows * Dim];
            var rstd = new float[Rows];
            var dx = new float[Rows * Dim];
            var dw = new float[Dim];
            fixed (float* px = x, pw = w, po = output, pr = rstd, pd = dOut, pdx = dx, pdw = dw)
            {
                RmsNorm.Forward(px, pw, Rows, Dim, Eps, po, pr);
                RmsNorm.Backward(pd, px, pw, pr, Rows, Dim, pdx, pdw);
            }

            return [output, rstd, dx, dw];
        }

        float[][] one = [];
        float[][] two = [];
        KernelTestHelpers.WithThreads(1, () => one = Run());
        KernelTestHelpers.WithThreads(2, () => two = Run());
        for (int k = 0; k < one.Length; k++)
        {
            Assert.Equal(one[k], two[k]);
        }
    }
}
