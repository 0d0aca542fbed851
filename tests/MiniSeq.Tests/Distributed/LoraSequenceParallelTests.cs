// LoRA under Ulysses sequence parallel (ranks as threads, InProcessGroup): every projection and its adapter is row-wise,
// so P ranks holding N/P positions of every row train the adapters of one process with whole rows (relative 1e-5) —
// with dropout too, because the masks are keyed by the token's place in the global batch (DropoutTokens), and with
// sequence-chunked layers.
using MiniSeq.Distributed;
using MiniSeq.Model;
using MiniSeq.Model.Lora;
using MiniSeq.Tests.Helpers;
using MiniSeq.Training;
using MiniSeq.Training.Data;

namespace MiniSeq.Tests.Distributed;

public class LoraSequenceParallelTests
{
    private static readonly LlamaConfig s_config = ModelPresets.Tiny;

    private static (float[] Adapters, double[] Losses) Train(ICommunicator? communicator, float dropout, int seqLen, int chunk = 0)
    {
        const int Steps = 2, Rows = 2;
        using var model = new LlamaModel(s_config);
        model.InitializeRandom(1);
        LoraAdapters adapters = model.AttachAdapters(new LoraConfig { Rank = 4, Alpha = 8, Dropout = dropout, Targets = LoraConfig.ParseTargets("all,lm_head") });
        adapters.InitializePeft(2);
        var options = new TrainerOptions
        {
            Optimizer = new OptimizerOptions { LearningRate = 1e-2f },
            Policy = chunk == 0 ? new MemoryPolicy { MlpChunks = 2, LmHeadChunks = 3, Checkpoint = true }
                : MemoryPolicy.Chunked(s_config, Rows * seqLen, chunk) with { MlpChunks = 2, LmHeadChunks = 3 },
            TotalSteps = Steps,
            Seed = 5,
        };
        IBatchSource source = new RecallDemoSource(new AssociativeRecall(s_config.VocabSize, seqLen, pairs: 4, meanGap: 2), batchSize: Rows, seed: 9);
        if (communicator is not null)
        {
            options = SequenceParallel.Attach(options, communicator);
            source = SequenceParallel.Shard(source, communicator);
        }

        using var run = new TrainingRun(model, options, source);
        IReadOnlyList<StepResult> history = run.Run(Steps);
        return (adapters.Weights.All.Span.ToArray(), [.. history.Select(h => h.Loss)]);
    }

    [Theory]
    [InlineData(0f, 48)]
    [InlineData(0.25f, 48)]
    [InlineData(0.25f, 47)] // padded to 2 × 24: the padding's masks never reach a real token
    [InlineData(0.25f, 47, 5)] // sequence-chunked layers on every rank (one process with the same policy)
    public void TwoRanks_Adapters_EqualOneProcess(float dropout, int seqLen, int chunk = 0)
    {
        (float[] Adapters, double[] Losses) one = Train(null, dropout, seqLen, chunk);
        (float[] Adapters, double[] Losses)[] all = InProcessGroup.Run(2, c => Train(c, dropout, seqLen, chunk));
        Assert.True(all[0].Adapters.AsSpan().SequenceEqual(all[1].Adapters), "the ranks' adapters differ");
        Compare.Close(all[0].Adapters, one.Adapters, 1e-5, "adapters after 2 steps");
        for (int s = 0; s < one.Losses.Length; s++)
        {
            Compare.Close(all[0].Losses[s], one.Losses[s], 1e-5, $"loss of step {s + 1}");
        }
    }
}
