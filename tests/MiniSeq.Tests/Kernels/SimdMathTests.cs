// Accuracy of the vectorised exp, sigmoid and tanh at every SIMD width, against double-precision Math functions.
using MiniSeq.Kernels;
using MiniSeq.Kernels.Simd;

namespace MiniSeq.Tests.Kernels;

public unsafe class SimdMathTests
{
    private static double Ulp(float value) => MathF.BitIncrement(MathF.Abs(value)) - MathF.Abs(value);

    private static float[] Map<TOp>(float[] x, IsaWidth width)
        where TOp : IUnaryOperator
    {
        var y = new float[x.Length];
        fixed (float* px = x, py = y)
        {
            var op = new MapOperator<TOp> { Source = px, Destination = py };
            SimdLoops.Run(ref op, 0, x.Length, width);
        }

        return y;
    }

    [Theory]
    [ClassData(typeof(IsaWidths))]
    public void Exp_UniformInputs_WithinTwoUlp(IsaWidth width)
    {
        var rng = new Random(KernelTestHelpers.Seed);
        float[] x = KernelTestHelpers.RandomFloats(rng, 1 << 16, 87f);
        float[] y = Map<ExpOperator>(x, width);
        double worst = 0;
        for (int i = 0; i < x.Length; i++)
        {
            double exact = Math.Exp(x[i]);
            worst = Math.Max(worst, Math.Abs(y[i] - exact) / Ulp((float)exact));
        }

        Assert.True(worst <= 2.0, $"exp max error {worst} ulp");
    }

    [Theory]
    [ClassData(typeof(IsaWidths))]
    public void Exp_SpecialInputs_SaturateAndPropagateNaN(IsaWidth width)
    {
        float[] x = [89f, 1000f, float.PositiveInfinity, -104f, -1000f, float.NegativeInfinity, float.NaN, 0f, -87f, 88.7f];
        float[] y = Map<ExpOperator>(x, width);
        Assert.Equal(float.PositiveInfinity, y[0]);
        Assert.Equal(float.PositiveInfinity, y[1]);
        Assert.Equal(float.PositiveInfinity, y[2]);
        Assert.Equal(0f, y[3]);
        Assert.Equal(0f, y[4]);
        Assert.Equal(0f, y[5]);
        Assert.True(float.IsNaN(y[6]));
        Assert.Equal(1f, y[7]);
        KernelTestHelpers.AssertClose(Math.Exp((double)-87f), y[8], 0, 4e-7, "exp(-87)");
        KernelTestHelpers.AssertClose(Math.Exp((double)88.7f), y[9], 0, 4e-7, "exp(88.7)");
    }

    [Theory]
    [ClassData(typeof(IsaWidths))]
    public void Tanh_UniformInputs_WithinTwoAndAHalfUlp(IsaWidth width)
    {
        var rng = new Random(KernelTestHelpers.Seed);
        float[] x = KernelTestHelpers.RandomFloats(rng, 1 << 16, 3f);
        x[0] = 0f;
        x[1] = 1e-30f;
        x[2] = 0.5f;
        x[3] = -0.4999f;
        x[4] = 50f;
        x[5] = -50f;
        float[] y = Map<TanhOperator>(x, width);
        double worst = 0;
        for (int i = 0; i < x.Length; i++)
        {
            double exact = Math.Tanh(x[i]);
            worst = Math.Max(worst, Math.Abs(y[i] - exact) / Ulp((float)exact));
        }

        Assert.True(worst <= 2.5, $"tanh max error {worst} ulp");
    }

    [Theory]
    [ClassData(typeof(IsaWidths))]
    public void Sigmoid_LargeMagnitudes_FiniteAndAccurate(IsaWidth width)
    {
        var rng = new Random(KernelTestHelpers.Seed);
        float[] x = KernelTestHelpers.RandomFloats(rng, 4096, 120f);
        x[0] = 1e30f;
        x[1] = -1e30f;
        float[] y = Map<SigmoidOperator>(x, width);
        for (int i = 0; i < x.Length; i++)
        {
            double exact = 1 / (1 + Math.Exp(-(double)x[i]));
            KernelTestHelpers.AssertClose(exact, y[i], 1e-37, 5e-7, $"sigmoid({x[i]})");
        }
    }
}
