// Packed rows = documents run separately: a row holding several documents (document ids per token) gives the same
// loss sum and the same gradients as each document in a row of its own, under every memory policy, for GQA and MQA
// and with the sliding window; and RoPE positions restart at every document (which packed = separate cannot see: with
// the document mask, scores depend only on position differences inside a document).
using MiniSeq.IO;
using MiniSeq.Kernels;
using MiniSeq.Model;
using MiniSeq.Tests.Helpers;
using MiniSeq.Training;

namespace MiniSeq.Tests.Model;

public unsafe class PackedDocumentTests
{
    private const double Tolerance = 1e-5;

    private static readonly int[] s_lengths = [23, 1, 40, 9];

    public static TheoryData<string, int, int> Cases => new()
    {
        { "vanilla", 2, 0 },
        { "mst+checkpoint", 2, 0 },
        { "mst+checkpoint", 1, 0 },
        { "vanilla", 2, 7 },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void PackedRow_EqualsDocumentsRunSeparately(string policyName, int kvHeads, int slidingWindow)
    {
        LlamaConfig config = ModelPresets.Tiny with { NumKeyValueHeads = kvHeads };
        if (slidingWindow > 0)
        {
            config = config with { ModelType = LlamaConfig.Mistral, SlidingWindow = slidingWindow };
        }

        int total = s_lengths.Sum();
        TokenBatch packed = PackedBatch(config, total, seed: 3);
        (double packedLoss, float[] packedGrad) = Run(config, packed, policyName);

        double separateLoss = 0;
        var separateGrad = new float[packedGrad.Length];
        int first = 0;
        foreach (int n in s_lengths)
        {
            var alone = new TokenBatch(1, n, packed.InputIds.AsSpan(first, n).ToArray(), packed.Labels.AsSpan(first, n).ToArray());
            if (alone.CountValidLabels() > 0)
            {
                (double loss, float[] grad) = Run(config, alone, policyName);
                separateLoss += loss;
                for (int i = 0; i < grad.Length; i++)
                {
                    separateGrad[i] += grad[i];
                }
            }

            first += n;
        }

        Compare.Close(packedLoss, separateLoss, Tolerance, "loss sum");
        using var model = new LlamaModel(config);
        foreach (ParameterInfo p in model.Layout.Tensors)
        {
            var range = new Range((int)p.Slot.Offset, (int)(p.Slot.Offset + p.Slot.Length));
            Compare.Close(packedGrad.AsSpan(range), separateGrad.AsSpan(range), Tolerance, p.Name);
        }
    }

    [Fact]
    public void PackedRow_WithoutBoundaries_BitIdenticalToPlainRow()
    {
        LlamaConfig config = ModelPresets.Tiny;
        TokenBatch packed = PackedBatch(config, 50, seed: 4);
        var oneDocument = new TokenBatch(1, 50, packed.InputIds, packed.Labels, new int[50]);
        var plain = new TokenBatch(1, 50, packed.InputIds, packed.Labels);
        (double l1, float[] g1) = Run(config, oneDocument, "vanilla");
        (double l2, float[] g2) = Run(config, plain, "vanilla");
        Assert.Equal(l2, l1);
        Assert.Equal(g2, g1);
    }

    [Fact]
    public void Rope_DocumentStarts_RestartPositionsAtEveryDocument()
    {
        const int heads = 2, d = 8, total = 30;
        int[] ids = [.. Enumerable.Repeat(0, 10), .. Enumerable.Repeat(1, 20)];
        var starts = new int[total];
        DocumentLayout.Starts(ids, 1, total, starts);
        var rng = new Random(1);
        float[] packed = Enumerable.Range(0, total * heads * d).Select(_ => (float)rng.NextDouble()).ToArray();
        float[] second = packed.AsSpan(10 * heads * d).ToArray();
        using var table = new RopeTable(d, 10000, total);
        fixed (float* p = packed, s = second)
        fixed (int* st = starts)
        {
            Rope.Forward(p, total, total, heads, table, 0, st);
            Rope.Forward(s, 20, 20, heads, table, 0);
        }

        // The second document's tokens are rotated as positions 0..19, exactly as when it stands alone.
        Assert.Equal(second, packed.AsSpan(10 * heads * d).ToArray());
    }

    [Fact]
    public void TokenFile_DocumentIds_RoundTripAndMaskCrossDocumentLabels()
    {
        string path = Path.Combine(Path.GetTempPath(), $"miniseq-docs-{Guid.NewGuid():N}.json");
        try
        {
            File.WriteAllText(path, """{"input_ids": [[5, 6, 7, 8, 9]], "document_ids": [[0, 0, 0, 1, 1]]}""");
            TokenBatch batch = TokenBatch.Load(path);
            Assert.Equal([0, 0, 0, 1, 1], batch.DocumentIds!);
            Assert.True(DocumentLayout.HasBoundaries(batch.DocumentIds, batch.BatchSize, batch.SeqLen));
            Assert.Equal([6, 7, TokenBatch.IgnoreIndex, 9, TokenBatch.IgnoreIndex], batch.Labels);
            batch.Save(path);
            TokenBatch again = TokenBatch.Load(path);
            Assert.Equal(batch.DocumentIds, again.DocumentIds);
            Assert.Equal(batch.Labels, again.Labels);

            File.WriteAllText(path, """{"input_ids": [[5, 6, 7]], "document_ids": [[0, 0]]}""");
            var error = Assert.Throws<InvalidDataException>(() => TokenBatch.Load(path));
            Assert.Contains("document_ids are 1 × 2 but input_ids are 1 × 3", error.Message);
        }
        finally
        {
            File.Delete(path);
        }
    }

    private static TokenBatch PackedBatch(LlamaConfig config, int total, ulong seed)
    {
        var rng = new DeterministicRandom(seed);
        var ids = new int[total];
        var documents = new int[total];
        int first = 0, doc = 0;
        foreach (int n in total == s_lengths.Sum() ? s_lengths : [total])
        {
            documents.AsSpan(first, n).Fill(doc++);
            first += n;
        }

        for (int t = 0; t < total; t++)
        {
            ids[t] = rng.NextInt(config.VocabSize);
        }

        return TokenBatch.FromInputIds(1, total, ids, documents);
    }

    private static (double LossSum, float[] Gradients) Run(LlamaConfig config, TokenBatch batch, string policyName)
    {
        using var model = new LlamaModel(config);
        model.InitializeRandom(42);
        MemoryPolicy policy = MemoryPolicy.Parse(policyName, config, batch.TokenCount);
        using var trainer = new Trainer(model, new TrainerOptions { Policy = policy }, batch.BatchSize, batch.SeqLen);
        double lossSum = trainer.ComputeGradients(batch, normalizer: 1);
        return (lossSum, trainer.Gradients.Span.ToArray());
    }
}
