// Cross-entropy: loss and in-place gradient against the double reference for every vocab 1..257 at every SIMD width,
// ignored rows, an all-ignored block, label smoothing, z-loss and soft-cap (each finite-difference checked),
// gradScale = 0 leaving logits untouched, label validation and thread-count independence.
using MiniSeq.Kernels;
using MiniSeq.Kernels.Reference;

namespace MiniSeq.Tests.Kernels;

public unsafe class CrossEntropyTests
{
    private static (double Sum, float[] RowLoss, float[] Gradient) Run(float[] logits, int[] labels, int vocab, CrossEntropyOptions options, float gradScale)
    {
        int rows = labels.Length;
        float[] gradient = (float[])logits.Clone();
        var rowLoss = new float[rows];
        double sum;
        fixed (float* pl = gradient, pr = rowLoss)
        fixed (int* py = labels)
        {
            sum = CrossEntropy.ForwardBackward(pl, py, rows, vocab, options, gradScale, pr);
        }

        return (sum, rowLoss, gradient);
    }

    private static void AssertMatchesReference(float[] logits, int[] labels, int vocab, CrossEntropyOptions options, float gradScale, string context)
    {
        (double sum, float[] rowLoss, float[] gradient) = Run(logits, labels, vocab, options, gradScale);
        double expectedSum = 0;
        for (int r = 0; r < labels.Length; r++)
        {
            double[] row = KernelTestHelpers.ToDouble(logits.AsSpan(r * vocab, vocab).ToArray());
            double loss = ReferenceKernels.CrossEntropyRow(row, labels[r], options.LabelSmoothing, options.ZLossWeight, options.SoftCap, out double[] grad);
            KernelTestHelpers.AssertClose(loss, rowLoss[r], 2e-6, 2e-6, $"{context} loss row {r}");
            for (int j = 0; j < vocab; j++)
            {
                KernelTestHelpers.AssertClose(gradScale * grad[j], gradient[(r * vocab) + j], 1e-7 * Math.Abs(gradScale), 1e-5, $"{context} grad row {r} j {j}");
            }

            expectedSum += rowLoss[r];
        }

        Assert.Equal(expectedSum, sum);
    }

    [Theory]
    [ClassData(typeof(IsaWidths))]
    public void ForwardBackward_AllVocabSizes_MatchesReference(IsaWidth width)
    {
        using var _ = KernelSelector.Force(width);
        var rng = new Random(KernelTestHelpers.Seed);
        for (int vocab = 1; vocab <= KernelTestHelpers.MaxLength; vocab++)
        {
            int[] labels = [rng.Next(vocab), CrossEntropy.IgnoreIndex, vocab - 1, 0];
            float[] logits = KernelTestHelpers.RandomFloats(rng, labels.Length * vocab, 8f);
            AssertMatchesReference(logits, labels, vocab, default, 0.25f, $"V={vocab}");
        }
    }

    [Theory]
    [ClassData(typeof(IsaWidths))]
    public void ForwardBackward_AllOptions_MatchesReference(IsaWidth width)
    {
        using var _ = KernelSelector.Force(width);
        var rng = new Random(KernelTestHelpers.Seed + 1);
        var options = new CrossEntropyOptions(LabelSmoothing: 0.1f, ZLossWeight: 1e-3f, SoftCap: 15f);
        foreach (int vocab in new[] { 1, 2, 15, 16, 17, 31, 64, 100, 257 })
        {
            int[] labels = [rng.Next(vocab), CrossEntropy.IgnoreIndex, rng.Next(vocab)];
            float[] logits = KernelTestHelpers.RandomFloats(rng, labels.Length * vocab, 40f);
            AssertMatchesReference(logits, labels, vocab, options, 1f / 3, $"V={vocab}");
        }
    }

    [Theory]
    [InlineData(0f, 0f, 0f)]
    [InlineData(0.1f, 0f, 0f)]
    [InlineData(0f, 1e-2f, 0f)]
    [InlineData(0f, 0f, 5f)]
    [InlineData(0.2f, 1e-2f, 5f)]
    public void Gradient_Options_MatchesFiniteDifference(float smoothing, float zLoss, float softCap)
    {
        // Central differences of the double reference loss; tolerance 1e-4 relative + 1e-6 absolute.
        var rng = new Random(KernelTestHelpers.Seed + 2);
        const int Vocab = 23;
        float[] logits = KernelTestHelpers.RandomFloats(rng, Vocab, 6f);
        int label = 5;
        var options = new CrossEntropyOptions(smoothing, zLoss, softCap);
        (_, _, float[] gradient) = Run(logits, [label], Vocab, options, 1f);
        double[] z = KernelTestHelpers.ToDouble(logits);
        for (int j = 0; j < Vocab; j++)
        {
            double fd = KernelTestHelpers.FiniteDifference(v => ReferenceKernels.CrossEntropyRow(v, label, smoothing, zLoss, softCap, out _), z, j);
            KernelTestHelpers.AssertClose(fd, gradient[j], 1e-6, 1e-4, $"dlogit[{j}]");
        }
    }

    [Fact]
    public void ForwardBackward_AllRowsIgnored_ZeroLossAndGradient()
    {
        var rng = new Random(KernelTestHelpers.Seed + 3);
        const int Vocab = 40, Rows = 6;
        float[] logits = KernelTestHelpers.RandomFloats(rng, Rows * Vocab);
        int[] labels = Enumerable.Repeat(CrossEntropy.IgnoreIndex, Rows).ToArray();
        (double sum, float[] rowLoss, float[] gradient) = Run(logits, labels, Vocab, new CrossEntropyOptions(0.1f, 1e-4f, 30f), 1f);
        Assert.Equal(0.0, sum);
        Assert.All(rowLoss, l => Assert.Equal(0f, l));
        Assert.All(gradient, g => Assert.Equal(0f, g));
    }

    [Fact]
    public void ForwardBackward_GradScaleZero_LeavesLogitsAndMatchesLoss()
    {
        var rng = new Random(KernelTestHelpers.Seed + 4);
        const int Vocab = 77;
        int[] labels = [3, CrossEntropy.IgnoreIndex, 76];
        float[] logits = KernelTestHelpers.RandomFloats(rng, labels.Length * Vocab, 10f);
        var options = new CrossEntropyOptions(0.05f, 1e-3f, 8f);
        (double sum0, float[] loss0, float[] untouched) = Run(logits, labels, Vocab, options, 0f);
        (double sum1, float[] loss1, _) = Run(logits, labels, Vocab, options, 1f);
        Assert.Equal(logits, untouched);
        Assert.Equal(loss1, loss0);
        Assert.Equal(sum1, sum0);
    }

    [Fact]
    public void ForwardBackward_LabelOutOfRange_Throws()
    {
        var logits = new float[2 * 5];
        Assert.Throws<ArgumentOutOfRangeException>(() => Run(logits, [1, 5], 5, default, 1f));
        Assert.Throws<ArgumentOutOfRangeException>(() => Run(logits, [-1, 0], 5, default, 1f));
    }

    [Fact]
    public void ForwardBackward_ExtremeLogits_Finite()
    {
        float[] logits = [1e4f, -1e4f, 0f, 88f, -88f, 3e38f];
        (double sum, float[] rowLoss, float[] gradient) = Run(logits, [1], logits.Length, default, 1f);
        Assert.True(double.IsFinite(sum) && float.IsFinite(rowLoss[0]));
        Assert.All(gradient, g => Assert.True(float.IsFinite(g)));
        KernelTestHelpers.AssertClose(3e38 + 1e4, rowLoss[0], 0, 1e-6, "loss");
    }

    [Fact]
    public void ForwardBackward_ThreadCount_BitIdentical()
    {
        var rng = new Random(KernelTestHelpers.Seed + 5);
        const int Vocab = 5000, Rows = 40;
        float[] logits = KernelTestHelpers.RandomFloats(rng, Rows * Vocab, 10f);
        int[] labels = Enumerable.Range(0, Rows).Select(r => r % 7 == 0 ? CrossEntropy.IgnoreIndex : rng.Next(Vocab)).ToArray();
        var options = new CrossEntropyOptions(0.1f, 1e-4f, 0f);
        (double Sum, float[] RowLoss, float[] Gradient) one = default, two = default;
        KernelTestHelpers.WithThreads(1, () => one = Run(logits, labels, Vocab, options, 1f / Rows));
        KernelTestHelpers.WithThreads(2, () => two = Run(logits, labels, Vocab, options, 1f / Rows));
        Assert.Equal(one.Sum, two.Sum);
        Assert.Equal(one.RowLoss, two.RowLoss);
        Assert.Equal(one.Gradient, two.Gradient);
    }
}
