// The optimizer rules as the trainer, planner, checkpoints and CLI options see them: state names and bytes, option
// checks (PyTorch's combinations), Lion's β2 default, --no-decay parameter groups, the run identity, and a resume of
// every rule that continues bit for bit. The update formulas themselves are OptimizerKernelsTests and
// OptimizerReferenceTests.
using MiniSeq.IO;
using MiniSeq.Model;
using MiniSeq.Tensors;
using MiniSeq.Tests.IO;
using MiniSeq.Tests.Model;
using MiniSeq.Training;
using MiniSeq.Training.Data;

namespace MiniSeq.Tests.Training;

public class OptimizerRulesTests
{
    private static readonly LlamaConfig s_config = ModelPresets.Tiny;

    [Fact]
    public void StateNamesAndBytes_PerRule()
    {
        long p = new ParameterLayout(s_config).Plan.TotalBytes;
        (OptimizerOptions Options, string[] State)[] cases =
        [
            (new OptimizerOptions(), ["exp_avg", "exp_avg_sq"]),
            (new OptimizerOptions { Name = "sgd" }, []),
            (new OptimizerOptions { Name = "sgd", Momentum = 0.9f, Nesterov = true }, ["momentum_buffer"]),
            (new OptimizerOptions { Name = "lion" }, ["exp_avg"]),
            (new OptimizerOptions { Name = "lamb" }, ["exp_avg", "exp_avg_sq"]),
        ];
        foreach ((OptimizerOptions options, string[] state) in cases)
        {
            Assert.Equal(state, options.Rule.StateNames(options));
            Assert.Equal(state.Length * p, Optimizer.StateBytes(s_config, options));
            MemoryPrediction prediction = MemoryPlanner.Predict(s_config, 1, 64, MemoryPolicy.Vanilla, options, 0);
            Assert.Equal(state.Length * p, prediction.Of(MemoryCategory.OptimizerState));
        }
    }

    [Fact]
    public void Beta2_NotSet_IsTheRulesDefault()
    {
        Assert.Equal(0.999f, new OptimizerOptions().Beta2);
        Assert.Equal(0.999f, new OptimizerOptions { Name = "lamb" }.Beta2);
        Assert.Equal(0.99f, new OptimizerOptions { Name = "lion" }.Beta2);
        Assert.Equal(0.95f, new OptimizerOptions { Name = "lion", Beta2 = 0.95f }.Beta2);
        Assert.Equal(0.99f, (new OptimizerOptions() with { Name = "Lion" }).Beta2);
    }

    public static TheoryData<OptimizerOptions, string> Refused => new()
    {
        { new OptimizerOptions { Name = "sgd", Nesterov = true }, "--nesterov needs --momentum > 0" },
        { new OptimizerOptions { Name = "sgd", Momentum = 0.9f, Dampening = 0.1f, Nesterov = true }, "no --dampening" },
        { new OptimizerOptions { Name = "sgd", Dampening = 0.5f }, "--dampening damps the momentum buffer" },
        { new OptimizerOptions { Name = "sgd", Momentum = 0.9f, Dampening = 1.5f }, "--dampening must be in [0, 1]" },
        { new OptimizerOptions { Name = "lion", Momentum = 0.9f }, "--momentum applies to sgd; Lion's" },
        { new OptimizerOptions { Name = "lamb", Nesterov = true }, "--nesterov applies to sgd; LAMB's" },
        { new OptimizerOptions { Name = "adamw", Dampening = 0.1f }, "--dampening applies to sgd; AdamW's" },
        { new OptimizerOptions { Name = "lion", Beta2 = 1f }, "--beta2 must be in [0, 1)" },
    };

    [Theory]
    [MemberData(nameof(Refused))]
    public void Validate_BadCombination_RefusedNamingTheOption(OptimizerOptions options, string message)
    {
        var e = Assert.Throws<ArgumentException>(options.Validate);
        Assert.Contains(message, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Validate_TorchCombinations_Accepted()
    {
        new OptimizerOptions { Name = "sgd", Momentum = 0.9f, Nesterov = true }.Validate();
        new OptimizerOptions { Name = "sgd", Momentum = 0.9f, Dampening = 0.9f }.Validate();
        new OptimizerOptions { Name = "lion", WeightDecay = 1f }.Validate();
        new OptimizerOptions { Name = "lamb", WeightDecay = 0.01f, Epsilon = 1e-6f }.Validate();
    }

    [Theory]
    [InlineData("norms,biases", "norms,biases")]
    [InlineData("biases, norms", "norms,biases")]
    [InlineData("norms,embeddings,biases", "norms,embeddings,biases")]
    [InlineData("LM_HEAD,embeddings", "embeddings,lm_head")]
    [InlineData("none", "none")]
    public void ParseNoDecay_Describe_CanonicalOrder(string list, string described)
    {
        var groups = new ParameterGroups { NoDecay = ParameterGroups.ParseNoDecay(list) };
        Assert.Equal(described, groups.DescribeNoDecay());
        Assert.Equal(described, new ParameterGroups { NoDecay = ParameterGroups.ParseNoDecay(described) }.DescribeNoDecay());
    }

    [Theory]
    [InlineData("norm")]
    [InlineData("none,norms")]
    [InlineData("")]
    [InlineData("projections")]
    public void ParseNoDecay_Unknown_Refused(string list)
    {
        var e = Assert.Throws<ArgumentException>(() => ParameterGroups.ParseNoDecay(list));
        Assert.Contains("--no-decay", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void NoDecay_DecidesPerKind_DefaultIsHuggingFaces()
    {
        var layout = new ParameterLayout(s_config with { TieWordEmbeddings = false });
        ParameterInfo Kind(ParameterKind kind) => layout.Tensors.First(t => t.Kind == kind);
        Assert.Equal("norms,biases", ParameterGroups.Default.DescribeNoDecay());
        Assert.False(ParameterGroups.Default.Decays(Kind(ParameterKind.Norm)));
        Assert.True(ParameterGroups.Default.Decays(Kind(ParameterKind.Embedding)));
        Assert.True(ParameterGroups.Default.Decays(Kind(ParameterKind.LmHead)));

        var groups = new ParameterGroups { NoDecay = ParameterGroups.ParseNoDecay("norms,embeddings,lm_head") };
        Assert.False(groups.Decays(Kind(ParameterKind.Embedding)));
        Assert.False(groups.Decays(Kind(ParameterKind.LmHead)));
        Assert.True(groups.Decays(Kind(ParameterKind.Projection)));
        var none = new ParameterGroups { NoDecay = ParameterGroups.ParseNoDecay("none") };
        Assert.True(none.Decays(Kind(ParameterKind.Norm)));
    }

    [Fact]
    public void Identity_RecordsEveryNewOption()
    {
        var source = new TokenFileSource(MiniSequenceEquivalenceTests.RandomBatch(s_config, 1, 8, 1));
        SortedDictionary<string, string> Identity(OptimizerOptions o) => Checkpoints.Identity(s_config, "d", source, o, new LossOptions(), 1, 1);
        var sgd = new OptimizerOptions { Name = "sgd", Momentum = 0.9f };
        Assert.Equal("norms,biases", Identity(sgd)["optimizer.no_decay"]);
        Assert.Equal("false", Identity(sgd)["optimizer.nesterov"]);
        Assert.Equal("0", Identity(sgd)["optimizer.dampening"]);
        var saved = new TrainingState { Run = Identity(sgd) };
        Assert.Contains("optimizer.nesterov is false in the checkpoint but true", saved.DifferenceFrom(Identity(sgd with { Nesterov = true })), StringComparison.Ordinal);
        Assert.Contains("optimizer.dampening", saved.DifferenceFrom(Identity(sgd with { Dampening = 0.5f })), StringComparison.Ordinal);
        Assert.Contains("optimizer.no_decay is norms,biases in the checkpoint but none",
            saved.DifferenceFrom(Identity(sgd with { Groups = new ParameterGroups { NoDecay = ParameterGroups.ParseNoDecay("none") } })), StringComparison.Ordinal);
        Assert.Equal("0.99", Identity(new OptimizerOptions { Name = "lion" })["optimizer.beta2"]);
    }

    public static TheoryData<string> ResumeCases => new() { "adamw", "sgd", "sgd-nesterov", "sgd-dampening", "lion", "lamb" };

    private static OptimizerOptions ResumeOptimizer(string name) => name switch
    {
        "adamw" => new OptimizerOptions { LearningRate = 3e-3f, WeightDecay = 0.1f },
        "sgd" => new OptimizerOptions { Name = "sgd", LearningRate = 0.05f, WeightDecay = 0.01f },
        "sgd-nesterov" => new OptimizerOptions { Name = "sgd", LearningRate = 0.05f, Momentum = 0.9f, Nesterov = true, WeightDecay = 0.01f },
        "sgd-dampening" => new OptimizerOptions { Name = "sgd", LearningRate = 0.05f, Momentum = 0.9f, Dampening = 0.3f },
        "lion" => new OptimizerOptions { Name = "lion", LearningRate = 3e-4f, WeightDecay = 1f },
        "lamb" => new OptimizerOptions { Name = "lamb", LearningRate = 1e-2f, WeightDecay = 0.01f, Groups = new ParameterGroups { NoDecay = ParameterGroups.ParseNoDecay("norms,embeddings") } },
        _ => throw new ArgumentException(name),
    };

    [Theory]
    [MemberData(nameof(ResumeCases))]
    public void Resume_AfterThreeSteps_TwoMore_BitIdenticalToFiveInOneGo(string optimizer)
    {
        TrainerOptions options = new()
        {
            Optimizer = ResumeOptimizer(optimizer) with { GradClip = 1f, WarmupSteps = 2, Schedule = ScheduleKind.Cosine },
            TotalSteps = 5,
        };
        RecallDemoSource Source() => new(new AssociativeRecall(s_config.VocabSize, 32, pairs: 3, meanGap: 2), batchSize: 2, seed: 5);
        using var dir = new TempDirectory();
        float[] straight;
        float[] straightState;
        using (var model = new LlamaModel(s_config))
        {
            model.InitializeRandom(1);
            using var run = new TrainingRun(model, options, Source());
            run.Run(5);
            straight = model.Parameters.All.Span.ToArray();
            straightState = run.Trainer.Optimizer.State.SelectMany(s => s.View.Span.ToArray()).ToArray();
        }

        using (var model = new LlamaModel(s_config))
        {
            model.InitializeRandom(1);
            using var run = new TrainingRun(model, options, Source());
            run.Run(3);
            run.SaveCheckpoint(dir.File("ckpt"), overwrite: false);
        }

        string[] expectedState = options.Optimizer.Rule.StateNames(options.Optimizer).ToArray();
        using (SafeTensorsReader saved = SafeTensorsReader.Open(dir.File("ckpt/optimizer.safetensors")))
        {
            Assert.Equal(expectedState.Select(s => "model.norm.weight/" + s), saved.Tensors.Select(t => t.Name).Where(n => n.StartsWith("model.norm.weight/", StringComparison.Ordinal)));
        }

        using (LlamaModel model = ModelDirectory.Load(dir.File("ckpt")))
        {
            using var run = new TrainingRun(model, options, Source());
            Assert.Equal(3, run.RestoreState(dir.File("ckpt")).Step);
            run.Run(5);
            Assert.True(straight.AsSpan().SequenceEqual(model.Parameters.All.Span), $"{optimizer}: resumed weights differ from the uninterrupted run's");
            float[] state = run.Trainer.Optimizer.State.SelectMany(s => s.View.Span.ToArray()).ToArray();
            Assert.True(straightState.AsSpan().SequenceEqual(state), $"{optimizer}: resumed optimizer state differs");
        }
    }
}
