// --precision bf16 (mixed precision) against the strongest oracle there is: an fp32 pass on a model whose projection
// weights (and LM head) were rounded to bf16 beforehand computes, bit for bit, what the bf16 pass of sequence-chunked
// layers computes — loss and every gradient (the bf16 pass stores the layer inputs as bf16, so the fp32 reference
// stores them as bf16 too) — and a few training steps move the fp32 masters exactly as fp32 training whose gradients
// are taken at the rounded weights. The other policies also round q, k, v after RoPE (no fp32 pass can): they are
// within bf16 distance of that reference, and give one and the same loss. Then the tolerance against PyTorch fp64
// and the refusals.
using MiniSeq.IO;
using MiniSeq.Kernels;
using MiniSeq.Model;
using MiniSeq.Tensors;
using MiniSeq.Tests.Helpers;
using MiniSeq.Training;

namespace MiniSeq.Tests.Model;

public class MixedPrecisionTests(Xunit.Abstractions.ITestOutputHelper output)
{
    private static LlamaConfig Config => ModelPresets.Tiny with { TieWordEmbeddings = false };

    /// <summary>Policies whose bf16 pass rounds nothing but the weights and the layer inputs, which an fp32 pass can
    /// store as bf16 likewise, so it has a bit-for-bit reference: sequence-chunked layers.</summary>
    public static TheoryData<string> RecomputingPolicyNames => ["chunked16"];

    /// <summary>Checkpointing: one workspace rebuilt by every layer, whose q, k, v the bf16 pass keeps as bf16.</summary>
    public static TheoryData<string> CheckpointPolicyNames => ["checkpoint", "mst3+checkpoint"];

    /// <summary>Policies without recomputation: the bf16 pass stores every saved activation as bf16.</summary>
    public static TheoryData<string> SavingPolicyNames => ["vanilla", "mst"];

    private static MemoryPolicy PolicyFor(string name, long rows) => name switch
    {
        "vanilla" => MemoryPolicy.Vanilla,
        "mst" => new MemoryPolicy { MlpChunks = 3, LmHeadChunks = 4 },
        "checkpoint" => new MemoryPolicy { Checkpoint = true },
        "mst3+checkpoint" => new MemoryPolicy { MlpChunks = 3, LmHeadChunks = 3, Checkpoint = true },
        "chunked16" => MemoryPolicy.Chunked(Config, rows, chunk: 16),
        _ => throw new ArgumentException(name),
    };

    /// <summary>The policy an fp32 pass needs to store the layer inputs as the bf16 pass does.</summary>
    private static MemoryPolicy WithBf16Inputs(MemoryPolicy policy)
        => policy.Recomputes ? policy with { LayerInputDType = ActivationDType.BFloat16 } : policy;

    /// <summary>Rounds every tensor that has a bf16 compute copy to bf16 in place (what the bf16 pass's GEMMs read).</summary>
    private static unsafe void RoundComputeWeights(LlamaModel model)
    {
        foreach (ParameterInfo p in PassPlan.ComputeWeightSources(model.Layout))
        {
            TensorView w = model.Parameters[p.Slot];
            using var bits = new NativeBuffer((p.ElementCount + 1) / 2, MemoryCategory.Scratch, null, "test bf16 bits");
            BFloat16.FromFloat(w.Pointer, (ushort*)bits.Pointer, p.ElementCount);
            BFloat16.ToFloat((ushort*)bits.Pointer, w.Pointer, p.ElementCount);
        }
    }

    private static (double Loss, float[] Gradients) Gradients(LlamaModel model, TokenBatch batch, MemoryPolicy policy, Precision precision)
    {
        using var trainer = new Trainer(model, new TrainerOptions { Policy = policy, Precision = precision }, batch.BatchSize, batch.SeqLen);
        (double loss, _) = trainer.ComputeGradients(batch);
        return (loss, trainer.Gradients.Span.ToArray());
    }

    [Theory]
    [MemberData(nameof(RecomputingPolicyNames))]
    public void Bf16Pass_EqualsFp32PassOnRoundedWeights_BitForBit(string policyName)
    {
        MemoryPolicy policy = PolicyFor(policyName, 80);
        (double loss, float[] grad, double refLoss, float[] refGrad, ParameterLayout layout) = Bf16AndFp32OnRoundedWeights(policy, WithBf16Inputs(policy));
        Assert.Equal(refLoss, loss);
        foreach (ParameterInfo p in layout.Tensors)
        {
            var range = new Range((int)p.Slot.Offset, (int)(p.Slot.Offset + p.Slot.Length));
            Assert.True(grad.AsSpan(range).SequenceEqual(refGrad.AsSpan(range)), $"{p.Name} under {policyName}: the bf16 pass's gradient differs from fp32 on the rounded weights");
        }
    }

    /// <summary>Loss and gradients of a bf16 pass under <paramref name="policy"/> (checking it leaves the fp32 masters
    /// untouched), then of an fp32 pass under <paramref name="referencePolicy"/> on the same model with its compute
    /// weights rounded to bf16.</summary>
    private static (double Loss, float[] Gradients, double ReferenceLoss, float[] ReferenceGradients, ParameterLayout Layout) Bf16AndFp32OnRoundedWeights(MemoryPolicy policy, MemoryPolicy referencePolicy)
    {
        LlamaConfig config = Config;
        TokenBatch batch = MiniSequenceEquivalenceTests.RandomBatch(config, 2, 40, 3);
        using var model = new LlamaModel(config);
        model.InitializeRandom(11);
        float[] masters = model.Parameters.All.Span.ToArray();
        (double loss, float[] grad) = Gradients(model, batch, policy, Precision.BFloat16);
        Assert.True(model.Parameters.All.Span.SequenceEqual(masters), "the bf16 pass changed the fp32 master weights");

        RoundComputeWeights(model);
        Assert.False(model.Parameters.All.Span.SequenceEqual(masters), "rounding changed nothing: the test would prove nothing");
        (double refLoss, float[] refGrad) = Gradients(model, batch, referencePolicy, Precision.Float32);
        return (loss, grad, refLoss, refGrad, model.Layout);
    }

    [Theory]
    [MemberData(nameof(RecomputingPolicyNames))]
    public void Bf16Training_MastersMoveAsFp32TrainingOnRoundedWeights_BitForBit(string policyName)
    {
        LlamaConfig config = Config;
        const int Steps = 3;
        MemoryPolicy policy = PolicyFor(policyName, 80);
        var optimizer = new OptimizerOptions { LearningRate = 1e-2f, WeightDecay = 0.1f, GradClip = 0f, Schedule = ScheduleKind.Constant };
        TokenBatch Batch(int step) => MiniSequenceEquivalenceTests.RandomBatch(config, 2, 40, (ulong)step + 20);

        using var bf16Model = new LlamaModel(config);
        bf16Model.InitializeRandom(7);
        var bf16Losses = new double[Steps];
        using (var trainer = new Trainer(bf16Model, new TrainerOptions { Policy = policy, Precision = Precision.BFloat16, Optimizer = optimizer, TotalSteps = Steps }, 2, 40))
        {
            for (int s = 0; s < Steps; s++)
            {
                bf16Losses[s] = trainer.Step(Batch(s)).Loss;
            }
        }

        // Reference: fp32 gradients at the rounded weights, applied by the same optimizer to unrounded masters.
        using var model = new LlamaModel(config);
        model.InitializeRandom(7);
        using var reference = new Trainer(model, new TrainerOptions { Policy = WithBf16Inputs(policy), Optimizer = optimizer, TotalSteps = Steps }, 2, 40);
        for (int s = 0; s < Steps; s++)
        {
            float[] masters = model.Parameters.All.Span.ToArray();
            RoundComputeWeights(model);
            (double loss, _) = reference.ComputeGradients(Batch(s));
            masters.CopyTo(model.Parameters.All.Span);
            reference.Optimizer.Step(reference.Gradients, optimizer.LearningRateAt(s + 1, Steps));
            Assert.Equal(loss, bf16Losses[s]);
        }

        Assert.True(model.Parameters.All.Span.SequenceEqual(bf16Model.Parameters.All.Span), $"after {Steps} steps under {policyName} the bf16 run's fp32 masters differ from the reference");
    }

    /// <summary>
    /// Without recomputation every saved activation is stored as bf16 (q, k, v rounded after RoPE and read by
    /// attention as bf16; attention output, h_mid, gate/up after the layer): the plan holds them in bf16 slots and one
    /// fp32 workspace without q, k, v, and loss and gradients stay within bf16 distance of fp32 on the rounded weights
    /// (no bit-for-bit reference: an fp32 pass cannot round its attention inputs).
    /// </summary>
    [Theory]
    [MemberData(nameof(SavingPolicyNames))]
    public void Bf16Pass_WithoutRecompute_StoresSavedActivationsAsBf16_WithinBf16DistanceOfFp32(string policyName)
    {
        LlamaConfig config = Config;
        MemoryPolicy policy = PolicyFor(policyName, 80);
        var bf16Plan = new PassPlan(config, 2, 40, policy, precision: Precision.BFloat16);
        var fp32Plan = new PassPlan(config, 2, 40, policy);
        Assert.Equal(config.NumHiddenLayers, bf16Plan.SavedBf16.Length);
        Assert.Equal(config.NumHiddenLayers, bf16Plan.LayerInputStoreLayers);
        Assert.Empty(fp32Plan.SavedBf16);
        Assert.Equal(policyName == "vanilla", bf16Plan.SavedBf16[0].Gate is not null);
        Assert.True(bf16Plan.AttentionInputsBf16);
        Assert.All(Enumerable.Range(0, config.NumHiddenLayers), l =>
        {
            // flash attention reads each layer's saved bf16 q, k, v: the fp32 workspace has none
            Assert.Equal(bf16Plan.SavedBf16[l].Query, bf16Plan.Workspaces[l].Query);
            Assert.Equal(bf16Plan.SavedBf16[l].Key, bf16Plan.Workspaces[l].Key);
            Assert.Equal(bf16Plan.SavedBf16[l].Value, bf16Plan.Workspaces[l].Value);
        });
        Assert.EndsWith("+bf16", bf16Plan.Policy.Describe(), StringComparison.Ordinal);
        Assert.Equal(bf16Plan.Policy, MemoryPolicy.Parse(bf16Plan.Policy.Describe(), config, 80));
        // One fp32 workspace and one stream buffer stay: the saving grows with depth (none at this config's 2 layers).
        LlamaConfig deep = config with { NumHiddenLayers = 8 };
        var deepBf16 = new PassPlan(deep, 2, 40, policy, precision: Precision.BFloat16);
        long deepFp32 = new PassPlan(deep, 2, 40, policy).Activations.TotalBytes;
        Assert.InRange((double)(deepBf16.Activations.TotalBytes + deepBf16.LayerInputStoreBytes) / deepFp32, 0.5, 0.65);

        AssertWithinBf16DistanceOfRoundedWeights(policy, policy, policyName);
    }

    /// <summary>
    /// Checkpointing keeps the one workspace's q, k, v as bf16 (rounded after RoPE, read by flash attention directly):
    /// the plan's slots are bf16 and its scratch is smaller by half their fp32 size (less the projection chunk's fp32
    /// q, k, v); loss and gradients stay within bf16 distance of fp32 on the rounded weights.
    /// </summary>
    [Theory]
    [MemberData(nameof(CheckpointPolicyNames))]
    public void Bf16Pass_Checkpointed_KeepsAttentionInputsAsBf16_WithinBf16DistanceOfFp32(string policyName)
    {
        LlamaConfig config = Config;
        MemoryPolicy policy = PolicyFor(policyName, 80);
        var bf16Plan = new PassPlan(config, 2, 40, policy, precision: Precision.BFloat16);
        var fp32Plan = new PassPlan(config, 2, 40, WithBf16Inputs(policy));
        Assert.True(bf16Plan.AttentionInputsBf16);
        Assert.False(fp32Plan.AttentionInputsBf16);
        LayerWorkspaceSlots ws = Assert.Single(bf16Plan.Workspaces);
        Assert.All(new[] { ws.Query, ws.Key, ws.Value }, slot => Assert.Equal(ElementType.BF16, slot.Type));
        Assert.Equal(ElementType.F32, ws.AttnOut.Type);
        long qkvFp32 = 80L * (config.QueryDim + (2 * config.KeyValueDim)) * sizeof(float);
        long projectionChunk = (long)bf16Plan.ProjectionRows * (config.QueryDim + (2 * config.KeyValueDim)) * sizeof(float);
        Assert.True(bf16Plan.Scratch.TotalBytes <= fp32Plan.Scratch.TotalBytes - (qkvFp32 / 2) + projectionChunk, "bf16 q, k, v do not shrink the scratch");

        AssertWithinBf16DistanceOfRoundedWeights(policy, WithBf16Inputs(policy), policyName);
    }

    /// <summary>A bf16 pass that rounds q, k, v: loss within 1e-3 of (and not equal to) the fp32 pass on the rounded
    /// weights under <paramref name="referencePolicy"/>, every gradient tensor within <see cref="GradientTolerance"/>.</summary>
    private static void AssertWithinBf16DistanceOfRoundedWeights(MemoryPolicy policy, MemoryPolicy referencePolicy, string policyName)
    {
        (double loss, float[] grad, double refLoss, float[] refGrad, ParameterLayout layout) = Bf16AndFp32OnRoundedWeights(policy, referencePolicy);
        Assert.NotEqual(refLoss, loss); // the attention inputs were rounded
        Assert.True(Math.Abs(loss - refLoss) / refLoss < 1e-3, $"loss {loss} vs {refLoss}");
        foreach (ParameterInfo p in layout.Tensors)
        {
            var range = new Range((int)p.Slot.Offset, (int)(p.Slot.Offset + p.Slot.Length));
            double error = Compare.RelativeError(grad.AsSpan(range), refGrad.AsSpan(range));
            Assert.True(error < GradientTolerance, $"{p.Name} under {policyName}: relative error {error:E2}");
        }
    }

    /// <summary>
    /// Every bf16 forward rounds q, k, v after RoPE into bf16 slots per projection chunk, which attention reads — each
    /// layer's saved ones (vanilla, MsT) or the one rebuilt workspace's (checkpointing, evaluation) — so on the same
    /// weights and tokens they give the same loss, bit for bit (the layer inputs' rounding only reaches the backward).
    /// </summary>
    [Fact]
    public void Bf16Forward_SameLossUnderEveryPolicyAndInEvaluation_BitForBit()
    {
        LlamaConfig config = Config;
        TokenBatch batch = MiniSequenceEquivalenceTests.RandomBatch(config, 2, 40, 5);
        using var model = new LlamaModel(config);
        model.InitializeRandom(3);
        double vanilla = Gradients(model, batch, MemoryPolicy.Vanilla, Precision.BFloat16).Loss;
        foreach (string name in new[] { "mst", "checkpoint", "mst3+checkpoint" })
        {
            Assert.Equal(vanilla, Gradients(model, batch, PolicyFor(name, 80), Precision.BFloat16).Loss);
        }

        using var eval = new LlamaPass(model, new PassPlan(config, 2, 40, MemoryPolicy.Vanilla, training: false, precision: Precision.BFloat16));
        Assert.True(eval.Plan.AttentionInputsBf16);
        int valid = batch.Labels.ToArray().Count(label => label != -100);
        Assert.Equal(vanilla, eval.ForwardLoss(batch.InputIds, batch.Labels) / valid); // a sum, the trainer's a mean
    }

    /// <summary>
    /// Against PyTorch fp64 (the golden files): the loss moves by the weights' rounding (relative 2^-9 per weight), the
    /// gradients by that and by the bf16 saved activations. Stated tolerance: loss within <see cref="LossTolerance"/>
    /// relative, every gradient tensor g within <see cref="GradientTolerance"/> relative by norm (llm.c's 2e-2) plus
    /// <see cref="GradientAbsoluteTolerance"/>: ‖g − g_ref‖ ≤ 2e-2·‖g_ref‖ + 1e-5 (numpy's allclose, by norm). The
    /// absolute term is for gradients that nearly vanish: the k-projection bias's (Qwen2), because softmax ignores a
    /// shift of a row's scores and only RoPE's rotation leaves it a gradient (‖g‖ ≈ 1e-4, 800× below the v bias's),
    /// so the rounding of q, k and the attention output moves it by 3 % of itself — 2e-6, nothing in absolute terms.
    /// </summary>
    [Theory]
    [MemberData(nameof(GoldenCases))]
    public void Bf16Precision_GradientsWithinStatedToleranceOfPyTorch(string caseName)
    {
        using var golden = GoldenTests.GoldenCase.Load(caseName);
        (SafeTensorsReader expected, LlamaModel model, TokenBatch batch, _) = golden;
        MemoryPolicy[] policies = [MemoryPolicy.Vanilla, new MemoryPolicy { MlpChunks = 3, LmHeadChunks = 3 }, new MemoryPolicy { MlpChunks = 3, LmHeadChunks = 3, Checkpoint = true }];
        foreach (MemoryPolicy policy in policies)
        {
            using var trainer = new Trainer(model, new TrainerOptions { Policy = policy, Precision = Precision.BFloat16 }, batch.BatchSize, batch.SeqLen);
            (double loss, _) = trainer.ComputeGradients(batch);
            double expectedLoss = expected.ReadFloat32("loss")[0];
            double lossError = Math.Abs(loss - expectedLoss) / Math.Abs(expectedLoss);
            Assert.True(lossError <= LossTolerance, $"{caseName} {policy.Describe()}: loss relative error {lossError:E2}");
            double worst = GoldenTests.CheckGradients(trainer, model, expected, GradientTolerance, $"{caseName} {policy.Describe()}", GradientAbsoluteTolerance);
            output.WriteLine(FormattableString.Invariant($"{caseName} {policy.Describe()}: loss relative error {lossError:E2}, worst gradient relative error {worst:E2}"));
        }
    }

    /// <summary>Stated loss tolerance of --precision bf16 against fp64 (relative).</summary>
    public const double LossTolerance = 1e-2;

    /// <summary>Stated absolute gradient tolerance of --precision bf16 against fp64 (by norm, per tensor).</summary>
    public const double GradientAbsoluteTolerance = 1e-5;

    /// <summary>Stated gradient tolerance of --precision bf16 against fp64 (relative, by norm, per tensor).</summary>
    public const double GradientTolerance = 2e-2;

    public static TheoryData<string> GoldenCases => GoldenTests.Cases;

    [Fact]
    public void Bf16Precision_WithLora_RefusedInOneLine()
    {
        var ex = Assert.Throws<ArgumentException>(() => new PassPlan(Config, 1, 16, MemoryPolicy.Vanilla, lora: new MiniSeq.Model.Lora.LoraConfig { Rank = 4, Alpha = 8 }, precision: Precision.BFloat16));
        Assert.Contains("--lora-base-dtype bf16", ex.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', ex.Message);
    }

    [Fact]
    public void Bf16Precision_Evaluation_WithinBf16DistanceOfFp32OnRoundedWeights()
    {
        // A bf16 forward-only pass reads the rounded copies and rounds q, k, v; the fp32 masters stay as they are.
        LlamaConfig config = Config;
        TokenBatch batch = MiniSequenceEquivalenceTests.RandomBatch(config, 1, 24, 4);
        using var model = new LlamaModel(config);
        model.InitializeRandom(3);
        float[] masters = model.Parameters.All.Span.ToArray();
        using var bf16 = new LlamaPass(model, new PassPlan(config, 1, 24, MemoryPolicy.Vanilla, training: false, precision: Precision.BFloat16));
        double bf16Loss = bf16.ForwardLoss(batch.InputIds, batch.Labels);
        Assert.True(model.Parameters.All.Span.SequenceEqual(masters), "evaluation changed the fp32 master weights");
        RoundComputeWeights(model);
        using var fp32 = new LlamaPass(model, new PassPlan(config, 1, 24, MemoryPolicy.Vanilla, training: false));
        double fp32Loss = fp32.ForwardLoss(batch.InputIds, batch.Labels);
        Assert.True(Math.Abs(bf16Loss - fp32Loss) / fp32Loss < 1e-3, $"loss {bf16Loss} vs {fp32Loss}");
    }

    [Fact]
    public void Precision_ParsesCliNames()
    {
        Assert.Equal(Precision.BFloat16, Precisions.Parse("bf16"));
        Assert.Equal(Precision.Float32, Precisions.Parse("FP32"));
        Assert.Equal("bf16", Precision.BFloat16.Name());
        var ex = Assert.Throws<ArgumentException>(() => Precisions.Parse("fp16"));
        Assert.Equal("--precision must be fp32 or bf16 (got 'fp16').", ex.Message);
    }
}
