// Data parallel over a communicator. Every rank holds the whole model, gradients and optimizer state, and trains on
// its own rows of each global batch (RankShardSource: rows r, r + P, …). Before the update the ranks agree on what one
// process with the whole batch would have computed: first the scored-token count (it scales every gradient, so it is
// reduced before any backward), then the gradients (all-reduce sum in buckets, after the backward), and the loss for
// the record. Every rank then clips and updates identical bits, so the replicas stay equal without ever exchanging
// weights; the result differs from one process only by fp32 summation order. Per step each rank sends and receives
// 2·(P − 1)/P · 4·(trainable parameters) bytes (ring all-reduce). With ZeRO-1 (zero: true) each rank owns one
// contiguous range of the flat trainable arena: the gradients are reduce-scattered to their owners, each owner clips
// (by the global norm, summed from the ranges' parts) and updates its range with optimizer state for that range only
// (÷ P), and the updated weights are all-gathered — the same bytes on the wire as one all-reduce. Deliberately not
// yet: overlapping communication with the backward of earlier layers (measured at 0.2 % of a step, docs/scaling.md),
// ZeRO-2/3.
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
    /// <remarks>With <paramref name="zero"/> (ZeRO-1) the gradients are reduce-scattered instead and
    /// <see cref="TrainerOptions.Sharding"/> is set (<see cref="Sharding"/>); a group of one is unchanged either way.</remarks>
    public static TrainerOptions Attach(TrainerOptions options, ICommunicator communicator, long bucketBytes = DefaultBucketBytes, bool zero = false)
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
            DataParallelRank = communicator.Rank,
            Sharding = zero ? Sharding(communicator, bucketBytes) : null,
        };
    }

    /// <summary>
    /// The ZeRO-1 collectives over <paramref name="communicator"/>: rank r owns <see cref="OptimizerShard.Of"/>(L, r, P)
    /// of a flat arena of L floats. The collectives take equal blocks, so each goes in rounds of at most
    /// <paramref name="bucketBytes"/> through a staging buffer (allocated on first use, kept): round k moves elements
    /// [k·b, (k + 1)·b) of every rank's range, zero-padded past the end of the arena.
    /// </summary>
    public static OptimizerSharding Sharding(ICommunicator communicator, long bucketBytes = DefaultBucketBytes)
    {
        ArgumentNullException.ThrowIfNull(communicator);
        var staging = new ShardStaging(communicator, bucketBytes);
        return new OptimizerSharding
        {
            Rank = communicator.Rank,
            Ranks = communicator.Size,
            ReduceScatterGradients = staging.ReduceScatter,
            Sum = local => Sum(communicator, local),
            AllGatherValues = values => staging.AllGather(values, values, keep: true),
            GatherToRoot = (shard, whole) => staging.Gather(shard, whole),
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
    /// rows (Ulysses: its positions of every row), then the loss sums and token counts are all-reduced, so every rank
    /// returns the global mean.
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
        // Ulysses ranks hold positions of their replica's rows (the last shard's padding is no token); data-parallel
        // replicas (one per Ulysses group, or one per rank) hold rows.
        TokenBatch? rows = null, shard = null;
        ICommunicator? group = trainer.Options.SequenceParallel;
        int replica = group is null ? communicator.Rank : trainer.Options.DataParallelRank;
        int replicas = group is null ? communicator.Size : trainer.Options.DataParallelRanks;
        int rank = group?.Rank ?? 0, ranks = group?.Size ?? 1;
        long padding = 0;
        (double lossSum, long scored, long tokens) = trainer.EvaluateSums(globalBatches.Select(b =>
        {
            TokenBatch mine = SequenceParallel.Take(b, replica, replicas, rank, ranks, ref rows, ref shard);
            padding += rank == ranks - 1 ? (long)mine.BatchSize * mine.PaddedPositions : 0;
            return mine;
        }));
        Span<double> sum = [lossSum];
        Span<long> counts = [scored, tokens - padding];
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

    /// <summary>Equal-block reduce-scatter and all-gather over the uneven, clipped ranges of a flat arena.</summary>
    private sealed class ShardStaging(ICommunicator communicator, long bucketBytes)
    {
        private float[] _send = [];
        private float[] _receive = [];

        /// <summary>Sums <paramref name="values"/> (the whole arena) over the ranks into this rank's range of it.</summary>
        public void ReduceScatter(TensorView values)
        {
            int p = communicator.Size;
            long stride = OptimizerShard.Stride(values.Length, p);
            foreach ((long k, int n) in Rounds(stride))
            {
                Span<float> send = _send.AsSpan(0, p * n), block = _receive.AsSpan(0, n);
                for (int j = 0; j < p; j++)
                {
                    Copy(values, (j * stride) + k, n, send.Slice(j * n, n));
                }

                communicator.ReduceScatter<float>(send, block);
                long start = (communicator.Rank * stride) + k;
                int valid = (int)Math.Clamp(values.Length - start, 0, n);
                block[..valid].CopyTo(Span(values, start, valid));
            }
        }

        /// <summary>
        /// Every rank's range: from <paramref name="source"/> (this rank's range of an arena of the length of
        /// <paramref name="whole"/>, or the whole arena itself when they are the same view) into <paramref name="whole"/>
        /// (when <paramref name="keep"/>).
        /// </summary>
        public void AllGather(TensorView source, TensorView whole, bool keep)
        {
            int p = communicator.Size;
            long stride = OptimizerShard.Stride(whole.Length, p);
            long sourceBase = source.Length == whole.Length ? communicator.Rank * stride : 0;
            foreach ((long k, int n) in Rounds(stride))
            {
                Span<float> block = _send.AsSpan(0, n), all = _receive.AsSpan(0, p * n);
                Copy(source, sourceBase + k, n, block, ownerEnd: sourceBase + OptimizerShard.Of(whole.Length, communicator.Rank, p).Length);
                communicator.AllGather<float>(block, all);
                for (int j = 0; keep && j < p; j++)
                {
                    long start = (j * stride) + k;
                    int valid = (int)Math.Clamp(whole.Length - start, 0, n);
                    all.Slice(j * n, valid).CopyTo(Span(whole, start, valid));
                }
            }
        }

        /// <summary>Every rank's <paramref name="shard"/> into <paramref name="whole"/> on rank 0 (empty elsewhere; its
        /// length, the arena's, is broadcast from rank 0).</summary>
        public void Gather(TensorView shard, TensorView whole)
        {
            Span<long> length = [whole.Length];
            communicator.Broadcast(length, root: 0);
            if (communicator.Rank == 0)
            {
                AllGather(shard, whole, keep: true);
            }
            else
            {
                AllGather(shard, new TensorView(null, length[0]), keep: false);
            }
        }

        /// <summary>(offset within a range, floats) of each round over ranges of <paramref name="stride"/> floats; sizes the staging buffers.</summary>
        private IEnumerable<(long Offset, int Length)> Rounds(long stride)
        {
            int p = communicator.Size;
            long perRank = Math.Clamp(bucketBytes / sizeof(float) / p, OptimizerShard.Alignment, int.MaxValue / p);
            int round = (int)Math.Min(perRank, stride);
            if (_send.Length < (long)p * round)
            {
                _send = new float[p * round];
                _receive = new float[p * round];
            }

            for (long k = 0; k < stride; k += round)
            {
                yield return (k, (int)Math.Min(round, stride - k));
            }
        }

        /// <summary>Elements [<paramref name="start"/>, + destination length) of <paramref name="values"/>, zero past
        /// min(its end, <paramref name="ownerEnd"/>).</summary>
        private static void Copy(TensorView values, long start, int n, Span<float> destination, long ownerEnd = long.MaxValue)
        {
            int valid = (int)Math.Clamp(Math.Min(values.Length, ownerEnd) - start, 0, n);
            Span(values, start, valid).CopyTo(destination);
            destination[valid..].Clear();
        }

        private static Span<float> Span(TensorView values, long start, int length)
            => length == 0 ? [] : new Span<float>(values.Pointer + start, length);
    }
}
