// Runs are deterministic for a seed and independent of the number of kernel threads: bit-identical parameters
// after several optimizer steps with 1 and with 2 threads.
using MiniSeq.Model;
using MiniSeq.Tests.Model;
using MiniSeq.Threading;
using MiniSeq.Training;

namespace MiniSeq.Tests.Training;

/// <summary>Tests that set the global kernel thread count run alone: another test holding the pool would make their
/// kernels run inline on one thread.</summary>
[CollectionDefinition(nameof(KernelThreadsCollection), DisableParallelization = true)]
public sealed class KernelThreadsCollection;

[Collection(nameof(KernelThreadsCollection))]
public class DeterminismTests
{
    // 2 rows × 600 tokens, one row per micro-batch: 600-row GEMMs are above MatMul's threading threshold, so the
    // two-thread run really splits every GEMM and attention pass between two threads.
    private const int Rows = 2, SeqLen = 600;

    private static float[] Train(int threads, MemoryPolicy policy, Precision precision = Precision.Float32)
    {
        int previous = KernelThreads.ThreadCount;
        KernelThreads.SetThreadCount(threads);
        try
        {
            LlamaConfig config = ModelPresets.Tiny;
            using var model = new LlamaModel(config);
            model.InitializeRandom(5);
            var options = new TrainerOptions
            {
                Policy = policy,
                Precision = precision,
                Optimizer = new OptimizerOptions { LearningRate = 1e-2f, WeightDecay = 0.1f, GradClip = 0.5f, WarmupSteps = 1, Schedule = ScheduleKind.Cosine },
                TotalSteps = 4,
                MicroBatchRows = 1,
            };
            using var trainer = new Trainer(model, options, Rows, SeqLen);
            for (int s = 0; s < 4; s++)
            {
                trainer.Step(MiniSequenceEquivalenceTests.RandomBatch(config, Rows, SeqLen, (ulong)s + 100));
            }

            return model.Parameters.All.Span.ToArray();
        }
        finally
        {
            KernelThreads.SetThreadCount(previous);
        }
    }

    [Fact]
    public void Training_OneVersusTwoThreads_BitIdentical()
    {
        foreach (MemoryPolicy policy in new[] { MemoryPolicy.Vanilla, new MemoryPolicy { MlpChunks = 3, LmHeadChunks = 4, Checkpoint = true } })
        {
            float[] one = Train(1, policy);
            long workerIndices = KernelThreads.WorkerIndicesRun;
            float[] two = Train(2, policy);
            Assert.True(KernelThreads.WorkerIndicesRun > workerIndices, "the two-thread run never used the second thread");
            Assert.True(one.AsSpan().SequenceEqual(two), $"parameters differ between 1 and 2 threads under {policy.Describe()}");
            Assert.True(Train(2, policy).AsSpan().SequenceEqual(two), "two runs with the same seed differ");
        }
    }

    [Fact]
    public void TrainingBf16Precision_OneVersusTwoThreads_BitIdentical()
    {
        foreach (MemoryPolicy policy in new[] { MemoryPolicy.Vanilla, new MemoryPolicy { MlpChunks = 3, LmHeadChunks = 4, Checkpoint = true }, MemoryPolicy.Chunked(ModelPresets.Tiny, SeqLen, chunk: 128) })
        {
            float[] one = Train(1, policy, Precision.BFloat16);
            float[] two = Train(2, policy, Precision.BFloat16);
            Assert.True(one.AsSpan().SequenceEqual(two), $"bf16 parameters differ between 1 and 2 threads under {policy.Describe()}");
        }
    }

    [Fact]
    public void Schedule_WarmupThenCosine()
    {
        var o = new OptimizerOptions { LearningRate = 1f, MinLearningRate = 0.1f, WarmupSteps = 4, Schedule = ScheduleKind.Cosine };
        Assert.Equal(0.25f, o.LearningRateAt(1, 10));
        Assert.Equal(1f, o.LearningRateAt(4, 10));
        Assert.Equal(0.1f, o.LearningRateAt(10, 10), 6);
        Assert.Equal(0.55f, o.LearningRateAt(7, 10), 5);
        Assert.Equal(1f, (o with { Schedule = ScheduleKind.Constant }).LearningRateAt(9, 10));
    }
}
