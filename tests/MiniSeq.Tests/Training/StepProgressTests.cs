// A training step reports where it is between layers — forward 1..L, the LM head, backward 1..L, per micro-batch — under
// every kind of pass (kept layers, checkpointing with MsT, sequence-chunked layers); listening changes nothing in the
// results, validation through the trainer's pass stays silent, and TrainingRun.Run hands the listener to the trainer
// only for its own steps; an evaluation over many batches counts them as it goes, with the same result.
using MiniSeq.IO;
using MiniSeq.Model;
using MiniSeq.Tests.Helpers;
using MiniSeq.Tests.Model;
using MiniSeq.Training;
using MiniSeq.Training.Data;

namespace MiniSeq.Tests.Training;

public class StepProgressTests
{
    private static List<string> Expected(int layers, int microBatches)
    {
        var expected = new List<string>();
        for (int m = 1; m <= microBatches; m++)
        {
            var passes = new List<PassProgress>();
            for (int l = 1; l <= layers; l++)
            {
                passes.Add(new PassProgress(PassPhase.Forward, l, layers));
            }

            passes.Add(new PassProgress(PassPhase.LmHead, layers, layers));
            for (int l = 1; l <= layers; l++)
            {
                passes.Add(new PassProgress(PassPhase.Backward, l, layers));
            }

            expected.AddRange(passes.Select(p => new StepProgress(m, microBatches, p).ToString()));
        }

        return expected;
    }

    public static TheoryData<string, int> Policies => new()
    {
        { "vanilla", 1 },
        { "vanilla", 2 },
        { "mst+checkpoint", 1 },
        { "mst+checkpoint+attn", 2 },
        { "chunked", 1 },
        { "chunked", 2 },
    };

    [Theory]
    [MemberData(nameof(Policies))]
    public void Step_ReportsEveryLayerOfEveryMicroBatch_AndComputesTheSame(string policyName, int microBatches)
    {
        LlamaConfig config = ModelPresets.Tiny with { NumHiddenLayers = 3 };
        const int Rows = 2, SeqLen = 24;
        TokenBatch batch = MiniSequenceEquivalenceTests.RandomBatch(config, Rows, SeqLen, 21);
        MemoryPolicy policy = policyName == "chunked" ? MemoryPolicy.Chunked(config, Rows, chunk: 10) : MemoryPolicy.Parse(policyName, config, Rows * SeqLen);
        int micro = Rows / microBatches;

        (double Loss, float[] Gradients) silent = MiniSequenceEquivalenceTests.Run(config, batch, policy, microBatch: micro);

        using var model = new LlamaModel(config);
        model.InitializeRandom(42);
        using var trainer = new Trainer(model, new TrainerOptions { Policy = policy, MicroBatchRows = micro }, Rows, SeqLen);
        var reports = new List<string>();
        trainer.Progress = p => reports.Add(p.ToString());
        (double loss, _) = trainer.ComputeGradients(batch);

        Assert.Equal(Expected(config.NumHiddenLayers, microBatches), reports);
        Assert.Equal(BitConverter.DoubleToInt64Bits(silent.Loss), BitConverter.DoubleToInt64Bits(loss));
        Compare.Bitwise(silent.Gradients, trainer.Gradients.Span.ToArray(), policy.Describe() + " gradients");

        // Validation through the trainer's own pass reports nothing.
        reports.Clear();
        trainer.Evaluate([batch]);
        Assert.Empty(reports);
    }

    [Fact]
    public void TrainingRun_ListensOnlyDuringItsSteps()
    {
        LlamaConfig config = ModelPresets.Tiny;
        TokenBatch batch = MiniSequenceEquivalenceTests.RandomBatch(config, 1, 16, 22);
        using var model = new LlamaModel(config);
        model.InitializeRandom(42);
        using var run = new TrainingRun(model, new TrainerOptions { TotalSteps = 2 }, new TokenFileSource(batch));
        Action<StepProgress> outer = _ => { };
        run.Trainer.Progress = outer;
        var reports = new List<StepProgress>();
        run.Run(2, stepProgress: reports.Add);

        Assert.Equal(2 * ((2 * config.NumHiddenLayers) + 1), reports.Count);
        Assert.Equal(new StepProgress(1, 1, new PassProgress(PassPhase.Backward, config.NumHiddenLayers, config.NumHiddenLayers)), reports[^1]);
        Assert.Same(outer, run.Trainer.Progress);
    }

    [Fact]
    public void Evaluate_CountsTheBatches_AndComputesTheSame()
    {
        LlamaConfig config = ModelPresets.Tiny;
        TokenBatch[] batches = [.. Enumerable.Range(0, 4).Select(i => MiniSequenceEquivalenceTests.RandomBatch(config, 2, 16, 30 + (ulong)i))];
        using var model = new LlamaModel(config);
        model.InitializeRandom(42);
        var done = new List<int>();
        EvalResult silent = Evaluator.Evaluate(model, batches, 2, 16);
        EvalResult counted = Evaluator.Evaluate(model, batches, 2, 16, batchDone: done.Add);
        Assert.Equal([1, 2, 3, 4], done);
        Assert.Equal(BitConverter.DoubleToInt64Bits(silent.Loss), BitConverter.DoubleToInt64Bits(counted.Loss));
    }

    [Fact]
    public void Text_NamesThePhaseAndTheMicroBatch()
    {
        Assert.Equal("forward 3/24", new PassProgress(PassPhase.Forward, 3, 24).ToString());
        Assert.Equal("LM head", new PassProgress(PassPhase.LmHead, 24, 24).ToString());
        Assert.Equal("backward 12/24", new StepProgress(1, 1, new PassProgress(PassPhase.Backward, 12, 24)).ToString());
        Assert.Equal("micro-batch 2/4: backward 12/24", new StepProgress(2, 4, new PassProgress(PassPhase.Backward, 12, 24)).ToString());
    }
}
