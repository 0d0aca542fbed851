// The Linear op against a double-precision reference: bias forward/backward, accumulation, frozen weights, and dx
// written over x (the MLP backward relies on it). A bf16 weight gives the fp32 results on the widened weight bit for
// bit (forward, dx, bias and weight gradients), at every width, frozen or with an fp32 weight gradient (mixed precision).
using MiniSeq.IO;
using MiniSeq.Kernels;
using MiniSeq.Tests.Helpers;

namespace MiniSeq.Tests.Kernels;

public unsafe class LinearTests
{
    private static float[] Random(int n, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => (float)((rng.NextDouble() * 2) - 1)).ToArray();
    }

    [Theory]
    [InlineData(1, 3, 5)]
    [InlineData(37, 64, 24)]
    [InlineData(130, 33, 70)]
    public void ForwardBackward_WithBias_MatchesReference(int rows, int inF, int outF)
    {
        float[] x = Random(rows * inF, 1), w = Random(outF * inF, 2), b = Random(outF, 3), dy = Random(rows * outF, 4);
        float[] y = Random(rows * outF, 5), y0 = (float[])y.Clone();
        float[] dw = Random(outF * inF, 6), dw0 = (float[])dw.Clone(), db = Random(outF, 7), db0 = (float[])db.Clone();
        float[] dx = Random(rows * inF, 8), dx0 = (float[])dx.Clone();
        fixed (float* px = x, pw = w, pb = b, pdy = dy, py = y, pdw = dw, pdb = db, pdx = dx)
        {
            var lin = new LinearWeights(pw, inF, outF, pdw, pb, pdb);
            Linear.Forward(px, rows, lin, py, accumulate: true);
            Linear.Backward(pdy, px, rows, lin, pdx, accumulateDx: true);
        }

        var ry = new float[rows * outF];
        var rdw = new float[outF * inF];
        var rdb = new float[outF];
        var rdx = new float[rows * inF];
        for (int r = 0; r < rows; r++)
        {
            for (int o = 0; o < outF; o++)
            {
                double s = y0[(r * outF) + o] + b[o];
                for (int i = 0; i < inF; i++)
                {
                    s += (double)x[(r * inF) + i] * w[(o * inF) + i];
                }

                ry[(r * outF) + o] = (float)s;
            }
        }

        for (int o = 0; o < outF; o++)
        {
            double sb = db0[o];
            for (int r = 0; r < rows; r++)
            {
                sb += dy[(r * outF) + o];
            }

            rdb[o] = (float)sb;
            for (int i = 0; i < inF; i++)
            {
                double s = dw0[(o * inF) + i];
                for (int r = 0; r < rows; r++)
                {
                    s += (double)dy[(r * outF) + o] * x[(r * inF) + i];
                }

                rdw[(o * inF) + i] = (float)s;
            }
        }

        for (int r = 0; r < rows; r++)
        {
            for (int i = 0; i < inF; i++)
            {
                double s = dx0[(r * inF) + i];
                for (int o = 0; o < outF; o++)
                {
                    s += (double)dy[(r * outF) + o] * w[(o * inF) + i];
                }

                rdx[(r * inF) + i] = (float)s;
            }
        }

        Compare.Close(y, ry, 1e-5, "y");
        Compare.Close(dw, rdw, 1e-5, "dW");
        Compare.Close(db, rdb, 1e-5, "db");
        Compare.Close(dx, rdx, 1e-5, "dx");
    }

    [Fact]
    public void Backward_FrozenWeight_NoWeightGradient_DxMayOverwriteX()
    {
        const int Rows = 9, In = 12, Out = 12;
        float[] x = Random(Rows * In, 1), w = Random(Out * In, 2), dy = Random(Rows * Out, 3);
        float[] dxSeparate = new float[Rows * In];
        float[] aliased = (float[])x.Clone();
        fixed (float* px = x, pw = w, pdy = dy, pdx = dxSeparate, pa = aliased)
        {
            var frozen = new LinearWeights(pw, In, Out);
            Linear.Backward(pdy, px, Rows, frozen, pdx);
            float[] dw = new float[Out * In];
            fixed (float* pdw = dw)
            {
                // With a gradient the weight gradient must be formed from x before dx overwrites it.
                var trained = new LinearWeights(pw, In, Out, pdw);
                Linear.Backward(pdy, pa, Rows, trained, pa);
                float[] dwFromSeparate = new float[Out * In];
                fixed (float* pds = dwFromSeparate)
                {
                    Linear.Backward(pdy, px, Rows, new LinearWeights(pw, In, Out, pds), null);
                }

                Assert.Equal(dwFromSeparate, dw);
            }
        }

        Assert.Equal(dxSeparate, aliased);
    }

    public static TheoryData<IsaWidth, int, int, int> Bf16Cases()
    {
        var data = new TheoryData<IsaWidth, int, int, int>();
        foreach (IsaWidth width in KernelSelector.AllWidths)
        {
            data.Add(width, 1, 3, 5);
            data.Add(width, 37, 64, 24);
            data.Add(width, 130, 33, 70);
            data.Add(width, 300, 200, 150);
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(Bf16Cases))]
    public void ForwardBackward_Bf16Weight_BitIdenticalToFp32OnWidenedWeight(IsaWidth width, int rows, int inF, int outF)
    {
        using var _ = KernelSelector.Force(width);
        ushort[] bits = Array.ConvertAll(Random(outF * inF, 2), SafeTensors.FloatToBFloat16);
        float[] widened = Array.ConvertAll(bits, SafeTensors.BFloat16ToFloat);
        float[] x = Random(rows * inF, 1), b = Random(outF, 3), dy = Random(rows * outF, 4);
        foreach (bool accumulate in new[] { false, true })
        {
            float[] y0 = Random(rows * outF, 5), dx0 = Random(rows * inF, 8), db0 = Random(outF, 7), dw0 = Random(outF * inF, 9);
            (float[] Y, float[] Dx, float[] Db, float[] Dw) fp32 = ((float[])y0.Clone(), (float[])dx0.Clone(), (float[])db0.Clone(), (float[])dw0.Clone());
            (float[] Y, float[] Dx, float[] Db, float[] Dw) bf16 = ((float[])y0.Clone(), (float[])dx0.Clone(), (float[])db0.Clone(), (float[])dw0.Clone());
            (float[] Y, float[] Dx, float[] Db) frozenOut = ((float[])y0.Clone(), (float[])dx0.Clone(), (float[])db0.Clone());
            fixed (float* px = x, pb = b, pdy = dy, pw = widened, py = fp32.Y, pdx = fp32.Dx, pdb = fp32.Db, pdw = fp32.Dw, qy = bf16.Y, qdx = bf16.Dx, qdb = bf16.Db, qdw = bf16.Dw)
            fixed (float* fy = frozenOut.Y, fdx = frozenOut.Dx, fdb = frozenOut.Db)
            fixed (ushort* pbits = bits)
            {
                var reference = new LinearWeights(pw, inF, outF, pdw, pb, pdb);
                Linear.Forward(px, rows, reference, py, accumulate);
                Linear.Backward(pdy, px, rows, reference, pdx, accumulate);

                // Mixed precision: the bf16 compute copy of a trained weight, its gradient accumulated in fp32.
                var mixed = new LinearWeights(pbits, inF, outF, qdw, pb, qdb);
                Assert.True(mixed.Weight == null && mixed.WeightGrad == qdw);
                Linear.Forward(px, rows, mixed, qy, accumulate);
                Linear.Backward(pdy, px, rows, mixed, qdx, accumulate);

                var frozen = new LinearWeights(pbits, inF, outF, null, pb, fdb);
                Assert.True(frozen.Weight == null && frozen.WeightGrad == null);
                Linear.Forward(px, rows, frozen, fy, accumulate);
                Linear.Backward(pdy, px, rows, frozen, fdx, accumulate);
            }

            string where = $"{width} rows={rows} in={inF} out={outF} accumulate={accumulate}";
            Assert.True(fp32.Y.AsSpan().SequenceEqual(bf16.Y), $"{where}: y differs");
            Assert.True(fp32.Dx.AsSpan().SequenceEqual(bf16.Dx), $"{where}: dx differs");
            Assert.True(fp32.Db.AsSpan().SequenceEqual(bf16.Db), $"{where}: db differs");
            Assert.True(fp32.Dw.AsSpan().SequenceEqual(bf16.Dw), $"{where}: dw differs");
            Assert.True(fp32.Y.AsSpan().SequenceEqual(frozenOut.Y), $"{where}: frozen y differs");
            Assert.True(fp32.Dx.AsSpan().SequenceEqual(frozenOut.Dx), $"{where}: frozen dx differs");
        }
    }

    [Fact]
    public void Backward_Bf16WeightDxOverX_MatchesSeparateDx()
    {
        const int Rows = 9, In = 12, Out = 12;
        ushort[] bits = Array.ConvertAll(Random(Out * In, 2), SafeTensors.FloatToBFloat16);
        float[] x = Random(Rows * In, 1), dy = Random(Rows * Out, 3);
        float[] separate = new float[Rows * In];
        float[] aliased = (float[])x.Clone();
        fixed (ushort* pw = bits)
        fixed (float* px = x, pdy = dy, pdx = separate, pa = aliased)
        {
            var frozen = new LinearWeights(pw, In, Out);
            Linear.Backward(pdy, px, Rows, frozen, pdx);
            Linear.Backward(pdy, pa, Rows, frozen, pa);
        }

        Assert.Equal(separate, aliased);
    }

    [Fact]
    public void LinearWeights_NullWeight_Throws()
    {
        Assert.Throws<ArgumentNullException>(() => new LinearWeights((ushort*)null, 2, 3));
        Assert.Throws<ArgumentNullException>(() => new LinearWeights((float*)null, 2, 3));
    }
}
