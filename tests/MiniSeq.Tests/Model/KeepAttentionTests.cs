// Checkpointing that keeps each layer's attention output and lse (policy "+attn") computes exactly what plain
// checkpointing computes — bit for bit: the recompute it skips would write the same bits again — under MsT, tied
// embeddings, several rows, accumulated micro-batches and Ulysses; it costs the planned (L − 1)·(N·H·D + B·H·T) floats
// of activations more, which the planner predicts; the policy text round-trips; bf16 mixed precision, whose
// recompute starts from bf16-rounded layer inputs, refuses it.
using MiniSeq.Distributed;
using MiniSeq.IO;
using MiniSeq.Model;
using MiniSeq.Tensors;
using MiniSeq.Tests.Distributed;
using MiniSeq.Tests.Helpers;
using MiniSeq.Training;

namespace MiniSeq.Tests.Model;

public class KeepAttentionTests
{
    private static void AssertBitwise((double Loss, float[] Gradients) expected, (double Loss, float[] Gradients) actual, string what)
    {
        Assert.True(BitConverter.DoubleToInt64Bits(expected.Loss) == BitConverter.DoubleToInt64Bits(actual.Loss), $"{what}: loss {expected.Loss:R} vs {actual.Loss:R}");
        Compare.Bitwise(expected.Gradients, actual.Gradients, what + " gradients");
    }

    public static TheoryData<bool, bool, int, int> Cases => new()
    {
        // mst, tied, rows, seqLen
        { false, false, 1, 70 },
        { true, false, 1, 70 },
        { false, true, 3, 17 },
        { true, true, 2, 33 },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void KeepAttention_EqualsCheckpoint_Bitwise(bool mst, bool tied, int rows, int seqLen)
    {
        LlamaConfig config = ModelPresets.Tiny with { TieWordEmbeddings = tied };
        TokenBatch batch = MiniSequenceEquivalenceTests.RandomBatch(config, rows, seqLen, 11);
        MemoryPolicy checkpoint = mst ? new MemoryPolicy { MlpChunks = 3, LmHeadChunks = 2, Checkpoint = true } : new MemoryPolicy { Checkpoint = true };
        MemoryPolicy keep = checkpoint with { KeepAttention = true };
        AssertBitwise(MiniSequenceEquivalenceTests.Run(config, batch, checkpoint), MiniSequenceEquivalenceTests.Run(config, batch, keep), keep.Describe());
        if (rows > 1)
        {
            AssertBitwise(MiniSequenceEquivalenceTests.Run(config, batch, checkpoint, microBatch: 1), MiniSequenceEquivalenceTests.Run(config, batch, keep, microBatch: 1), keep.Describe() + " micro-batches of 1 row");
        }
    }

    [Fact]
    public void KeepAttention_UnderUlysses_EqualsCheckpoint_Bitwise()
    {
        LlamaConfig config = ModelPresets.Tiny;
        const int Rows = 2, SeqLen = 48, Ranks = 2;
        TokenBatch global = MiniSequenceEquivalenceTests.RandomBatch(config, Rows, SeqLen, 12);
        (double, float[])[] Ranked(MemoryPolicy policy) => InProcessGroup.Run(Ranks, communicator =>
        {
            using var model = new LlamaModel(config);
            model.InitializeRandom(42);
            TrainerOptions options = SequenceParallel.Attach(new TrainerOptions { Policy = policy }, communicator);
            TokenBatch shard = SequenceShardSource.Take(global, communicator.Rank, Ranks);
            using var trainer = new Trainer(model, options, Rows, shard.SeqLen);
            (double loss, _) = trainer.ComputeGradients(shard);
            return (loss, trainer.Gradients.Span.ToArray());
        });

        var checkpoint = new MemoryPolicy { Checkpoint = true };
        (double, float[])[] expected = Ranked(checkpoint), actual = Ranked(checkpoint with { KeepAttention = true });
        for (int r = 0; r < Ranks; r++)
        {
            AssertBitwise(expected[r], actual[r], $"Ulysses rank {r}");
        }
    }

    [Fact]
    public void KeepAttention_WithBf16Precision_IsRefused()
    {
        LlamaConfig config = ModelPresets.Tiny;
        using var model = new LlamaModel(config);
        var options = new TrainerOptions { Policy = new MemoryPolicy { Checkpoint = true, KeepAttention = true }, Precision = Precision.BFloat16 };
        ArgumentException e = Assert.Throws<ArgumentException>(() => new Trainer(model, options, 1, 16));
        Assert.Contains("--checkpoint attn needs fp32 layer inputs", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Planner_AddsOneAttentionOutputAndLsePerLayer()
    {
        // That the prediction equals the allocation to the byte is MemoryPlannerTests' (both +attn policies are standard).
        LlamaConfig config = ModelPresets.Tiny;
        const int Rows = 2, SeqLen = 96;
        var keep = new MemoryPolicy { MlpChunks = 2, LmHeadChunks = 2, Checkpoint = true, KeepAttention = true };
        long Activations(MemoryPolicy policy) => MemoryPlanner.Predict(config, Rows, SeqLen, policy, new OptimizerOptions(), runtimeOverhead: 0).Of(MemoryCategory.Activations);

        // One attention output (N, H·D) and one lse (B, H, T) per layer beyond the first; and the shared workspace
        // (q, k, v, attention output, lse; m lives in the layer's output buffer), which plain checkpointing keeps in
        // scratch under the LM head's chunk (PassPlan.WorkspaceInScratch), is an activation here: the kept outputs must
        // survive the LM head.
        long n = Rows * SeqLen;
        long lse = (long)Rows * config.NumAttentionHeads * SeqLen;
        long extraFloats = (config.NumHiddenLayers - 1) * ((n * config.QueryDim) + lse);
        long workspaceFloats = (n * ((2L * config.QueryDim) + (2L * config.KeyValueDim))) + lse;
        Assert.Equal((extraFloats + workspaceFloats) * sizeof(float), Activations(keep) - Activations(keep with { KeepAttention = false }));
        Assert.False(new PassPlan(config, Rows, SeqLen, keep).WorkspaceInScratch);
        Assert.True(new PassPlan(config, Rows, SeqLen, keep with { KeepAttention = false }).WorkspaceInScratch);
    }

    [Theory]
    [InlineData("checkpoint+attn", "checkpoint+attn")]
    [InlineData("mst+checkpoint+attn", null)]
    [InlineData("mst(mlp 4, lm 2)+checkpoint+attn", "mst(mlp 4, lm 2)+checkpoint+attn")]
    public void PolicyText_RoundTrips(string text, string? described)
    {
        LlamaConfig config = ModelPresets.Tiny;
        MemoryPolicy policy = MemoryPolicy.Parse(text, config, 4096);
        Assert.True(policy.Checkpoint && policy.KeepAttention);
        if (described is not null)
        {
            Assert.Equal(described, policy.Describe());
        }

        Assert.Equal(policy, MemoryPolicy.Parse(policy.Describe(), config, 4096));
    }

    [Fact]
    public void CliOption_Attn_IsCheckpointKeepingAttention_AndRefusesSequenceChunks()
    {
        LlamaConfig config = ModelPresets.Tiny;
        MemoryPolicy policy = MemoryPolicy.FromOptions("auto", "auto", "attn", config, 4096);
        Assert.True(policy.Checkpoint && policy.KeepAttention);
        Assert.False(MemoryPolicy.FromOptions("off", "off", "on", config, 4096).KeepAttention);
        ArgumentException e = Assert.Throws<ArgumentException>(() => MemoryPolicy.FromOptions("off", "off", "attn", config, 4096, seqChunk: "auto"));
        Assert.Contains("--checkpoint attn", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Planner_OffersKeptAttention_InFp32Only()
    {
        LlamaConfig config = ModelPresets.Small;
        var optimizer = new OptimizerOptions();
        IReadOnlyList<MemoryPrediction> fp32 = MemoryPlanner.PredictAll(config, 1, 16384, optimizer, runtimeOverhead: 0);
        IReadOnlyList<MemoryPrediction> bf16 = MemoryPlanner.PredictAll(config, 1, 16384, optimizer, runtimeOverhead: 0, setup: new TrainingSetup { Precision = Precision.BFloat16 });
        Assert.Contains(fp32, p => p.PolicyName == "mst+checkpoint+attn");
        Assert.DoesNotContain(bf16, p => p.Policy.KeepAttention);

        // Faster than plain checkpointing, so listed before it; more memory than MsT + checkpointing, less than checkpointing.
        MemoryPrediction keep = fp32.Single(p => p.PolicyName == "mst+checkpoint+attn");
        Assert.True(fp32.ToList().IndexOf(keep) < fp32.ToList().FindIndex(p => p.PolicyName == "checkpoint"));
        Assert.InRange(keep.ProcessPeak, fp32.Single(p => p.PolicyName == "mst+checkpoint").ProcessPeak + 1, fp32.Single(p => p.PolicyName == "checkpoint").ProcessPeak - 1);
    }
}
