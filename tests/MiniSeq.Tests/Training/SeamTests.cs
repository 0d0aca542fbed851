// The seams the next features plug into: open optimizers and parameter groups, the training state and its
// checkpoint, batch sources and the training run, one policy parser, token positions, the gradient-reduction hook.
using MiniSeq.IO;
using MiniSeq.Kernels;
using MiniSeq.Model;
using MiniSeq.Tests.IO;
using MiniSeq.Tests.Model;
using MiniSeq.Training;
using MiniSeq.Training.Data;
using MiniSeq.Training.Optimizers;

namespace MiniSeq.Tests.Training;

public class SeamTests
{
    private static readonly LlamaConfig s_config = ModelPresets.Tiny;

    [Fact]
    public void OptimizerRegistry_NamesRulesAndState()
    {
        Assert.Equal(["adamw", "sgd", "lion", "lamb"], OptimizerRegistry.Names);
        Assert.Equal(["exp_avg", "exp_avg_sq"], OptimizerRegistry.Get("AdamW").StateNames(new OptimizerOptions()));
        Assert.Empty(OptimizerRegistry.Get("sgd").StateNames(new OptimizerOptions { Name = "sgd" }));
        Assert.Single(OptimizerRegistry.Get("sgd").StateNames(new OptimizerOptions { Name = "sgd", Momentum = 0.9f }));
        var e = Assert.Throws<ArgumentException>(() => OptimizerRegistry.Get("adagrad"));
        Assert.Contains("adamw, sgd, lion, lamb", e.Message, StringComparison.Ordinal);
        long p = new ParameterLayout(s_config).Plan.TotalBytes;
        Assert.Equal(2 * p, Optimizer.StateBytes(s_config, new OptimizerOptions()));
        Assert.Equal(0, Optimizer.StateBytes(s_config, new OptimizerOptions { Name = "sgd" }));
    }

    [Fact]
    public void ParameterGroups_FrozenTensorsUnchanged_NormsNotDecayed()
    {
        using var model = new LlamaModel(s_config);
        model.InitializeRandom(3);
        float[] before = model.Parameter("model.layers.0.self_attn.q_proj.weight").Span.ToArray();
        var groups = new ParameterGroups { Frozen = new HashSet<string> { "model.layers.0.self_attn.q_proj.weight" } };
        var options = new TrainerOptions { Optimizer = new OptimizerOptions { LearningRate = 1e-2f, Groups = groups } };
        using var trainer = new Trainer(model, options, 1, 16);
        trainer.Step(MiniSequenceEquivalenceTests.RandomBatch(s_config, 1, 16, 1));

        Assert.Equal(before, model.Parameter("model.layers.0.self_attn.q_proj.weight").Span.ToArray());
        Assert.NotEqual(before, model.Parameter("model.layers.1.self_attn.q_proj.weight").Span.ToArray());
        model.Layout.TryGet("model.norm.weight", out ParameterInfo norm);
        model.Layout.TryGet("model.embed_tokens.weight", out ParameterInfo embedding);
        Assert.False(ParameterGroups.Default.Decays(norm));
        Assert.True(ParameterGroups.Default.Decays(embedding));
    }

    private static TrainerOptions Options(int steps) => new()
    {
        Optimizer = new OptimizerOptions { LearningRate = 3e-3f, WeightDecay = 0.1f, GradClip = 1f, WarmupSteps = 2, Schedule = ScheduleKind.Cosine },
        Policy = new MemoryPolicy { MlpChunks = 2, LmHeadChunks = 3, Checkpoint = true },
        TotalSteps = steps,
    };

    private static RecallDemoSource Source() => new(new AssociativeRecall(s_config.VocabSize, 64, pairs: 4, meanGap: 2), batchSize: 2, seed: 9);

    [Fact]
    public void Checkpoint_SaveAfterThreeSteps_ResumeTwoMore_BitIdenticalToFiveInOneGo()
    {
        using var dir = new TempDirectory();
        float[] straight;
        using (var model = new LlamaModel(s_config))
        {
            model.InitializeRandom(1);
            using var run = new TrainingRun(model, Options(5), Source());
            run.Run(5);
            straight = model.Parameters.All.Span.ToArray();
        }

        using (var model = new LlamaModel(s_config))
        {
            model.InitializeRandom(1);
            using var run = new TrainingRun(model, Options(5), Source());
            run.Run(3);
            run.SaveCheckpoint(dir.File("ckpt"), overwrite: false);
        }

        Assert.True(File.Exists(dir.File("ckpt/optimizer.safetensors")));
        using (LlamaModel model = ModelDirectory.Load(dir.File("ckpt")))
        {
            using var run = new TrainingRun(model, Options(5), Source());
            TrainingState state = run.RestoreState(dir.File("ckpt"));
            Assert.Equal(3, state.Step);
            Assert.Equal(3, state.DataCursor);
            IReadOnlyList<StepResult> rest = run.Run(5);
            Assert.Equal([4, 5], rest.Select(r => r.Step));
            Assert.True(straight.AsSpan().SequenceEqual(model.Parameters.All.Span), "resumed run differs from the uninterrupted one");
        }
    }

    [Fact]
    public void TrainingState_OfAnotherOptimizer_Refused()
    {
        using var dir = new TempDirectory();
        using var model = new LlamaModel(s_config);
        model.InitializeRandom(1);
        using (var run = new TrainingRun(model, Options(1), Source()))
        {
            run.Run(1);
            run.SaveCheckpoint(dir.File("ckpt"), overwrite: false);
        }

        var sgd = Options(1) with { Optimizer = new OptimizerOptions { Name = "sgd", Momentum = 0.9f } };
        using var other = new TrainingRun(model, sgd, Source());
        var e = Assert.Throws<InvalidDataException>(() => other.RestoreState(dir.File("ckpt")));
        Assert.Contains("adamw", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void TrainingState_BesideBf16Weights_Refused()
    {
        // A checkpoint whose weights were replaced by a BF16 copy: the state belongs to the exact fp32 weights.
        using var dir = new TempDirectory();
        using var model = new LlamaModel(s_config);
        model.InitializeRandom(1);
        using var run = new TrainingRun(model, Options(1), Source());
        run.Run(1);
        run.SaveCheckpoint(dir.File("ckpt"), overwrite: false);
        model.Save(dir.File("bf16"), dtype: SafeTensorsDType.BF16);
        File.Copy(dir.File("bf16/model.safetensors"), dir.File("ckpt/model.safetensors"), overwrite: true);

        using LlamaModel loaded = ModelDirectory.Load(dir.File("ckpt"));
        using var resumed = new TrainingRun(loaded, Options(1), Source());
        var e = Assert.Throws<InvalidDataException>(() => resumed.RestoreState(dir.File("ckpt")));
        Assert.Contains("stored as BF16, not F32", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void TokenFileSource_SameBatchEveryStep_CursorCounts()
    {
        TokenBatch batch = MiniSequenceEquivalenceTests.RandomBatch(s_config, 2, 8, 4);
        var source = new TokenFileSource(batch);
        Assert.Same(batch, source.Next());
        Assert.Same(batch, source.Next());
        Assert.Equal(2, source.Cursor);
        Assert.Null(source.RngState);
    }

    [Fact]
    public void GradientReductionHook_SeesGradientsBeforeClipAndUpdate_CountHookNormalises()
    {
        // Doubling the count halves the loss and the gradient: what a second rank with no labels would do.
        TokenBatch batch = MiniSequenceEquivalenceTests.RandomBatch(s_config, 1, 16, 2);
        double Norm(TrainerOptions o)
        {
            using var model = new LlamaModel(s_config);
            model.InitializeRandom(2);
            using var trainer = new Trainer(model, o, 1, 16);
            return trainer.Step(batch).GradNorm;
        }

        int calls = 0;
        double plain = Norm(new TrainerOptions());
        double halved = Norm(new TrainerOptions { ReduceScoredCount = n => 2 * n, ReduceGradients = _ => calls++ });
        Assert.Equal(1, calls);
        Assert.Equal(plain / 2, halved, 1e-6 * plain);
    }

    [Theory]
    [InlineData("vanilla")]
    [InlineData("mst")]
    [InlineData("checkpoint")]
    [InlineData("mst+checkpoint")]
    [InlineData("mst(mlp 4, lm off)+checkpoint")]
    [InlineData("mst(mlp off, lm 7)")]
    public void MemoryPolicy_ParseDescribe_RoundTrip(string text)
    {
        MemoryPolicy p = MemoryPolicy.Parse(text, s_config, 8192);
        Assert.Equal(p, MemoryPolicy.Parse(p.Describe(), s_config, 8192));
        Assert.Equal(p, MemoryPolicy.FromOptions(p.MlpChunks?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "off",
            p.LmHeadChunks?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "off", p.Checkpoint ? "on" : "off", s_config, 8192));
        Assert.Throws<ArgumentException>(() => MemoryPolicy.Parse("fast", s_config, 8192));
    }

    [Fact]
    public void TokenPositions_OffsetAccepted_NegativeRefused()
    {
        Assert.Equal(100, new PassPlan(s_config, 1, 16, MemoryPolicy.Vanilla, positions: new TokenPositions { Offset = 100 }).Positions.Offset);
        Assert.Throws<ArgumentOutOfRangeException>(() => new PassPlan(s_config, 1, 16, MemoryPolicy.Vanilla, positions: new TokenPositions { Offset = -1 }));
    }
}
