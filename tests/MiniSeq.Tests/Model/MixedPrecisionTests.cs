// --precision bf16 (mixed precision) against the strongest oracle there is: an fp32 pass on a model whose projection
// weights (and LM head) were rounded to bf16 beforehand computes, bit for bit, what the bf16 pass computes — loss and
// every gradient, under every policy (the bf16 pass stores the checkpointed layer inputs as bf16, so the fp32
// reference stores them as bf16 too) — and a few training steps move the fp32 masters exactly as fp32 training whose
// gradients are taken at the rounded weights. Then the tolerance against PyTorch fp64 and the refusals.
using MiniSeq.IO;
using MiniSeq.Kernels;
using MiniSeq.Model;
using MiniSeq.Tensors;
using MiniSeq.Training;

namespace MiniSeq.Tests.Model;

public class MixedPrecisionTests(Xunit.Abstractions.ITestOutputHelper output)
{
    private static LlamaConfig Config => ModelPresets.Tiny with { TieWordEmbeddings = false };

    public static TheoryData<string> PolicyNames => ["vanilla", "mst", "checkpoint", "mst3+checkpoint", "chunked16"];

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
    [MemberData(nameof(PolicyNames))]
    public void Bf16Pass_EqualsFp32PassOnRoundedWeights_BitForBit(string policyName)
    {
        LlamaConfig config = Config;
        TokenBatch batch = MiniSequenceEquivalenceTests.RandomBatch(config, 2, 40, 3);
        MemoryPolicy policy = PolicyFor(policyName, 80);
        using var model = new LlamaModel(config);
        model.InitializeRandom(11);
        float[] masters = model.Parameters.All.Span.ToArray();
        (double loss, float[] grad) = Gradients(model, batch, policy, Precision.BFloat16);
        Assert.True(model.Parameters.All.Span.SequenceEqual(masters), "the bf16 pass changed the fp32 master weights");

        RoundComputeWeights(model);
        Assert.False(model.Parameters.All.Span.SequenceEqual(masters), "rounding changed nothing: the test would prove nothing");
        (double refLoss, float[] refGrad) = Gradients(model, batch, WithBf16Inputs(policy), Precision.Float32);
        Assert.Equal(refLoss, loss);
        foreach (ParameterInfo p in model.Layout.Tensors)
        {
            var range = new Range((int)p.Slot.Offset, (int)(p.Slot.Offset + p.Slot.Length));
            Assert.True(grad.AsSpan(range).SequenceEqual(refGrad.AsSpan(range)), $"{p.Name} under {policyName}: the bf16 pass's gradient differs from fp32 on the rounded weights");
        }
    }

    [Theory]
    [MemberData(nameof(PolicyNames))]
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
    /// Against PyTorch fp64 (the golden files): the loss moves by the weights' rounding (relative 2^-9 per weight), the
    /// gradients by that and by the bf16 layer inputs. Stated tolerance: loss within <see cref="LossTolerance"/>
    /// relative, every gradient tensor within <see cref="GradientTolerance"/> relative by norm (llm.c's 2e-2).
    /// </summary>
    [Theory]
    [MemberData(nameof(GoldenCases))]
    public void Bf16Precision_GradientsWithinStatedToleranceOfPyTorch(string caseName)
    {
        using var golden = GoldenTests.GoldenCase.Load(caseName);
        (SafeTensorsReader expected, LlamaModel model, TokenBatch batch, _) = golden;
        foreach (MemoryPolicy policy in new[] { MemoryPolicy.Vanilla, new MemoryPolicy { MlpChunks = 3, LmHeadChunks = 3, Checkpoint = true } })
        {
            using var trainer = new Trainer(model, new TrainerOptions { Policy = policy, Precision = Precision.BFloat16 }, batch.BatchSize, batch.SeqLen);
            (double loss, _) = trainer.ComputeGradients(batch);
            double expectedLoss = expected.ReadFloat32("loss")[0];
            double lossError = Math.Abs(loss - expectedLoss) / Math.Abs(expectedLoss);
            Assert.True(lossError <= LossTolerance, $"{caseName} {policy.Describe()}: loss relative error {lossError:E2}");
            double worst = GoldenTests.CheckGradients(trainer, model, expected, GradientTolerance, $"{caseName} {policy.Describe()}");
            output.WriteLine(FormattableString.Invariant($"{caseName} {policy.Describe()}: loss relative error {lossError:E2}, worst gradient relative error {worst:E2}"));
        }
    }

    /// <summary>Stated loss tolerance of --precision bf16 against fp64 (relative).</summary>
    public const double LossTolerance = 1e-2;

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
    public void Bf16Precision_Evaluation_UnchangedFp32()
    {
        // Evaluation always runs on the fp32 masters; a bf16 forward-only pass reads the rounded copies.
        LlamaConfig config = Config;
        TokenBatch batch = MiniSequenceEquivalenceTests.RandomBatch(config, 1, 24, 4);
        using var model = new LlamaModel(config);
        model.InitializeRandom(3);
        using var bf16 = new LlamaPass(model, new PassPlan(config, 1, 24, MemoryPolicy.Vanilla, training: false, precision: Precision.BFloat16));
        double bf16Loss = bf16.ForwardLoss(batch.InputIds, batch.Labels);
        RoundComputeWeights(model);
        using var fp32 = new LlamaPass(model, new PassPlan(config, 1, 24, MemoryPolicy.Vanilla, training: false));
        Assert.Equal(fp32.ForwardLoss(batch.InputIds, batch.Labels), bf16Loss);
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
