// Data parallel over a communicator. Every rank holds the whole model, gradients and optimizer state, and trains on
// its own rows of each global batch (RankShardSource: rows r, r + P, …). Before the update the ranks agree on what one
// process with the whole batch would have computed: first the scored-token count (it scales every gradient, so it is
// reduced before any backward), then the gradients (all-reduce sum in buckets, after the backward), and the loss for
// the record. Every rank then clips and updates identical bits, so the replicas stay equal without ever exchanging
// weights; the result differs from one process only by fp32 summation order. Per step each rank sends and receives
// 2·(P − 1)/P · 4·(trainable parameters) bytes (ring all-reduce). Deliberately not yet: overlapping the all-reduce
// with the backward of earlier layers, sharded optimizer state (ZeRO-1), sequence parallel.
using MiniSeq.IO;
using MiniSeq.Tensors;
using MiniSeq.Training;
using MiniSeq.Training.Data;

namespace MiniSeq.Distributed;

/// <summary>Hooks a trainer, its batch source and its evaluation up to a communicator for data-parallel training.</summary>
public static unsafe class DataParallel
{
    /// <summary>Gradient bytes per all-reduce call: large enough for full bandwidth, small enough to bound a call.</summary>
    public const long DefaultBucketBytes = 16L << 20;

    /// <summary>
    /// <paramref name="options"/> with the step's reductions over <paramref name="communicator"/>: the scored-token
    /// count and the loss sum (all-reduce sum), the gradients (all-reduce sum in buckets of
    /// <paramref name="bucketBytes"/>), and <see cref="TrainerOptions.DataParallelRanks"/>. Replaces any reduction
    /// hooks already set. A group of one returns <paramref name="options"/> unchanged.
    /// </summary>
    public static TrainerOptions Attach(TrainerOptions options, ICommunicator communicator, long bucketBytes = DefaultBucketBytes)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(communicator);
        ArgumentOutOfRangeException.ThrowIfLessThan(bucketBytes, sizeof(float));
        if (communicator.Size == 1)
        {
            return options;
        }

        long bucketFloats = bucketBytes / sizeof(float);
        return options with
        {
            ReduceScoredCount = local => Sum(communicator, local),
            ReduceLossSum = local => Sum(communicator, local),
            ReduceGradients = gradients => AllReduceInBuckets(communicator, gradients, bucketFloats),
            DataParallelRanks = communicator.Size,
        };
    }

    /// <summary>This rank's share of <paramref name="global"/> (the source itself for a group of one).</summary>
    /// <exception cref="ArgumentException">The batch's rows do not divide by the number of ranks.</exception>
    public static IBatchSource Shard(IBatchSource global, ICommunicator communicator)
    {
        ArgumentNullException.ThrowIfNull(global);
        ArgumentNullException.ThrowIfNull(communicator);
        return communicator.Size == 1 ? global : new RankShardSource(global, communicator.Rank, communicator.Size);
    }

    /// <summary>All-reduce sum of <paramref name="values"/> in place, at most <paramref name="bucketFloats"/> per call.</summary>
    public static void AllReduceInBuckets(ICommunicator communicator, TensorView values, long bucketFloats)
    {
        ArgumentNullException.ThrowIfNull(communicator);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bucketFloats);
        bucketFloats = Math.Min(bucketFloats, int.MaxValue);
        for (long offset = 0; offset < values.Length; offset += bucketFloats)
        {
            int length = (int)Math.Min(bucketFloats, values.Length - offset);
            communicator.AllReduce(new Span<float>(values.Pointer + offset, length));
        }
    }

    /// <summary>Number of all-reduce calls for <paramref name="floats"/> gradients in buckets of <paramref name="bucketBytes"/>.</summary>
    public static long BucketCount(long floats, long bucketBytes = DefaultBucketBytes)
    {
        long bucket = Math.Min(bucketBytes / sizeof(float), int.MaxValue);
        return (floats + bucket - 1) / bucket;
    }

    /// <summary>
    /// Bytes each rank sends (and receives) per step to all-reduce <paramref name="floats"/> fp32 gradients over
    /// <paramref name="ranks"/> ranks with a ring all-reduce: 2·(P − 1)/P · 4·floats.
    /// </summary>
    public static double RingBytesPerStep(long floats, int ranks)
        => ranks <= 1 ? 0 : 2.0 * (ranks - 1) / ranks * sizeof(float) * floats;

    /// <summary>
    /// The validation loss of <paramref name="globalBatches"/> (each of the global batch shape): each rank evaluates its
    /// rows, then the loss sums and token counts are all-reduced, so every rank returns the global mean.
    /// </summary>
    public static EvalResult Evaluate(Trainer trainer, IEnumerable<TokenBatch> globalBatches, ICommunicator communicator)
    {
        ArgumentNullException.ThrowIfNull(trainer);
        ArgumentNullException.ThrowIfNull(globalBatches);
        ArgumentNullException.ThrowIfNull(communicator);
        if (communicator.Size == 1)
        {
            return trainer.Evaluate(globalBatches);
        }

        // A rank whose rows score nothing is fine as long as the whole batch scores something: check after the sum.
        TokenBatch? shard = null;
        (double lossSum, long scored, long tokens) = trainer.EvaluateSums(globalBatches.Select(b => shard = RankShardSource.Take(b, communicator.Rank, communicator.Size, shard)));
        Span<double> sum = [lossSum];
        Span<long> counts = [scored, tokens];
        communicator.AllReduce(sum);
        communicator.AllReduce(counts);
        return trainer.FinishEvaluation(sum[0], counts[0], counts[1]);
    }

    /// <summary>
    /// For <see cref="TrainingRun.SynchronizeClock"/>: every rank acts on rank 0's elapsed time, so that a time limit
    /// stops all ranks after the same step.
    /// </summary>
    public static Func<TimeSpan, TimeSpan> SharedClock(ICommunicator communicator)
    {
        ArgumentNullException.ThrowIfNull(communicator);
        return elapsed =>
        {
            Span<double> seconds = [elapsed.TotalSeconds];
            communicator.Broadcast(seconds, root: 0);
            return TimeSpan.FromSeconds(seconds[0]);
        };
    }

    /// <summary>
    /// Checks that every rank holds the same bits in <paramref name="values"/> (the replicas of the trainable weights),
    /// by an all-reduce of a 64-bit fingerprint; throws <see cref="InvalidOperationException"/> naming
    /// <paramref name="what"/> if they differ. Collective: every rank must call it.
    /// </summary>
    public static void CheckReplicasAgree(TensorView values, ICommunicator communicator, string what)
    {
        ArgumentNullException.ThrowIfNull(communicator);
        if (communicator.Size == 1)
        {
            return;
        }

        long fingerprint = (long)Fingerprint(values);

        // max(~h) = ~min(h): one MAX all-reduce yields both the largest and the smallest fingerprint.
        Span<long> extremes = [fingerprint, ~fingerprint];
        communicator.AllReduce(extremes, ReduceOp.Max);
        if (extremes[0] != ~extremes[1])
        {
            throw new InvalidOperationException($"the {communicator.Size} ranks' copies of {what} differ (the MPI library's all-reduce did not give every rank the same sum); nothing was saved.");
        }
    }

    /// <summary>A 64-bit fingerprint of the bits of <paramref name="values"/> (four FNV-1a-style lanes of 64-bit words).</summary>
    internal static ulong Fingerprint(TensorView values)
    {
        const ulong Prime = 0x100000001b3UL;
        ulong h0 = 0xcbf29ce484222325UL, h1 = h0 ^ 1, h2 = h0 ^ 2, h3 = h0 ^ 3;
        long words = values.Length / 2;
        ulong* w = (ulong*)values.Pointer;
        long i = 0;
        for (; i + 4 <= words; i += 4)
        {
            h0 = (h0 ^ w[i]) * Prime;
            h1 = (h1 ^ w[i + 1]) * Prime;
            h2 = (h2 ^ w[i + 2]) * Prime;
            h3 = (h3 ^ w[i + 3]) * Prime;
        }

        for (; i < words; i++)
        {
            h0 = (h0 ^ w[i]) * Prime;
        }

        if ((values.Length & 1) != 0)
        {
            h1 = (h1 ^ BitConverter.SingleToUInt32Bits(values.Pointer[values.Length - 1])) * Prime;
        }

        return ((h0 * 31 + h1) * 31 + h2) * 31 + h3;
    }

    private static long Sum(ICommunicator communicator, long local)
    {
        Span<long> value = [local];
        communicator.AllReduce(value);
        return value[0];
    }

    private static double Sum(ICommunicator communicator, double local)
    {
        Span<double> value = [local];
        communicator.AllReduce(value);
        return value[0];
    }
}
