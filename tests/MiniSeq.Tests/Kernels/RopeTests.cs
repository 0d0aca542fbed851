// RoPE: the table against HF's float32 formula, forward against a direct rotate_half formula with positionOffset and
// seqLen wrap-around at every head size and SIMD width, backward by finite differences (the transposed rotation),
// ledger accounting and range checks.
using MiniSeq.Kernels;
using MiniSeq.Kernels.Reference;
using MiniSeq.Tensors;

namespace MiniSeq.Tests.Kernels;

public unsafe class RopeTests
{
    [Fact]
    public void Table_Llama_MatchesFloat32Formula()
    {
        var ledger = new MemoryLedger();
        using var table = new RopeTable(64, 10000.0, 300, ledger);
        (float[] cos, float[] sin) = ReferenceKernels.RopeTable(64, 10000.0, 300);
        for (int i = 0; i < cos.Length; i++)
        {
            Assert.Equal(cos[i], table.Cos[i]);
            Assert.Equal(sin[i], table.Sin[i]);
        }

        // Independent spot check in double: angle = p·θ^(−2j/D), to float32 rounding of the angle (≤ p·2^−24 rad).
        for (int p = 0; p < 300; p += 37)
        {
            for (int j = 0; j < 32; j++)
            {
                double angle = p * Math.Pow(10000.0, -2.0 * j / 64);
                KernelTestHelpers.AssertClose(Math.Cos(angle), table.Cos[(p * 32) + j], 4e-7 * (p + 1), 0, $"cos p={p} j={j}");
                KernelTestHelpers.AssertClose(Math.Sin(angle), table.Sin[(p * 32) + j], 4e-7 * (p + 1), 0, $"sin p={p} j={j}");
            }
        }
    }

    [Fact]
    public void Table_Ledger_AccountsScratchAndReleases()
    {
        var ledger = new MemoryLedger();
        var table = new RopeTable(8, 500000.0, 10, ledger);
        Assert.Equal(2 * 10 * 4 * sizeof(float), ledger.Current(MemoryCategory.Scratch));
        table.Dispose();
        Assert.Equal(0, ledger.Current(MemoryCategory.Scratch));
    }

    [Theory]
    [ClassData(typeof(IsaWidths))]
    public void ForwardBackward_AllHeadDims_MatchRotateHalfFormula(IsaWidth width)
    {
        using var _ = KernelSelector.Force(width);
        var rng = new Random(KernelTestHelpers.Seed);
        const int Rows = 5, SeqLen = 3, Heads = 2, Offset = 7;
        for (int half = 1; half <= 129; half++)
        {
            int d = 2 * half;
            using var table = new RopeTable(d, 10000.0, Offset + SeqLen);
            (float[] cos, float[] sin) = ReferenceKernels.RopeTable(d, 10000.0, Offset + SeqLen);
            float[] x = KernelTestHelpers.RandomFloats(rng, Rows * Heads * d, 3f);
            float[] forward = (float[])x.Clone();
            float[] backward = (float[])x.Clone();
            fixed (float* pf = forward, pb = backward)
            {
                Rope.Forward(pf, Rows, SeqLen, Heads, table, Offset);
                Rope.Backward(pb, Rows, SeqLen, Heads, table, Offset);
            }

            double[] xD = KernelTestHelpers.ToDouble(x);
            KernelTestHelpers.AssertAllClose(ReferenceKernels.RopeForward(xD, Rows, SeqLen, Heads, d, cos, sin, Offset), forward, 1e-6, 1e-6, $"forward D={d}");
            KernelTestHelpers.AssertAllClose(ReferenceKernels.RopeForward(xD, Rows, SeqLen, Heads, d, cos, sin, Offset, transposed: true), backward, 1e-6, 1e-6, $"backward D={d}");
        }
    }

    [Fact]
    public void Backward_RandomInput_MatchesFiniteDifference()
    {
        // loss = Σ dOut·rope(x) through the reference forward; the map is linear so FD is exact up to rounding (1e-6).
        var rng = new Random(KernelTestHelpers.Seed + 1);
        const int Rows = 4, SeqLen = 2, Heads = 3, D = 6, Offset = 5;
        using var table = new RopeTable(D, 10000.0, 16);
        (float[] cos, float[] sin) = ReferenceKernels.RopeTable(D, 10000.0, 16);
        float[] dOut = KernelTestHelpers.RandomFloats(rng, Rows * Heads * D);
        float[] dx = (float[])dOut.Clone();
        fixed (float* p = dx)
        {
            Rope.Backward(p, Rows, SeqLen, Heads, table, Offset);
        }

        double[] dOutD = KernelTestHelpers.ToDouble(dOut);
        double[] x = KernelTestHelpers.ToDouble(KernelTestHelpers.RandomFloats(rng, Rows * Heads * D));
        double Loss(double[] v) => KernelTestHelpers.Dot(dOutD, ReferenceKernels.RopeForward(v, Rows, SeqLen, Heads, D, cos, sin, Offset));
        for (int i = 0; i < x.Length; i++)
        {
            KernelTestHelpers.AssertClose(KernelTestHelpers.FiniteDifference(Loss, x, i), dx[i], 1e-6, 1e-6, $"dx[{i}]");
        }
    }

    [Fact]
    public void Forward_PositionBeyondTable_Throws()
    {
        using var table = new RopeTable(4, 10000.0, 8);
        var x = new float[4 * 4];
        fixed (float* p = x)
        {
            float* px = p;
            Assert.Throws<ArgumentOutOfRangeException>(() => Rope.Forward(px, 4, 4, 1, table, 5));
        }
    }

    [Fact]
    public void ForwardBackward_ThreadCount_BitIdentical()
    {
        var rng = new Random(KernelTestHelpers.Seed + 2);
        const int Rows = 256, SeqLen = 128, Heads = 8, D = 64;
        using var table = new RopeTable(D, 500000.0, SeqLen);
        float[] x = KernelTestHelpers.RandomFloats(rng, Rows * Heads * D);
        float[] Run()
        {
            float[] y = (float[])x.Clone();
            fixed (float* p = y)
            {
                Rope.Forward(p, Rows, SeqLen, Heads, table, 0);
                Rope.Backward(p, Rows, SeqLen / 2, Heads, table, 3);
            }

            return y;
        }

        float[] one = [];
        float[] two = [];
        KernelTestHelpers.WithThreads(1, () => one = Run());
        KernelTestHelpers.WithThreads(2, () => two = Run());
        Assert.Equal(one, two);
    }

    [Fact]
    public void Forward_FirstRow_ChunksReproduceTheWholeCall_BitForBit()
    {
        // Mixed precision rotates q and k per projection chunk (rows firstRow … of the pass); chunks may straddle the
        // end of a batch row and carry document starts.
        const int D = 16, Heads = 3, SeqLen = 37, Rows = 2 * SeqLen, Offset = 5, Chunk = 10;
        using var table = new RopeTable(D, 10000.0, Offset + SeqLen);
        var rng = new Random(9);
        float[] whole = Enumerable.Range(0, Rows * Heads * D).Select(_ => (float)((rng.NextDouble() * 2) - 1)).ToArray();
        float[] chunked = (float[])whole.Clone();
        int[] starts = Enumerable.Range(0, Rows).Select(r => r % SeqLen >= 20 ? 20 : 0).ToArray();
        fixed (float* w = whole, c = chunked)
        fixed (int* st = starts)
        {
            Rope.Forward(w, Rows, SeqLen, Heads, table, Offset, st);
            for (int r0 = 0; r0 < Rows; r0 += Chunk)
            {
                Rope.Forward(c + ((long)r0 * Heads * D), Math.Min(Chunk, Rows - r0), SeqLen, Heads, table, Offset, st, firstRow: r0);
            }
        }

        Assert.Equal(whole, chunked);
    }
}
