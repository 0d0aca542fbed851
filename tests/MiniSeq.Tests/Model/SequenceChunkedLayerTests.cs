// Sequence-chunked layers equal the plain pass: loss and every gradient (relative 1e-6, fp32) for a tail chunk, N smaller
// than the chunk, ignored label spans, batch > 1, accumulated micro-batches, GQA and MQA, Qwen2 biases and Qwen3 q/k
// norms, Mistral's sliding window and packed documents; evaluation too. Layer inputs offloaded to disk give bit for bit
// the in-memory result and leave no file behind; bf16 storage stays within a stated tolerance.
using MiniSeq.IO;
using MiniSeq.Model;
using MiniSeq.Tensors;
using MiniSeq.Tests.Helpers;

namespace MiniSeq.Tests.Model;

public class SequenceChunkedLayerTests
{
    private const double Tolerance = 1e-6;

    private static LlamaConfig Config(string family = LlamaConfig.Llama, int kvHeads = 2, int? window = null)
        => ModelPresets.Tiny with { ModelType = family, NumHiddenLayers = 3, NumKeyValueHeads = kvHeads, SlidingWindow = window };

    private static MemoryPolicy Chunked(LlamaConfig config, long rows, int chunk, ActivationDType dtype = ActivationDType.Float32, string? offload = null)
        => MemoryPolicy.Chunked(config, rows, chunk) with { LayerInputDType = dtype, OffloadDirectory = offload };

    private static (double Loss, float[] Gradients) Run(LlamaConfig config, TokenBatch batch, MemoryPolicy policy, int? microBatch = null, LossOptions? loss = null)
        => MiniSequenceEquivalenceTests.Run(config, batch, policy, microBatch, loss);

    private static void AssertClose(LlamaConfig config, (double Loss, float[] Gradients) actual, (double Loss, float[] Gradients) expected, double tolerance, string what)
    {
        Compare.Close(actual.Loss, expected.Loss, tolerance, $"loss, {what}");
        using var model = new LlamaModel(config);
        foreach (ParameterInfo p in model.Layout.Tensors)
        {
            var range = new Range((int)p.Slot.Offset, (int)(p.Slot.Offset + p.Slot.Length));
            Compare.Close(actual.Gradients.AsSpan(range), expected.Gradients.AsSpan(range), tolerance, $"{p.Name}, {what}");
        }
    }

    public static TheoryData<string, int, int, int, int, int?> Cases => new()
    {
        // family, kv heads, batch, seq len, chunk, sliding window
        { LlamaConfig.Llama, 2, 1, 100, 32, null },   // tail chunk
        { LlamaConfig.Llama, 2, 1, 20, 64, null },    // N < chunk
        { LlamaConfig.Llama, 2, 2, 50, 16, null },    // batch > 1
        { LlamaConfig.Llama, 1, 1, 77, 24, null },    // MQA (the attention backward splits its query blocks)
        { LlamaConfig.Llama, 4, 1, 40, 13, null },    // MHA, chunk off the attention row blocks
        { LlamaConfig.Qwen2, 2, 1, 60, 16, null },    // q/k/v biases
        { LlamaConfig.Qwen3, 2, 2, 45, 16, null },    // per-head q/k norms
        { LlamaConfig.Mistral, 2, 1, 70, 16, 7 },     // sliding window shorter than a chunk
        { LlamaConfig.Mistral, 2, 1, 70, 8, 20 },     // window spanning chunks
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void Chunked_EqualsPlainPass(string family, int kvHeads, int batchRows, int seqLen, int chunk, int? window)
    {
        LlamaConfig config = Config(family, kvHeads, window);
        TokenBatch batch = MiniSequenceEquivalenceTests.RandomBatch(config, batchRows, seqLen, seed: 7);
        var reference = Run(config, batch, MemoryPolicy.Vanilla);
        var chunked = Run(config, batch, Chunked(config, batch.TokenCount, chunk));
        AssertClose(config, chunked, reference, Tolerance, $"{family} chunk {chunk}");
    }

    [Fact]
    public void Chunked_IgnoredSpans_MicroBatches_AndRecomputedHead_EqualPlainPass()
    {
        LlamaConfig config = Config();
        // row 1 ignores everything: its chunks contribute nothing; row 0 ignores a span across a chunk boundary.
        TokenBatch batch = MiniSequenceEquivalenceTests.RandomBatch(config, 4, 40, seed: 9, ignore: (r, t) => r == 1 || (r == 0 && t is >= 10 and < 30));
        var reference = Run(config, batch, MemoryPolicy.Vanilla);
        AssertClose(config, Run(config, batch, Chunked(config, 80, 16), microBatch: 2), reference, Tolerance, "micro-batches of 2 rows");
        var recompute = new LossOptions { LmHeadRecompute = true };
        AssertClose(config, Run(config, batch, Chunked(config, 160, 16), loss: recompute), Run(config, batch, MemoryPolicy.Vanilla, loss: recompute), Tolerance, "recomputed LM head");
    }

    [Theory]
    [InlineData(2)]
    [InlineData(1)]
    public void Chunked_PackedDocuments_EqualPlainPass(int kvHeads)
    {
        LlamaConfig config = Config(kvHeads: kvHeads);
        var rng = new DeterministicRandom(5);
        int[] lengths = [23, 1, 40, 9, 17];
        int total = lengths.Sum();
        var ids = new int[total];
        var documents = new int[total];
        int first = 0;
        for (int d = 0; d < lengths.Length; d++)
        {
            documents.AsSpan(first, lengths[d]).Fill(d);
            first += lengths[d];
        }

        for (int t = 0; t < total; t++)
        {
            ids[t] = rng.NextInt(config.VocabSize);
        }

        TokenBatch batch = TokenBatch.FromInputIds(1, total, ids, documents);
        AssertClose(config, Run(config, batch, Chunked(config, total, 16)), Run(config, batch, MemoryPolicy.Vanilla), Tolerance, "packed documents");
    }

    [Fact]
    public void Chunked_Evaluation_EqualsPlainForward()
    {
        LlamaConfig config = Config();
        TokenBatch batch = MiniSequenceEquivalenceTests.RandomBatch(config, 2, 50, seed: 11);
        double Loss(MemoryPolicy policy)
        {
            using var model = new LlamaModel(config);
            model.InitializeRandom(42);
            using var pass = new LlamaPass(model, new PassPlan(config, batch.BatchSize, batch.SeqLen, policy, training: false));
            return pass.ForwardLoss(batch.InputIds, batch.Labels);
        }

        Compare.Close(Loss(Chunked(config, 100, 16)), Loss(MemoryPolicy.Vanilla), Tolerance, "evaluation loss");
    }

    [Fact]
    public void Offloaded_BitIdenticalToInMemory_AndLeavesNoFile()
    {
        LlamaConfig config = Config();
        TokenBatch batch = MiniSequenceEquivalenceTests.RandomBatch(config, 2, 50, seed: 13);
        string directory = Directory.CreateTempSubdirectory("miniseq-offload-").FullName;
        try
        {
            foreach (ActivationDType dtype in new[] { ActivationDType.Float32, ActivationDType.BFloat16 })
            {
                var inMemory = Run(config, batch, Chunked(config, 100, 16, dtype));
                var onDisk = Run(config, batch, Chunked(config, 100, 16, dtype, directory));
                Assert.Equal(inMemory.Loss, onDisk.Loss);
                Assert.Equal(inMemory.Gradients, onDisk.Gradients);
                Assert.Empty(Directory.EnumerateFileSystemEntries(directory));
            }
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    /// <summary>
    /// bf16 storage of the layer inputs rounds what backward recomputes from (forward stays fp32, so the loss is exact):
    /// every gradient tensor stays within 1 % (relative, by norm) of fp32 storage. The measured figure against the
    /// PyTorch fp64 reference is in docs/benchmarks/memory.md.
    /// </summary>
    [Fact]
    public void BFloat16Storage_ExactLoss_GradientsWithinOnePercent()
    {
        LlamaConfig config = Config();
        TokenBatch batch = MiniSequenceEquivalenceTests.RandomBatch(config, 1, 96, seed: 17);
        var fp32 = Run(config, batch, Chunked(config, 96, 32));
        var bf16 = Run(config, batch, Chunked(config, 96, 32, ActivationDType.BFloat16));
        Assert.Equal(fp32.Loss, bf16.Loss);
        AssertClose(config, bf16 with { Loss = fp32.Loss }, fp32, 1e-2, "bf16 layer inputs");
    }

    [Fact]
    public void Policy_ParsesAndDescribes()
    {
        LlamaConfig config = Config();
        MemoryPolicy p = MemoryPolicy.Parse("mst(mlp 2, lm 4)+chunked(512)+bf16", config, 4096);
        Assert.Equal(512, p.SequenceChunk);
        Assert.True(p.Recomputes);
        Assert.Equal(ActivationDType.BFloat16, p.LayerInputDType);
        Assert.Equal("mst(mlp 2, lm 4)+chunked(512)+bf16", p.Describe());
        Assert.Equal(p, MemoryPolicy.Parse(p.Describe(), config, 4096));
        MemoryPolicy fromCli = MemoryPolicy.FromOptions("off", "off", "off", config, 4096, offload: "disk:/tmp");
        Assert.Equal(MemoryPolicy.AutoSequenceChunk, fromCli.SequenceChunk);
        Assert.Equal("/tmp", fromCli.OffloadDirectory);
        Assert.Throws<ArgumentException>(() => MemoryPolicy.FromOptions("off", "off", "off", config, 4096, offload: "tape"));
        Assert.Throws<ArgumentException>(() => MemoryPolicy.FromOptions("off", "off", "off", config, 4096, activationDType: "fp8"));
    }
}
