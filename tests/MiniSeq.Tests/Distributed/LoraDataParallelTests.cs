// LoRA under data parallel (and ZeRO-1: the adapters' optimizer state sharded): only the adapters' gradients are
// reduced, and 2 ranks give the adapters, losses and gradient norms of one process with the whole batch (relative
// 1e-5), the base untouched on every rank.
using MiniSeq.Distributed;
using MiniSeq.Model;
using MiniSeq.Model.Lora;
using MiniSeq.Tests.Helpers;
using MiniSeq.Training;
using MiniSeq.Training.Data;

namespace MiniSeq.Tests.Distributed;

public class LoraDataParallelTests
{
    private static readonly LlamaConfig s_config = ModelPresets.Tiny;

    private sealed record RunResult(float[] Adapters, float[] Base, double[] Losses, double[] GradNorms, long GradientBytes);

    private static RunResult Train(ICommunicator? communicator, int rows, int steps, bool zero = false, float dropout = 0f, int? microBatchRows = null)
    {
        using var model = new LlamaModel(s_config);
        model.InitializeRandom(1);
        LoraAdapters adapters = model.AttachAdapters(new LoraConfig { Rank = 4, Alpha = 8, Dropout = dropout, Targets = LoraConfig.ParseTargets("all,lm_head") });
        adapters.InitializePeft(2);
        var options = new TrainerOptions
        {
            Optimizer = new OptimizerOptions { LearningRate = 1e-2f, WeightDecay = 0.1f },
            Policy = new MemoryPolicy { MlpChunks = 2, LmHeadChunks = 3, Checkpoint = true },
            TotalSteps = steps,
            MicroBatchRows = microBatchRows,
            Seed = 5,
        };
        IBatchSource source = new RecallDemoSource(new AssociativeRecall(s_config.VocabSize, 48, pairs: 4, meanGap: 2), batchSize: rows, seed: 9);
        if (communicator is not null)
        {
            options = DataParallel.Attach(options, communicator, zero: zero);
            source = DataParallel.Shard(source, communicator);
        }

        using var run = new TrainingRun(model, options, source);
        IReadOnlyList<StepResult> history = run.Run(steps);
        return new RunResult(adapters.Weights.All.Span.ToArray(), model.Parameters.All.Span.ToArray(),
            [.. history.Select(h => h.Loss)], [.. history.Select(h => h.GradNorm)], run.Trainer.Gradients.Length * sizeof(float));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void TwoRanks_AdaptersLossesAndNorms_EqualOneProcess(bool zero)
    {
        const int Steps = 3, Rows = 2;
        RunResult one = Train(null, Rows, Steps);
        RunResult[] all = InProcessGroup.Run(2, c => Train(c, Rows, Steps, zero));
        Assert.True(all[0].Adapters.AsSpan().SequenceEqual(all[1].Adapters), "the ranks' adapters differ");
        Compare.Close(all[0].Adapters, one.Adapters, 1e-5, "adapters after 3 steps");
        Assert.True(all[0].Base.AsSpan().SequenceEqual(one.Base), "the frozen base changed");
        for (int s = 0; s < Steps; s++)
        {
            Compare.Close(all[0].Losses[s], one.Losses[s], 1e-5, $"loss of step {s + 1}");
            Compare.Close(all[0].GradNorms[s], one.GradNorms[s], 1e-5, $"gradient norm of step {s + 1}");
        }

        // What is all-reduced is the adapters' gradients alone.
        Assert.Equal(new LoraLayout(new ParameterLayout(s_config), new LoraConfig { Rank = 4, Alpha = 8, Targets = LoraConfig.ParseTargets("all,lm_head") }).Plan.TotalBytes, all[0].GradientBytes);
    }

    [Fact]
    public void Dropout_TwoRanksAndMicroBatches_DrawTheMasksOfOneProcess()
    {
        // The masks are keyed by the token's place in the global batch, not by the rank or the micro-batch.
        const int Steps = 3, Rows = 4;
        RunResult one = Train(null, Rows, Steps, dropout: 0.25f);
        RunResult micro = Train(null, Rows, Steps, dropout: 0.25f, microBatchRows: 1);
        RunResult noDropout = Train(null, Rows, Steps);
        RunResult[] all = InProcessGroup.Run(2, c => Train(c, Rows, Steps, dropout: 0.25f));
        Assert.True(all[0].Adapters.AsSpan().SequenceEqual(all[1].Adapters), "the ranks' adapters differ");
        Compare.Close(micro.Adapters, one.Adapters, 1e-5, "micro-batches of 1 row vs the whole batch");
        Compare.Close(all[0].Adapters, one.Adapters, 1e-5, "2 ranks vs 1 process");
        for (int s = 0; s < Steps; s++)
        {
            Compare.Close(all[0].Losses[s], one.Losses[s], 1e-5, $"loss of step {s + 1}");
            Compare.Close(micro.Losses[s], one.Losses[s], 1e-5, $"micro-batched loss of step {s + 1}");
        }

        // Dropout is really on: the adapters move differently from a run without it.
        Assert.True(Compare.RelativeError(noDropout.Adapters, one.Adapters) > 1e-3, "dropout changed nothing");
    }
}
