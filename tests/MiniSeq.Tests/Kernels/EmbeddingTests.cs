// Embedding lookup and its deterministic scatter-add backward (repeated tokens, accumulation, thread count).
using MiniSeq.Kernels;

namespace MiniSeq.Tests.Kernels;

public unsafe class EmbeddingTests
{
    [Theory]
    [ClassData(typeof(IsaWidths))]
    public void ForwardBackward_AllDims_MatchesSequentialLoop(IsaWidth width)
    {
        using var _ = KernelSelector.Force(width);
        var rng = new Random(KernelTestHelpers.Seed);
        const int Vocab = 7, Count = 11;
        for (int dim = 0; dim <= KernelTestHelpers.MaxLength; dim++)
        {
            float[] table = KernelTestHelpers.RandomFloats(rng, Vocab * dim);
            int[] tokens = Enumerable.Range(0, Count).Select(_ => rng.Next(Vocab)).ToArray();
            tokens[3] = tokens[7] = tokens[9]; // repeats
            float[] dOut = KernelTestHelpers.RandomFloats(rng, Count * dim);
            float[] dTable = KernelTestHelpers.RandomFloats(rng, Vocab * dim);
            float[] expectedDTable = (float[])dTable.Clone();
            for (int r = 0; r < Count; r++)
            {
                for (int i = 0; i < dim; i++)
                {
                    expectedDTable[(tokens[r] * dim) + i] += dOut[(r * dim) + i];
                }
            }

            var output = new float[Count * dim];
            fixed (float* pt = table, po = output, pd = dOut, pdt = dTable)
            fixed (int* tk = tokens)
            {
                Embedding.Forward(tk, Count, pt, dim, po);
                Embedding.Backward(pd, tk, Count, dim, pdt);
            }

            for (int r = 0; r < Count; r++)
            {
                Assert.Equal(table.AsSpan(tokens[r] * dim, dim).ToArray(), output.AsSpan(r * dim, dim).ToArray());
            }

            Assert.Equal(expectedDTable, dTable);
        }
    }

    [Fact]
    public void Backward_RepeatedTokens_MatchesFiniteDifference()
    {
        // loss = Σ dOut·table[tokens] through a double forward; the map is linear, so FD agrees to rounding (1e-6).
        var rng = new Random(KernelTestHelpers.Seed + 2);
        const int Vocab = 5, Count = 6, Dim = 3;
        int[] tokens = [4, 1, 4, 0, 1, 4];
        float[] dOut = KernelTestHelpers.RandomFloats(rng, Count * Dim);
        var dTable = new float[Vocab * Dim];
        fixed (float* pd = dOut, pdt = dTable)
        fixed (int* tk = tokens)
        {
            Embedding.Backward(pd, tk, Count, Dim, pdt);
        }

        double[] table = KernelTestHelpers.ToDouble(KernelTestHelpers.RandomFloats(rng, Vocab * Dim));
        double Loss(double[] t)
        {
            double sum = 0;
            for (int r = 0; r < Count; r++)
            {
                for (int i = 0; i < Dim; i++)
                {
                    sum += dOut[(r * Dim) + i] * t[(tokens[r] * Dim) + i];
                }
            }

            return sum;
        }

        for (int i = 0; i < table.Length; i++)
        {
            KernelTestHelpers.AssertClose(KernelTestHelpers.FiniteDifference(Loss, table, i), dTable[i], 1e-6, 1e-6, $"dTable[{i}]");
        }
    }

    [Fact]
    public void Backward_ThreadCount_BitIdentical()
    {
        var rng = new Random(KernelTestHelpers.Seed + 1);
        const int Vocab = 50, Count = 512, Dim = 768;
        int[] tokens = Enumerable.Range(0, Count).Select(_ => rng.Next(Vocab)).ToArray();
        float[] dOut = KernelTestHelpers.RandomFloats(rng, Count * Dim);
        float[] Run()
        {
            var dTable = new float[Vocab * Dim];
            fixed (float* pd = dOut, pdt = dTable)
            fixed (int* tk = tokens)
            {
                Embedding.Backward(pd, tk, Count, Dim, pdt);
            }

            return dTable;
        }

        float[] one = [];
        float[] two = [];
        KernelTestHelpers.WithThreads(1, () => one = Run());
        KernelTestHelpers.WithThreads(2, () => two = Run());
        Assert.Equal(one, two);
    }
}
