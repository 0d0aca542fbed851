// The planner predicts, per category, exactly the bytes a training step allocates (it sizes from the same plans),
// and picks the fastest policy that fits.
using MiniSeq.Distributed;
using MiniSeq.IO;
using MiniSeq.Model;
using MiniSeq.Tensors;
using MiniSeq.Tests.Distributed;
using MiniSeq.Training;

namespace MiniSeq.Tests.Model;

public class MemoryPlannerTests
{
    public static TheoryData<string> Policies => [.. MemoryPlanner.StandardPolicies.Select(p => p.Name)];

    public static TheoryData<string, Precision> PoliciesAndPrecisions
    {
        get
        {
            var data = new TheoryData<string, Precision>();
            foreach ((string name, _) in MemoryPlanner.StandardPolicies)
            {
                data.Add(name, Precision.Float32);
                if (!name.EndsWith("+attn", StringComparison.Ordinal))
                {
                    data.Add(name, Precision.BFloat16); // bf16 refuses kept attention outputs (KeepAttentionTests)
                }
            }

            return data;
        }
    }

    [Theory]
    [MemberData(nameof(PoliciesAndPrecisions))]
    public void Predict_EqualsMeasuredPeakPerCategory(string name, Precision precision)
    {
        LlamaConfig config = ModelPresets.Tiny;
        const int Rows = 2, SeqLen = 96;
        MemoryPolicy policy = MemoryPlanner.StandardPolicies.Single(p => p.Name == name).Make(config, Rows * SeqLen);
        var optimizer = new OptimizerOptions();
        MemoryPrediction predicted = MemoryPlanner.Predict(config, Rows, SeqLen, policy, optimizer, runtimeOverhead: 0, setup: new TrainingSetup { Precision = precision });

        var ledger = new MemoryLedger();
        using var model = new LlamaModel(config, ledger);
        model.InitializeRandom(1);
        using var trainer = new Trainer(model, new TrainerOptions { Policy = policy, Optimizer = optimizer, Precision = precision }, Rows, SeqLen);
        trainer.Step(MiniSequenceEquivalenceTests.RandomBatch(config, Rows, SeqLen, 9));
        foreach (MemoryCategory c in MemoryLedger.Categories)
        {
            Assert.Equal(predicted.Of(c), ledger.Peak(c));
        }

        Assert.Equal(predicted.TrackedTotal, ledger.PeakTotal);
    }

    // Ulysses: the plan predicts one rank's memory (⌈N/P⌉ positions of every row, the head-layout buffers, the rank's
    // own RoPE positions), which every rank allocates, N divisible by P or padded.
    [Theory]
    [InlineData("vanilla", 96, false)]
    [InlineData("mst+checkpoint", 96, false)]
    [InlineData("checkpoint", 95, false)]
    [InlineData("mst+checkpoint", 95, true)]
    [InlineData("chunked", 96, false)]         // sequence-chunked layers: head-layout K, V, dK, dV of the whole rows
    [InlineData("chunked+bf16+offload", 95, false)]
    [InlineData("chunked", 95, true)]
    public void PredictUlysses_EqualsEveryRanksMeasuredPeakPerCategory(string name, int seqLen, bool bf16)
    {
        LlamaConfig config = ModelPresets.Tiny;
        const int Rows = 2, Ranks = 2;
        MemoryPolicy policy = MemoryPlanner.StandardPolicies.Single(p => p.Name == name).Make(config, Rows * seqLen);
        var optimizer = new OptimizerOptions();
        Precision precision = bf16 ? Precision.BFloat16 : Precision.Float32;
        MemoryPrediction predicted = MemoryPlanner.Predict(config, Rows, seqLen, policy, optimizer, runtimeOverhead: 0, setup: new TrainingSetup { Precision = precision, SequenceParallel = Ranks });
        TokenBatch global = MiniSequenceEquivalenceTests.RandomBatch(config, Rows, seqLen, 9);
        long[][] peaks = InProcessGroup.Run(Ranks, communicator =>
        {
            var ledger = new MemoryLedger();
            using var model = new LlamaModel(config, ledger);
            model.InitializeRandom(1);
            TrainerOptions options = SequenceParallel.Attach(new TrainerOptions { Policy = policy, Optimizer = optimizer, Precision = precision }, communicator);
            TokenBatch shard = SequenceShardSource.Take(global, communicator.Rank, Ranks);
            using var trainer = new Trainer(model, options, Rows, shard.SeqLen);
            trainer.Step(shard);
            return MemoryLedger.Categories.Select(ledger.Peak).ToArray();
        });
        foreach (long[] rank in peaks)
        {
            Assert.Equal(MemoryLedger.Categories.Select(predicted.Of), rank);
        }
    }

    [Fact]
    public void PredictAllUlysses_SequenceChunkedPoliciesHalveOneProcesssActivations()
    {
        var all = MemoryPlanner.PredictAll(ModelPresets.Small, 1, 131_072, new OptimizerOptions(), 0, new TrainingSetup { SequenceParallel = 2 });
        var one = MemoryPlanner.PredictAll(ModelPresets.Small, 1, 131_072, new OptimizerOptions(), 0);
        Assert.Contains(all, p => p.PolicyName == "mst+checkpoint");
        foreach (string name in new[] { "chunked", "chunked+offload", "chunked+bf16", "chunked+bf16+offload" })
        {
            MemoryPrediction rank = all.Single(p => p.PolicyName == name), whole = one.Single(p => p.PolicyName == name);
            Assert.Equal(whole.Activations / 2, rank.Activations);
            Assert.Equal(whole.Disk / 2, rank.Disk);

            // Scratch does not halve: one kv head per rank is an odd count, so the chunk backward splits its queries in
            // two for the second core and keeps the first half's dK, dV over the whole rows (2·N·D floats), which one
            // process (2 kv heads) does not need; dK, dV themselves halve. It stays below one process's.
            Assert.True(rank.Scratch <= whole.Scratch, $"{name}: scratch {rank.Scratch} B per rank vs {whole.Scratch} B in one process");
        }
    }

    [Fact]
    public void PredictBf16_AddsComputeWeightsAndHalvesCheckpointedInputs()
    {
        LlamaConfig config = ModelPresets.Small;
        const int SeqLen = 8192;
        MemoryPolicy policy = MemoryPolicy.MiniSequence(config, SeqLen, checkpoint: true);
        MemoryPrediction fp32 = MemoryPlanner.Predict(config, 1, SeqLen, policy, new OptimizerOptions(), 0);
        MemoryPrediction bf16 = MemoryPlanner.Predict(config, 1, SeqLen, policy, new OptimizerOptions(), 0, setup: new TrainingSetup { Precision = Precision.BFloat16 });
        var layout = new ParameterLayout(config);
        long copied = PassPlan.ComputeWeightSources(layout).Sum(p => p.ElementCount);
        Assert.Equal(fp32.Parameters + (2 * copied), bf16.Parameters);
        Assert.Equal(fp32.Gradients, bf16.Gradients);
        Assert.Equal(fp32.OptimizerState, bf16.OptimizerState);

        // L + 1 fp32 layer inputs become 1 fp32 stream buffer + L bf16 inputs.
        long layerInput = (long)SeqLen * config.HiddenSize * sizeof(float);
        int layers = config.NumHiddenLayers;
        Assert.Equal(fp32.Activations - ((layers + 1) * layerInput) + layerInput + (layers * layerInput / 2), bf16.Activations);
        Assert.EndsWith("+checkpoint+bf16", bf16.Policy.Describe(), StringComparison.Ordinal);
        Assert.Equal(bf16.Policy, MemoryPolicy.Parse(bf16.Policy.Describe(), config, SeqLen));
    }

    // With one workspace for every layer (plain checkpointing, evaluation) the workspace is scratch, and only the LM
    // head's chunk may share its memory, and Ulysses' head-layout q, k, v (alive only inside the attention forward) its
    // gate and up (written after attention): every other scratch slot is alive beside it in the forward layer or
    // the backward, so none of them may overlap it; the LM head's own slots overlap neither each other nor d_residual.
    [Theory]
    [InlineData("checkpoint", false, 1, true)]
    [InlineData("mst+checkpoint", false, 1, true)]
    [InlineData("mst+checkpoint", true, 1, true)]
    [InlineData("checkpoint", false, 2, true)]
    [InlineData("mst+checkpoint", true, 2, true)]
    [InlineData("mst+checkpoint", false, 1, false)]
    public void PassPlan_OnlyTheLmHeadSharesTheWorkspacesMemory(string name, bool bf16, int ranks, bool training)
    {
        LlamaConfig config = ModelPresets.Tiny with { ModelType = LlamaConfig.Qwen3 }; // q/k norms add backward slots
        const int Rows = 2, SeqLen = 96;
        MemoryPolicy policy = MemoryPlanner.StandardPolicies.Single(p => p.Name == name).Make(config, Rows * SeqLen);
        var plan = new PassPlan(config, Rows, SeqLen, policy, training, positions: ranks > 1 ? new MiniSeq.Kernels.TokenPositions { Offset = SeqLen } : null,
            sequenceParallel: ranks, precision: bf16 ? Precision.BFloat16 : Precision.Float32);
        Assert.True(plan.WorkspaceInScratch);
        LayerWorkspaceSlots ws = Assert.Single(plan.Workspaces);
        ArenaSlot[] gateUp = ws.Gate is { } g ? [g, ws.Up!.Value] : [];
        Assert.Null(ws.HMid); // m lives in the layer's output buffer
        ArenaSlot[] workspace = [ws.Query, ws.Key, ws.Value, ws.AttnOut, ws.Lse, .. gateUp];
        ArenaSlot[] head = [plan.HeadNorm, plan.HeadRstd, plan.HeadLogits, plan.HeadRowLoss];
        static bool Overlap(ArenaSlot a, ArenaSlot b) => a.ByteLength > 0 && b.ByteLength > 0 && a.ByteOffset < b.ByteOffset + b.ByteLength && b.ByteOffset < a.ByteOffset + a.ByteLength;

        ArenaSlot[] attentionForward = [plan.HeadQuery, plan.HeadKey, plan.HeadValue];
        ArenaSlot[] afterAttention = gateUp;
        Assert.All(workspace, w => Assert.Contains(w, plan.Scratch.Slots));
        foreach (ArenaSlot slot in plan.Scratch.Slots.Where(s => !workspace.Contains(s) && !head.Contains(s)))
        {
            foreach (ArenaSlot w in workspace.Where(w => !(attentionForward.Contains(slot) && afterAttention.Contains(w))))
            {
                Assert.False(Overlap(slot, w), $"{slot.Name} overlaps {w.Name}");
            }
        }

        Assert.Equal(ranks > 1 && gateUp.Length > 0, attentionForward.Any(a => gateUp.Any(g => Overlap(a, g))));

        ArenaSlot[] alongsideHead = [plan.DResidual, plan.LoraRows, plan.HeadExchange, .. head];
        foreach (ArenaSlot h in head)
        {
            Assert.All(alongsideHead.Where(s => s != h), s => Assert.False(Overlap(h, s), $"{h.Name} overlaps {s.Name}"));
        }

        // The saving is real: the head's chunk lies over the workspace.
        Assert.Contains(head, h => workspace.Any(w => Overlap(h, w)));
    }

    [Fact]
    public void Predict_ActivationsLinearInSeqLen_ForEveryPolicy()
    {
        LlamaConfig config = ModelPresets.Small;
        foreach ((string name, Func<LlamaConfig, long, MemoryPolicy> make) in MemoryPlanner.StandardPolicies)
        {
            long At(int n) => MemoryPlanner.Predict(config, 1, n, make(config, n), new OptimizerOptions(), 0).TrackedTotal;
            // From 64K on: below it the auto LM-head chunk count is still rising towards V/C (32 on this config), so a
            // chunk's logits are constant and the scratch peak moves between phases (a kink, not an N² term).
            long a = At(65536), b = At(131072), c = At(262144);
            // Equal increments for equal steps in N (up to chunk-size rounding): no N² term, which would make this 4.
            double second = (double)(c - b) / (b - a);
            Assert.True(second is >= 1.9 and <= 2.1, $"{name}: {second:F3}");
        }
    }

    [Fact]
    public void Choose_PicksFastestPolicyThatFits_OrNull()
    {
        LlamaConfig config = ModelPresets.Small;
        var all = MemoryPlanner.PredictAll(config, 1, 65536, new OptimizerOptions(), runtimeOverhead: 50L << 20);
        Assert.Equal("mst+checkpoint+attn", MemoryPlanner.Choose(all, 1L << 30)!.PolicyName); // 984 MiB predicted
        Assert.Equal("mst+checkpoint", MemoryPlanner.Choose(all, 900L << 20)!.PolicyName);    // 756 MiB
        Assert.Equal("vanilla", MemoryPlanner.Choose(all, 64L << 30)!.PolicyName);
        Assert.Null(MemoryPlanner.Choose(all, 100L << 20));
        Assert.True(MemoryPlanner.LargestFittingSeqLen(config, 1, "mst+checkpoint", new OptimizerOptions(), 50L << 20, 1L << 30) >= 60_000);

        // Beyond MsT: with sequence-chunked layers and offloaded inputs only the stream, K, V, dK, dV grow with N.
        Assert.Equal("chunked+offload", MemoryPlanner.Choose(MemoryPlanner.PredictAll(config, 1, 32768, new OptimizerOptions(), 50L << 20), 256L << 20)!.PolicyName);
        Assert.True(MemoryPlanner.LargestFittingSeqLen(config, 1, "chunked+offload", new OptimizerOptions(), 50L << 20, 1L << 30) >= 400_000);
    }
}
