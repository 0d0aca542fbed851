// ZeRO-1 without MPI: ranks as threads of one process (InProcessGroup). Sharded optimizer state gives the weights,
// losses and gradient norms of plain data parallel and of one process with the whole batch (relative 1e-5, MsT +
// checkpointing, clipping, weight decay) with 1/P of the state per rank; a checkpoint gathered from the shards is the
// plain one, and resuming from it continues the run; the shard ranges tile the arena; LAMB is refused.
using MiniSeq.Distributed;
using MiniSeq.IO;
using MiniSeq.Model;
using MiniSeq.Tests.Helpers;
using MiniSeq.Training;
using MiniSeq.Training.Data;

namespace MiniSeq.Tests.Distributed;

public class ZeroTests
{
    private static readonly LlamaConfig s_config = ModelPresets.Tiny;

    private static TrainerOptions Options(int steps, string optimizer = "adamw", Precision precision = Precision.Float32) => new()
    {
        Precision = precision,
        Optimizer = new OptimizerOptions { Name = optimizer, LearningRate = 3e-3f, WeightDecay = 0.1f, GradClip = 1f, WarmupSteps = 1, Schedule = ScheduleKind.Cosine },
        Policy = new MemoryPolicy { MlpChunks = 2, LmHeadChunks = 3, Checkpoint = true },
        TotalSteps = steps,
    };

    private static RecallDemoSource Source(int rows) => new(new AssociativeRecall(s_config.VocabSize, 48, pairs: 4, meanGap: 2), batchSize: rows, seed: 9);

    private sealed record RunResult(float[] Weights, float[] Gradients, OptimizerShard? Shard, double[] Losses, double[] GradNorms, long StateBytes);

    /// <summary>Trains <paramref name="steps"/> steps (after resuming from <paramref name="resume"/>), then, with
    /// <paramref name="save"/>, gathers the state and saves a checkpoint from rank 0.</summary>
    private static RunResult Train(ICommunicator? communicator, bool zero, int rows, int steps, string optimizer = "adamw", string? save = null, string? resume = null, int totalSteps = 0, Precision precision = Precision.Float32)
    {
        using LlamaModel model = resume is null ? new LlamaModel(s_config) : ModelDirectory.Load(resume);
        if (resume is null)
        {
            model.InitializeRandom(1);
        }

        TrainerOptions options = Options(Math.Max(steps, totalSteps), optimizer, precision);
        IBatchSource source = Source(rows);
        if (communicator is not null)
        {
            options = DataParallel.Attach(options, communicator, bucketBytes: 40_000, zero: zero); // several rounds, a short last one
            source = DataParallel.Shard(source, communicator);
        }

        using var run = new TrainingRun(model, options, source);
        if (resume is not null)
        {
            run.RestoreState(resume);
        }

        IReadOnlyList<StepResult> history = run.Run(steps);
        if (save is not null)
        {
            using IDisposable? gathered = run.Trainer.GatherOptimizerState();
            if (communicator is null || communicator.Rank == 0)
            {
                run.SaveCheckpoint(save, overwrite: true);
            }
        }

        return new RunResult(model.Parameters.All.Span.ToArray(), run.Trainer.Gradients.Span.ToArray(), run.Trainer.Optimizer.Shard,
            [.. history.Select(h => h.Loss)], [.. history.Select(h => h.GradNorm)], run.Trainer.Optimizer.ResidentBytes);
    }

    private static void AssertSameRun(RunResult expected, RunResult actual, string what, double tolerance = 1e-5)
    {
        foreach (ParameterInfo t in new ParameterLayout(s_config).Tensors)
        {
            Compare.Close(actual.Weights.AsSpan((int)t.Slot.Offset, (int)t.ElementCount), expected.Weights.AsSpan((int)t.Slot.Offset, (int)t.ElementCount), tolerance, $"{what}: {t.Name}");
        }

        for (int s = 0; s < expected.Losses.Length; s++)
        {
            Compare.Close(actual.Losses[s], expected.Losses[s], tolerance, $"{what}: loss of step {s + 1}");
            Compare.Close(actual.GradNorms[s], expected.GradNorms[s], tolerance, $"{what}: gradient norm of step {s + 1}");
        }
    }

    /// <summary>--precision bf16 under ZeRO-1: every rank rounds its compute weights from the all-gathered masters at the
    /// start of each pass, so the ranks stay identical and follow the one-process bf16 run — to 1e-4 relative, as under
    /// Ulysses: a last-bit difference of a master (the reduction order) can flip the rounding of its bf16 copy, and
    /// that of a q, k or v value computed from it.</summary>
    [Fact]
    public void Zero1_Bf16Precision_RanksIdenticalAndSameAsOneProcess()
    {
        const int Steps = 3, Ranks = 2;
        RunResult one = Train(null, zero: false, Ranks, Steps, precision: Precision.BFloat16);
        RunResult[] zero = InProcessGroup.Run(Ranks, c => Train(c, zero: true, Ranks, Steps, precision: Precision.BFloat16));
        Assert.True(zero[0].Weights.AsSpan().SequenceEqual(zero[1].Weights), "rank 1's weights differ from rank 0's");
        AssertSameRun(one, zero[0], "bf16 ZeRO-1 vs one process", tolerance: 1e-4);
        RunResult fp32 = Train(null, zero: false, Ranks, Steps);
        Assert.False(fp32.Weights.AsSpan().SequenceEqual(one.Weights), "bf16 and fp32 runs are identical: the precision was not applied");
    }

    [Theory]
    [InlineData(2, "adamw")]
    [InlineData(3, "adamw")]
    [InlineData(2, "lion")]
    [InlineData(2, "sgd")]
    public void Zero1_MsTAndCheckpointing_SameAsPlainDataParallelAndOneProcess(int ranks, string optimizer)
    {
        const int Steps = 3;
        RunResult one = Train(null, zero: false, ranks, Steps, optimizer);
        RunResult[] plain = InProcessGroup.Run(ranks, c => Train(c, zero: false, ranks, Steps, optimizer));
        RunResult[] zero = InProcessGroup.Run(ranks, c => Train(c, zero: true, ranks, Steps, optimizer));

        for (int r = 0; r < ranks; r++)
        {
            Assert.True(zero[0].Weights.AsSpan().SequenceEqual(zero[r].Weights), $"rank {r}'s weights differ from rank 0's");
            AssertSameRun(one, zero[r], $"ZeRO-1 rank {r} vs one process");
            AssertSameRun(plain[0], zero[r], $"ZeRO-1 rank {r} vs plain data parallel");

            // Each rank's range holds the reduced, clipped gradient of the last step.
            OptimizerShard own = zero[r].Shard!.Value;
            Compare.Close(zero[r].Gradients.AsSpan((int)own.Start, (int)own.Length), plain[0].Gradients.AsSpan((int)own.Start, (int)own.Length), 1e-5, $"rank {r}'s range of the gradients");
        }

        // The state per rank is its range's: 1/P of the whole (up to the alignment of the ranges).
        Assert.Equal(one.StateBytes, plain[1].StateBytes);
        Assert.Equal(one.StateBytes, zero.Sum(z => z.StateBytes), tolerance: 64.0 * ranks * 2);
        Assert.All(zero, z => Assert.InRange(z.StateBytes, 0, (one.StateBytes / ranks) + 256));
    }

    [Fact]
    public void Zero1_CheckpointGatheredFromShards_IsThePlainOneAndResumesTheRun()
    {
        using var plainDir = new TempDir();
        using var zeroDir = new TempDir();
        using var resumedDir = new TempDir();
        string plainSave = Path.Combine(plainDir.Path, "ckpt"), zeroSave = Path.Combine(zeroDir.Path, "ckpt");
        RunResult uninterrupted = Train(null, zero: false, 2, 4);
        Train(null, zero: false, 2, 2, save: plainSave, totalSteps: 4);
        InProcessGroup.Run(2, c => Train(c, zero: true, 2, 2, save: zeroSave, totalSteps: 4));

        using (SafeTensorsReader a = SafeTensorsReader.Open(Path.Combine(plainSave, TrainingCheckpoint.TensorsFileName)))
        using (SafeTensorsReader b = SafeTensorsReader.Open(Path.Combine(zeroSave, TrainingCheckpoint.TensorsFileName)))
        {
            Assert.Equal(a.Tensors.Select(t => t.Name), b.Tensors.Select(t => t.Name));
            foreach (SafeTensorInfo t in a.Tensors)
            {
                Compare.Close(b.ReadFloat32(t.Name), a.ReadFloat32(t.Name), 1e-5, t.Name);
            }
        }

        // Resumed under ZeRO-1 on 2 ranks from the ZeRO checkpoint, and in one process from it too.
        RunResult[] resumed = InProcessGroup.Run(2, c => Train(c, zero: true, 2, 4, resume: zeroSave));
        RunResult single = Train(null, zero: false, 2, 4, resume: zeroSave);
        foreach (RunResult r in resumed.Append(single))
        {
            foreach (ParameterInfo t in new ParameterLayout(s_config).Tensors)
            {
                Compare.Close(r.Weights.AsSpan((int)t.Slot.Offset, (int)t.ElementCount), uninterrupted.Weights.AsSpan((int)t.Slot.Offset, (int)t.ElementCount), 1e-5, t.Name);
            }

            for (int s = 0; s < 2; s++)
            {
                Compare.Close(r.Losses[s], uninterrupted.Losses[s + 2], 1e-5, $"loss of step {s + 3}");
            }
        }
    }

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    public void StateBytes_ZeroShards_PredictsTheLargestRanksState(int ranks)
    {
        long[] held = InProcessGroup.Run(ranks, c =>
        {
            using var model = new LlamaModel(s_config);
            using var trainer = new Trainer(model, DataParallel.Attach(Options(1), c, zero: true), 1, 16);
            return trainer.Optimizer.ResidentBytes;
        });

        OptimizerOptions adamw = Options(1).Optimizer;
        Assert.Equal(held.Max(), Optimizer.StateBytes(s_config, adamw, zeroShards: ranks));
        Assert.InRange(Optimizer.StateBytes(s_config, adamw, zeroShards: ranks), 0, (Optimizer.StateBytes(s_config, adamw) / ranks) + 256);
        Assert.Equal(Optimizer.StateBytes(s_config, adamw, zeroShards: ranks), MemoryPlanner.Predict(s_config, 1, 16, MemoryPolicy.Vanilla, adamw, 0, setup: new TrainingSetup { ZeroShards = ranks }).OptimizerState);
    }

    [Fact]
    public void Zero1_Lamb_RefusedInOneLine()
    {
        AggregateException e = Assert.Throws<AggregateException>(() => InProcessGroup.Run(2, c => Train(c, zero: true, 2, 1, "lamb")));
        Assert.All(e.InnerExceptions, x =>
        {
            Assert.IsType<ArgumentException>(x);
            Assert.Contains("element-wise", x.Message, StringComparison.Ordinal);
            Assert.DoesNotContain('\n', x.Message);
        });
    }

    [Theory]
    [InlineData(0, 2)]
    [InlineData(5, 3)]
    [InlineData(1000, 3)]
    [InlineData(1024, 4)]
    [InlineData(33, 8)]
    public void OptimizerShard_Ranges_TileTheArenaAligned(long length, int ranks)
    {
        long next = 0;
        for (int r = 0; r < ranks; r++)
        {
            OptimizerShard s = OptimizerShard.Of(length, r, ranks);
            Assert.Equal(next, s.Start);
            Assert.True(s.Start == length || s.Start % OptimizerShard.Alignment == 0);
            next = s.End;
        }

        Assert.Equal(length, next);
    }
}
