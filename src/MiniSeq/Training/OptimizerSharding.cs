// ZeRO-1 as the trainer sees it: which contiguous range of the flat trainable arena this rank owns (it keeps optimizer
// state for that range only and updates only those weights), and the collectives that make the rest work — gradients
// reduce-scattered to their owners, a sum of the owners' squared-norm parts for clipping, the updated weights
// all-gathered, and the state gathered to one rank for a checkpoint. The collectives come from the distributed layer
// (DataParallel.Attach with zero: true); this file knows nothing about communicators. Deliberately not: ZeRO-2/3
// (sharded gradients or weights), uneven shards by tensor boundaries.
using MiniSeq.Tensors;

namespace MiniSeq.Training;

/// <summary>A contiguous range [<see cref="Start"/>, <see cref="End"/>) of the flat trainable arena, in floats.</summary>
public readonly record struct OptimizerShard(long Start, long End)
{
    /// <summary>Shard boundaries are multiples of this many floats (64 bytes: one cache line, one Vector512).</summary>
    public const int Alignment = 16;

    /// <summary>Floats in the range.</summary>
    public long Length => End - Start;

    /// <summary>
    /// Floats every shard spans before clipping to <paramref name="length"/>: ⌈<paramref name="length"/> / P⌉ rounded
    /// up to <see cref="Alignment"/>. The last shards may be shorter, or empty, when that overshoots.
    /// </summary>
    public static long Stride(long length, int ranks)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(ranks);
        long perRank = (length + ranks - 1) / ranks;
        return Math.Max(Alignment, (perRank + Alignment - 1) / Alignment * Alignment);
    }

    /// <summary>Rank <paramref name="rank"/>'s range of a flat arena of <paramref name="length"/> floats split over <paramref name="ranks"/>.</summary>
    public static OptimizerShard Of(long length, int rank, int ranks)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(rank);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(rank, ranks);
        long stride = Stride(length, ranks);
        return new OptimizerShard(Math.Min(length, rank * stride), Math.Min(length, (rank + 1) * stride));
    }
}

/// <summary>
/// The hooks of a ZeRO-1 step (<see cref="TrainerOptions.Sharding"/>). Every action is collective: every rank calls it
/// with the same lengths. Ranges follow <see cref="OptimizerShard.Of"/>.
/// </summary>
public sealed record OptimizerSharding
{
    /// <summary>This process's index in the group.</summary>
    public required int Rank { get; init; }

    /// <summary>Number of shards (processes).</summary>
    public required int Ranks { get; init; }

    /// <summary>Sums the whole gradient arena over the ranks into each rank's own range (the rest of the arena is left
    /// holding this rank's local gradients).</summary>
    public required Action<TensorView> ReduceScatterGradients { get; init; }

    /// <summary>Sums one number over the ranks (the squared gradient norm's parts).</summary>
    public required Func<double, double> Sum { get; init; }

    /// <summary>Copies each rank's range of the weights (the whole trainable arena) to every other rank.</summary>
    public required Action<TensorView> AllGatherValues { get; init; }

    /// <summary>Gathers the ranks' shards (arg 1: this rank's range, in rank order) into the whole arena on rank 0
    /// (arg 2: the flat length there; empty on the other ranks).</summary>
    public required Action<TensorView, TensorView> GatherToRoot { get; init; }

    /// <summary>This rank's range of a trainable arena of <paramref name="length"/> floats.</summary>
    public OptimizerShard ShardOf(long length) => OptimizerShard.Of(length, Rank, Ranks);
}
