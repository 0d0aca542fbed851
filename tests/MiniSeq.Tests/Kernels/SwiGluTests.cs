// SwiGLU forward/backward against the double-precision reference at every length 0..257 and SIMD width, in-place
// aliasing, finite differences, large magnitudes and thread-count independence.
using MiniSeq.Kernels;
using MiniSeq.Kernels.Reference;

namespace MiniSeq.Tests.Kernels;

public unsafe class SwiGluTests
{
    private const double Rtol = 2e-6;
    private const double Atol = 1e-7;

    [Theory]
    [ClassData(typeof(IsaWidths))]
    public void Forward_AllLengths_MatchesReference(IsaWidth width)
    {
        using var _ = KernelSelector.Force(width);
        var rng = new Random(KernelTestHelpers.Seed);
        for (int n = 0; n <= KernelTestHelpers.MaxLength; n++)
        {
            float[] gate = KernelTestHelpers.RandomFloats(rng, n, 6f);
            float[] up = KernelTestHelpers.RandomFloats(rng, n, 2f);
            var output = new float[n];
            fixed (float* g = gate, u = up, o = output)
            {
                SwiGlu.Forward(g, u, n, o);
            }

            for (int i = 0; i < n; i++)
            {
                KernelTestHelpers.AssertClose(ReferenceKernels.Silu(gate[i]) * up[i], output[i], Atol, Rtol, $"n={n} i={i}");
            }
        }
    }

    [Theory]
    [ClassData(typeof(IsaWidths))]
    public void Backward_AllLengths_MatchesReference(IsaWidth width)
    {
        using var _ = KernelSelector.Force(width);
        var rng = new Random(KernelTestHelpers.Seed + 1);
        for (int n = 0; n <= KernelTestHelpers.MaxLength; n++)
        {
            float[] dOut = KernelTestHelpers.RandomFloats(rng, n);
            float[] gate = KernelTestHelpers.RandomFloats(rng, n, 6f);
            float[] up = KernelTestHelpers.RandomFloats(rng, n, 2f);
            var dGate = new float[n];
            var dUp = new float[n];
            fixed (float* d = dOut, g = gate, u = up, dg = dGate, du = dUp)
            {
                SwiGlu.Backward(d, g, u, n, dg, du);
            }

            for (int i = 0; i < n; i++)
            {
                KernelTestHelpers.AssertClose((double)dOut[i] * up[i] * ReferenceKernels.SiluGrad(gate[i]), dGate[i], Atol, 1e-5, $"dGate n={n} i={i}");
                KernelTestHelpers.AssertClose((double)dOut[i] * ReferenceKernels.Silu(gate[i]), dUp[i], Atol, Rtol, $"dUp n={n} i={i}");
            }
        }
    }

    [Fact]
    public void Backward_InPlaceAliasing_MatchesSeparateOutputs()
    {
        var rng = new Random(KernelTestHelpers.Seed + 2);
        const int N = 1000;
        float[] dOut = KernelTestHelpers.RandomFloats(rng, N);
        float[] gate = KernelTestHelpers.RandomFloats(rng, N, 5f);
        float[] up = KernelTestHelpers.RandomFloats(rng, N);
        var dGate = new float[N];
        var dUp = new float[N];
        float[] gateInPlace = (float[])gate.Clone();
        float[] upInPlace = (float[])up.Clone();
        var output = new float[N];
        float[] outputInPlace = (float[])gate.Clone();
        fixed (float* d = dOut, g = gate, u = up, dg = dGate, du = dUp, gi = gateInPlace, ui = upInPlace, o = output, oi = outputInPlace)
        {
            SwiGlu.Backward(d, g, u, N, dg, du);
            SwiGlu.Backward(d, gi, ui, N, gi, ui);
            SwiGlu.Forward(g, u, N, o);
            SwiGlu.Forward(oi, u, N, oi);
        }

        Assert.Equal(dGate, gateInPlace);
        Assert.Equal(dUp, upInPlace);
        Assert.Equal(output, outputInPlace);
    }

    [Fact]
    public void Backward_RandomInput_MatchesFiniteDifference()
    {
        // loss = Σ dOut·silu(g)·u through the double reference forward; tolerance 1e-4 relative + 1e-6.
        var rng = new Random(KernelTestHelpers.Seed + 3);
        const int N = 37;
        float[] dOut = KernelTestHelpers.RandomFloats(rng, N);
        float[] gate = KernelTestHelpers.RandomFloats(rng, N, 4f);
        float[] up = KernelTestHelpers.RandomFloats(rng, N);
        var dGate = new float[N];
        var dUp = new float[N];
        fixed (float* d = dOut, g = gate, u = up, dg = dGate, du = dUp)
        {
            SwiGlu.Backward(d, g, u, N, dg, du);
        }

        double[] gD = KernelTestHelpers.ToDouble(gate);
        double[] uD = KernelTestHelpers.ToDouble(up);
        double Loss(double[] gg, double[] uu)
        {
            double sum = 0;
            for (int i = 0; i < N; i++)
            {
                sum += dOut[i] * ReferenceKernels.Silu(gg[i]) * uu[i];
            }

            return sum;
        }

        for (int i = 0; i < N; i++)
        {
            KernelTestHelpers.AssertClose(KernelTestHelpers.FiniteDifference(x => Loss(x, uD), gD, i), dGate[i], 1e-6, 1e-4, $"dGate[{i}]");
            KernelTestHelpers.AssertClose(KernelTestHelpers.FiniteDifference(x => Loss(gD, x), uD, i), dUp[i], 1e-6, 1e-4, $"dUp[{i}]");
        }
    }

    [Theory]
    [ClassData(typeof(IsaWidths))]
    public void ForwardBackward_HugeMagnitudes_NoNaN(IsaWidth width)
    {
        using var _ = KernelSelector.Force(width);
        float[] gate = [-1e30f, -1000f, -100f, -88.8f, 88.8f, 100f, 1000f, 1e30f, 0f, -0f, 20f, -20f, 3f, -3f, 1f, -1f, 5f];
        int n = gate.Length;
        float[] up = Enumerable.Repeat(1f, n).ToArray();
        float[] dOut = Enumerable.Repeat(1f, n).ToArray();
        var output = new float[n];
        var dGate = new float[n];
        var dUp = new float[n];
        fixed (float* g = gate, u = up, d = dOut, o = output, dg = dGate, du = dUp)
        {
            SwiGlu.Forward(g, u, n, o);
            SwiGlu.Backward(d, g, u, n, dg, du);
        }

        for (int i = 0; i < n; i++)
        {
            Assert.False(float.IsNaN(output[i]) || float.IsNaN(dGate[i]) || float.IsNaN(dUp[i]), $"NaN at g={gate[i]}");
            KernelTestHelpers.AssertClose(ReferenceKernels.Silu(gate[i]), output[i], 1e-30, 2e-6, $"silu({gate[i]})");
            KernelTestHelpers.AssertClose(ReferenceKernels.SiluGrad(gate[i]), dGate[i], 1e-30, 1e-5, $"silu'({gate[i]})");
        }
    }

    [Fact]
    public void ForwardBackward_ThreadCount_BitIdentical()
    {
        var rng = new Random(KernelTestHelpers.Seed + 4);
        const int N = 300_001;
        float[] dOut = KernelTestHelpers.RandomFloats(rng, N);
        float[] gate = KernelTestHelpers.RandomFloats(rng, N, 6f);
        float[] up = KernelTestHelpers.RandomFloats(rng, N);
        float[][] Run()
        {
            var o = new float[N];
            var dg = new float[N];
            var du = new float[N];
            fixed (float* pd = dOut, pg = gate, pu = up, po = o, pdg = dg, pdu = du)
            {
                SwiGlu.Forward(pg, pu, N, po);
                SwiGlu.Backward(pd, pg, pu, N, pdg, pdu);
            }

            return [o, dg, du];
        }

        float[][] one = [];
        float[][] two = [];
        KernelTestHelpers.WithThreads(1, () => one = Run());
        KernelTestHelpers.WithThreads(2, () => two = Run());
        for (int k = 0; k < 3; k++)
        {
            Assert.Equal(one[k], two[k]);
        }
    }
}
