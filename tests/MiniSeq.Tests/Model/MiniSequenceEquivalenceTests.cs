// Chunked equals unchunked: the mini-sequence MLP and LM head, checkpointing and gradient accumulation give the same
// loss and the same gradients as the plain pass (relative 1e-6 by norm, fp32), in the cases the official MsT code
// gets wrong: a tail chunk (N not a multiple of M), N < M, a chunk whose labels are all -100, batch > 1,
// accumulated micro-batches, tied and untied embeddings.
using MiniSeq.IO;
using MiniSeq.Model;
using MiniSeq.Tests.Helpers;
using MiniSeq.Training;

namespace MiniSeq.Tests.Model;

public class MiniSequenceEquivalenceTests
{
    private const double Tolerance = 1e-6;

    private static LlamaConfig Config(bool tied) => ModelPresets.Tiny with { TieWordEmbeddings = tied };

    internal static TokenBatch RandomBatch(LlamaConfig config, int rows, int seqLen, ulong seed, Func<int, int, bool>? ignore = null)
    {
        var rng = new DeterministicRandom(seed);
        var ids = new int[rows * seqLen];
        var labels = new int[rows * seqLen];
        for (int r = 0; r < rows; r++)
        {
            for (int t = 0; t < seqLen; t++)
            {
                ids[(r * seqLen) + t] = rng.NextInt(config.VocabSize);
                labels[(r * seqLen) + t] = ignore?.Invoke(r, t) == true ? -100 : rng.NextInt(config.VocabSize);
            }
        }

        return new TokenBatch(rows, seqLen, ids, labels);
    }

    internal static (double Loss, float[] Gradients) Run(LlamaConfig config, TokenBatch batch, MemoryPolicy policy, int? microBatch = null, LossOptions? loss = null)
    {
        using var model = new LlamaModel(config);
        model.InitializeRandom(42);
        using var trainer = new Trainer(model, new TrainerOptions { Policy = policy, MicroBatchRows = microBatch, Loss = loss ?? LossOptions.Default }, batch.BatchSize, batch.SeqLen);
        (double value, _) = trainer.ComputeGradients(batch);
        return (value, trainer.Gradients.Span.ToArray());
    }

    private static void AssertSame(LlamaConfig config, TokenBatch batch, MemoryPolicy policy, int? microBatch = null, LossOptions? loss = null, LossOptions? referenceLoss = null)
    {
        (double refLoss, float[] refGrad) = Run(config, batch, MemoryPolicy.Vanilla, loss: referenceLoss ?? loss);
        (double lossValue, float[] grad) = Run(config, batch, policy, microBatch, loss);
        Compare.Close(lossValue, refLoss, Tolerance, $"loss under {policy.Describe()}");
        using var model = new LlamaModel(config);
        foreach (ParameterInfo p in model.Layout.Tensors)
        {
            var range = new Range((int)p.Slot.Offset, (int)(p.Slot.Offset + p.Slot.Length));
            Compare.Close(grad.AsSpan(range), refGrad.AsSpan(range), Tolerance, $"{p.Name} under {policy.Describe()}");
        }
    }

    public static TheoryData<bool, bool> TiedAndCheckpoint => new() { { false, false }, { false, true }, { true, false }, { true, true } };

    [Theory]
    [MemberData(nameof(TiedAndCheckpoint))]
    public void TailChunk_NNotMultipleOfM_EqualsUnchunked(bool tied, bool checkpoint)
    {
        LlamaConfig config = Config(tied);
        AssertSame(config, RandomBatch(config, 1, 37, 1), new MemoryPolicy { MlpChunks = 4, LmHeadChunks = 5, Checkpoint = checkpoint });
    }

    [Theory]
    [MemberData(nameof(TiedAndCheckpoint))]
    public void FewerTokensThanChunks_EqualsUnchunked(bool tied, bool checkpoint)
    {
        LlamaConfig config = Config(tied);
        AssertSame(config, RandomBatch(config, 1, 5, 2), new MemoryPolicy { MlpChunks = 8, LmHeadChunks = 8, Checkpoint = checkpoint });
    }

    [Theory]
    [MemberData(nameof(TiedAndCheckpoint))]
    public void ChunkWithAllLabelsIgnored_EqualsUnchunked(bool tied, bool checkpoint)
    {
        LlamaConfig config = Config(tied);
        // 40 rows in 4 LM-head chunks of 10: rows 10..19 (chunk 1) and the masked prompt 0..3 are ignored.
        TokenBatch batch = RandomBatch(config, 1, 40, 3, (_, t) => t < 4 || (t >= 10 && t < 20));
        AssertSame(config, batch, new MemoryPolicy { MlpChunks = 4, LmHeadChunks = 4, Checkpoint = checkpoint });
    }

    [Theory]
    [MemberData(nameof(TiedAndCheckpoint))]
    public void BatchOfSeveralRows_EqualsUnchunked(bool tied, bool checkpoint)
    {
        LlamaConfig config = Config(tied);
        AssertSame(config, RandomBatch(config, 3, 17, 4), new MemoryPolicy { MlpChunks = 7, LmHeadChunks = 6, Checkpoint = checkpoint });
    }

    [Theory]
    [MemberData(nameof(TiedAndCheckpoint))]
    public void ThreeAccumulatedMicroBatches_EqualOneBigBatch(bool tied, bool checkpoint)
    {
        LlamaConfig config = Config(tied);
        // Rows with different numbers of scored labels: per-micro-batch means would weight them wrongly.
        TokenBatch batch = RandomBatch(config, 3, 19, 5, (r, t) => r == 1 && t < 12);
        AssertSame(config, batch, new MemoryPolicy { MlpChunks = 3, LmHeadChunks = 4, Checkpoint = checkpoint }, microBatch: 1);
        AssertSame(config, batch, MemoryPolicy.Vanilla, microBatch: 1);
    }

    [Fact]
    public void AutoPolicy_EqualsUnchunked()
    {
        LlamaConfig config = Config(false);
        TokenBatch batch = RandomBatch(config, 2, 150, 6);
        AssertSame(config, batch, MemoryPolicy.MiniSequence(config, 300, checkpoint: true));
        AssertSame(config, batch, MemoryPolicy.MiniSequence(config, 300, checkpoint: false));
    }

    [Theory]
    [InlineData(0.1f, 0f, 0f)]
    [InlineData(0f, 1e-3f, 0f)]
    [InlineData(0f, 0f, 5f)]
    [InlineData(0.05f, 1e-4f, 30f)]
    public void LossOptions_ChunkedEqualsUnchunked(float labelSmoothing, float zLoss, float softCap)
    {
        LlamaConfig config = Config(false);
        TokenBatch batch = RandomBatch(config, 2, 21, 8, (_, t) => t % 7 == 3);
        var loss = new LossOptions { CrossEntropy = new MiniSeq.Kernels.CrossEntropyOptions(labelSmoothing, zLoss, softCap) };
        AssertSame(config, batch, new MemoryPolicy { MlpChunks = 5, LmHeadChunks = 4, Checkpoint = true }, loss: loss);
        AssertSame(config, batch, new MemoryPolicy { LmHeadChunks = 3 }, loss: loss with { LmHeadRecompute = true }, referenceLoss: loss);
    }

    [Theory]
    [MemberData(nameof(TiedAndCheckpoint))]
    public void LmHeadRecompute_EqualsGradientInForward(bool tied, bool checkpoint)
    {
        LlamaConfig config = Config(tied);
        TokenBatch batch = RandomBatch(config, 2, 23, 10, (r, t) => r == 0 && t < 9);
        AssertSame(config, batch, new MemoryPolicy { MlpChunks = 2, LmHeadChunks = 5, Checkpoint = checkpoint }, loss: new LossOptions { LmHeadRecompute = true }, referenceLoss: LossOptions.Default);
    }

    [Fact]
    public void Evaluation_ChunkedEqualsUnchunked()
    {
        LlamaConfig config = Config(false);
        TokenBatch batch = RandomBatch(config, 2, 33, 7, (_, t) => t % 5 == 0);
        using var model = new LlamaModel(config);
        model.InitializeRandom(42);
        EvalResult plain = Evaluator.Evaluate(model, batch, MemoryPolicy.Vanilla, microBatchRows: 2);
        EvalResult chunked = Evaluator.Evaluate(model, batch, new MemoryPolicy { MlpChunks = 5, LmHeadChunks = 9 }, microBatchRows: 1);
        Compare.Close(chunked.Loss, plain.Loss, Tolerance, "eval loss");
        (double trainLoss, _) = Run(config, batch, MemoryPolicy.Vanilla);
        Compare.Close(trainLoss, plain.Loss, Tolerance, "training-pass loss vs eval loss");
    }

    [Fact]
    public void ChunkedMlp_SavesNoNxFActivations_AndChunkSizedScratch()
    {
        LlamaConfig config = ModelPresets.Small;
        int seqLen = 4096;
        var vanilla = new PassPlan(config, 1, seqLen, MemoryPolicy.Vanilla);
        var mst = new PassPlan(config, 1, seqLen, MemoryPolicy.MiniSequence(config, seqLen, checkpoint: false));
        long nf = (long)seqLen * config.IntermediateSize;
        Assert.Contains(vanilla.Activations.Slots, s => s.Length == nf);
        Assert.DoesNotContain(mst.Activations.Slots, s => s.Length >= nf);
        Assert.All(mst.Scratch.Slots.Where(s => s.Name.StartsWith("mlp_", StringComparison.Ordinal)),
            s => Assert.True(s.Length <= (long)MemoryPolicy.MinAutoChunkRows * config.IntermediateSize, $"{s.Name} holds {s.Length} floats"));
        // The LM head never holds N×V logits: one chunk of ⌈N/M⌉ rows.
        Assert.True(mst.Scratch.Slots.Single(s => s.Name == "head_logits").Length <= (long)MemoryPolicy.MinAutoChunkRows * config.VocabSize);
        // At long N the paper's M = ⌈V/C⌉ applies: logits chunk ≈ N×C.
        var longPlan = new PassPlan(config, 1, 65536, MemoryPolicy.MiniSequence(config, 65536, checkpoint: true));
        Assert.Equal(32, longPlan.Policy.LmHeadChunks);
        Assert.Equal(32, longPlan.Policy.MlpChunks);
        Assert.True(mst.Activations.TotalBytes < vanilla.Activations.TotalBytes - (config.NumHiddenLayers * 2 * nf * sizeof(float)) + 1);
    }
}
