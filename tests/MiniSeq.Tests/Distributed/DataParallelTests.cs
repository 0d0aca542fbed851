// Data parallel without MPI: ranks as threads of one process (InProcessGroup). P ranks sharing each batch give the
// weights, gradients and losses of one process with the whole batch (relative 1e-5, MsT + checkpointing, clipping,
// weight decay); the shard takes rows r, r + P, …; buckets cover the gradients exactly; the shared clock, replica
// check and validation reduce as documented; every collective passes the self-test at several group sizes.
using MiniSeq.Distributed;
using MiniSeq.IO;
using MiniSeq.Model;
using MiniSeq.Tensors;
using MiniSeq.Tests.Helpers;
using MiniSeq.Tests.Model;
using MiniSeq.Training;
using MiniSeq.Training.Data;

namespace MiniSeq.Tests.Distributed;

public class DataParallelTests
{
    private static readonly LlamaConfig s_config = ModelPresets.Tiny;

    private static TrainerOptions Options(int steps) => new()
    {
        Optimizer = new OptimizerOptions { LearningRate = 3e-3f, WeightDecay = 0.1f, GradClip = 1f, WarmupSteps = 1, Schedule = ScheduleKind.Cosine },
        Policy = new MemoryPolicy { MlpChunks = 2, LmHeadChunks = 3, Checkpoint = true },
        TotalSteps = steps,
    };

    private static RecallDemoSource Source(int rows) => new(new AssociativeRecall(s_config.VocabSize, 48, pairs: 4, meanGap: 2), batchSize: rows, seed: 9);

    private sealed record RunResult(float[] Weights, float[] Gradients, double[] Losses, double[] GradNorms, long[] Tokens);

    private static RunResult Train(ICommunicator? communicator, int rows, int steps, int? microRows = null)
    {
        using var model = new LlamaModel(s_config);
        model.InitializeRandom(1);
        TrainerOptions options = Options(steps) with { MicroBatchRows = microRows };
        IBatchSource source = Source(rows);
        if (communicator is not null)
        {
            options = DataParallel.Attach(options, communicator, bucketBytes: 40_000); // several buckets, a short last one
            source = DataParallel.Shard(source, communicator);
        }

        using var run = new TrainingRun(model, options, source);
        IReadOnlyList<StepResult> history = run.Run(steps);
        return new RunResult(model.Parameters.All.Span.ToArray(), run.Trainer.Gradients.Span.ToArray(),
            [.. history.Select(h => h.Loss)], [.. history.Select(h => h.GradNorm)], [.. history.Select(h => h.Tokens)]);
    }

    [Theory]
    [InlineData(2, 2, null)]
    [InlineData(2, 4, 1)]
    [InlineData(4, 4, null)]
    public void Ranks_MsTAndCheckpointing_SameWeightsGradientsAndLossesAsOneProcess(int ranks, int rows, int? microRows)
    {
        const int Steps = 3;
        RunResult one = Train(null, rows, Steps);
        RunResult[] all = InProcessGroup.Run(ranks, c => Train(c, rows, Steps, microRows));

        for (int r = 1; r < ranks; r++)
        {
            Assert.True(all[0].Weights.AsSpan().SequenceEqual(all[r].Weights), $"rank {r}'s weights differ from rank 0's");
        }

        RunResult dp = all[0];
        var layout = new ParameterLayout(s_config);
        foreach (ParameterInfo t in layout.Tensors)
        {
            Compare.Close(dp.Weights.AsSpan((int)t.Slot.Offset, (int)t.ElementCount), one.Weights.AsSpan((int)t.Slot.Offset, (int)t.ElementCount), 1e-5, t.Name);
        }

        Compare.Close(dp.Gradients, one.Gradients, 1e-5, "gradients of the last step");
        for (int s = 0; s < Steps; s++)
        {
            Compare.Close(dp.Losses[s], one.Losses[s], 1e-5, $"loss of step {s + 1}");
            Compare.Close(dp.GradNorms[s], one.GradNorms[s], 1e-5, $"gradient norm of step {s + 1}");
            Assert.Equal(one.Tokens[s], dp.Tokens[s]); // the global batch's tokens, not one rank's
        }
    }

    [Fact]
    public void Attach_GroupOfOne_OptionsUnchanged()
    {
        TrainerOptions options = Options(1);
        Assert.Same(options, DataParallel.Attach(options, new SingleProcessCommunicator()));
        IBatchSource source = Source(3);
        Assert.Same(source, DataParallel.Shard(source, new SingleProcessCommunicator()));
    }

    [Fact]
    public void RankShardSource_RowsRankModuloRanks_TogetherTheWholeBatch()
    {
        TokenBatch batch = MiniSequenceEquivalenceTests.RandomBatch(s_config, 6, 5, 3);
        var withDocuments = new TokenBatch(6, 5, batch.InputIds, batch.Labels, [.. Enumerable.Range(0, 30).Select(i => i / 3)]);
        for (int rank = 0; rank < 3; rank++)
        {
            TokenBatch shard = RankShardSource.Take(withDocuments, rank, 3);
            Assert.Equal(2, shard.BatchSize);
            for (int i = 0; i < 2; i++)
            {
                int row = (i * 3) + rank;
                Assert.Equal(batch.InputIds.AsSpan(row * 5, 5).ToArray(), shard.InputIds.AsSpan(i * 5, 5).ToArray());
                Assert.Equal(batch.Labels.AsSpan(row * 5, 5).ToArray(), shard.Labels.AsSpan(i * 5, 5).ToArray());
                Assert.Equal(withDocuments.DocumentIds!.AsSpan(row * 5, 5).ToArray(), shard.DocumentIds!.AsSpan(i * 5, 5).ToArray());
            }
        }
    }

    [Fact]
    public void RankShardSource_PositionIsTheGlobalSources_ResumesOnTheSameBatch()
    {
        var a = new RankShardSource(Source(4), 1, 2);
        a.Next();
        a.Next();
        Assert.Equal(2, a.Cursor);
        int[] third = a.Next().InputIds.ToArray();

        var b = new RankShardSource(Source(4), 1, 2);
        var global = Source(4);
        global.Next();
        global.Next();
        b.Restore(global.Cursor, global.RngState);
        Assert.Equal(third, b.Next().InputIds);
        Assert.Equal(2, b.BatchSize);
    }

    [Fact]
    public void RankShardSource_RowsNotDivisible_OneLineErrorNamingBoth()
    {
        var e = Assert.Throws<ArgumentException>(() => new RankShardSource(Source(3), 0, 2));
        Assert.Contains("over 2 ranks", e.Message, StringComparison.Ordinal);
        Assert.Contains("has 3 rows", e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    [InlineData(1000)]
    [InlineData(1001)]
    public unsafe void AllReduceInBuckets_AnyBucketSize_SumsEveryElement(long bucketFloats)
    {
        const int Length = 1001;
        float[][] results = InProcessGroup.Run(3, c =>
        {
            float[] values = [.. Enumerable.Range(0, Length).Select(i => (float)((c.Rank * 1000) + i))];
            fixed (float* p = values)
            {
                DataParallel.AllReduceInBuckets(c, new TensorView(p, Length), bucketFloats);
            }

            return values;
        });

        float[] expected = [.. Enumerable.Range(0, Length).Select(i => (float)(3000 + (3 * i)))];
        Assert.All(results, r => Assert.Equal(expected, r));
        Assert.Equal((Length + bucketFloats - 1) / bucketFloats, DataParallel.BucketCount(Length, bucketFloats * sizeof(float)));
    }

    [Fact]
    public void RingBytesPerStep_IsTwoTimesPMinusOneOverPTimesTheGradientBytes()
    {
        Assert.Equal(0, DataParallel.RingBytesPerStep(1000, 1));
        Assert.Equal(4000, DataParallel.RingBytesPerStep(1000, 2));
        Assert.Equal(6000, DataParallel.RingBytesPerStep(1000, 4));
    }

    [Fact]
    public void SharedClock_EveryRankActsOnRankZerosTime()
    {
        TimeSpan[] seen = InProcessGroup.Run(3, c => DataParallel.SharedClock(c)(TimeSpan.FromSeconds(5 + (100 * c.Rank))));
        Assert.All(seen, t => Assert.Equal(TimeSpan.FromSeconds(5), t));
    }

    [Fact]
    public unsafe void CheckReplicasAgree_SameBitsPass_OneDifferentBitThrows()
    {
        string?[] errors = InProcessGroup.Run(2, c =>
        {
            float[] weights = [.. Enumerable.Range(0, 37).Select(i => i * 0.25f)];
            fixed (float* p = weights)
            {
                DataParallel.CheckReplicasAgree(new TensorView(p, weights.Length), c, "the weights");
                if (c.Rank == 1)
                {
                    weights[36] = BitConverter.Int32BitsToSingle(BitConverter.SingleToInt32Bits(weights[36]) ^ 1);
                }

                try
                {
                    DataParallel.CheckReplicasAgree(new TensorView(p, weights.Length), c, "the weights");
                    return null;
                }
                catch (InvalidOperationException e)
                {
                    return e.Message;
                }
            }
        });

        Assert.All(errors, e => Assert.Contains("copies of the weights differ", e, StringComparison.Ordinal));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Evaluate_TwoRanks_TheWholeBatchesMeanLoss(bool rankOneScoresNothing)
    {
        // Rank 1 holds rows 1 and 3: with them all ignored it has nothing to score, which is no error for the whole.
        Func<int, int, bool> ignore = rankOneScoresNothing ? (r, _) => r % 2 == 1 : (r, t) => r == 3 && t > 4;
        TokenBatch[] batches = [MiniSequenceEquivalenceTests.RandomBatch(s_config, 4, 16, 1, ignore), MiniSequenceEquivalenceTests.RandomBatch(s_config, 4, 16, 2, rankOneScoresNothing ? ignore : null)];
        EvalResult Evaluate(ICommunicator c)
        {
            using var model = new LlamaModel(s_config);
            model.InitializeRandom(5);
            using var trainer = new Trainer(model, Options(1), 4 / c.Size, 16);
            return DataParallel.Evaluate(trainer, batches, c);
        }

        EvalResult one = Evaluate(new SingleProcessCommunicator());
        EvalResult[] two = InProcessGroup.Run(2, Evaluate);
        Assert.All(two, r =>
        {
            Compare.Close(r.Loss, one.Loss, 1e-6, "validation loss");
            Assert.Equal(one.ScoredTokens, r.ScoredTokens);
            Assert.Equal(one.Tokens, r.Tokens);
        });
    }
}
