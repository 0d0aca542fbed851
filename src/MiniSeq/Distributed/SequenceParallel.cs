// Ulysses sequence parallel (DeepSpeed-Ulysses, arXiv 2309.14509) over a communicator of P ranks. Every rank holds the
// tokens [r·T, (r+1)·T) of every row (T = N/P) and runs embedding, norms, projections, MLP and LM head on them alone,
// so every activation is 1/P of one process's. Attention needs the whole sequence: after the local q, k, v (RoPE at
// global positions r·T + t), an all-to-all gives each rank the whole sequence for H/P query heads and the kv heads
// they read; flash attention runs there, and an all-to-all returns the output to sequence shards. Backward mirrors
// it. Weight gradients are partial sums over each rank's tokens, so the data-parallel reductions (scored count, loss,
// gradient all-reduce) make every rank's update that of one process. Labels are already aligned per position in
// MiniSeq (no shift inside the model), so a shard's labels are its positions' labels and nothing is lost at shard
// boundaries. A sequence that P does not divide is padded at its end to P·⌈N/P⌉ positions (the last shard's tail):
// the padding has ignored labels and sits after every real position, so under the causal mask no real query sees it,
// its zero loss gradient reaches nothing real, and the step equals one process's on the unpadded rows (StepResult's
// token count leaves the padding out, TokenBatch.PaddedPositions). Packed rows: each shard keeps its positions'
// document ids and the pass gathers the whole rows' (LlamaPass.DocumentScope) for attention and RoPE. Sequence-chunked
// layers (and their offload) run on the local positions (SequenceChunkedLayers). Data × sequence parallel: the world
// splits into groups of P consecutive ranks; each group is one data-parallel replica holding its rows, the all-to-alls
// stay inside the group, and the reductions span the world (every rank's gradients are partial sums over its rows ×
// positions).
using MiniSeq.IO;
using MiniSeq.Model;
using MiniSeq.Training;
using MiniSeq.Training.Data;

namespace MiniSeq.Distributed;

/// <summary>
/// How Ulysses splits the heads of a model over <see cref="Ranks"/> ranks: H/P query heads each; kv heads split
/// (KvH % P == 0: KvH/P each) or replicated (P % KvH == 0: each rank gets the one kv head its query heads read).
/// </summary>
public sealed record UlyssesHeads
{
    private UlyssesHeads(int ranks, int heads, int kvHeads)
    {
        Ranks = ranks;
        LocalHeads = heads / ranks;
        KvReplicated = kvHeads % ranks != 0;
        LocalKvHeads = KvReplicated ? 1 : kvHeads / ranks;
        KvHeads = kvHeads;
    }

    /// <summary>Sequence-parallel ranks P.</summary>
    public int Ranks { get; }

    /// <summary>Query heads per rank, H/P.</summary>
    public int LocalHeads { get; }

    /// <summary>Key/value heads per rank: KvH/P when split, 1 when replicated.</summary>
    public int LocalKvHeads { get; }

    /// <summary>Whether KvH &lt; P: ranks whose query heads share a kv head each receive a copy of it.</summary>
    public bool KvReplicated { get; }

    private int KvHeads { get; }

    /// <summary>First query head of rank <paramref name="rank"/>.</summary>
    public int HeadStart(int rank) => rank * LocalHeads;

    /// <summary>First kv head of rank <paramref name="rank"/> (with GQA group g = H/KvH, the kv head of its first query head).</summary>
    public int KvHeadStart(int rank) => rank * KvHeads / Ranks;

    /// <summary>The head split of <paramref name="config"/> over <paramref name="ranks"/> ranks.</summary>
    /// <exception cref="ArgumentException">H % P ≠ 0, or neither KvH % P == 0 nor P % KvH == 0 (one line).</exception>
    public static UlyssesHeads For(LlamaConfig config, int ranks)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentOutOfRangeException.ThrowIfLessThan(ranks, 1);
        int h = config.NumAttentionHeads, kv = config.NumKeyValueHeads;
        if (h % ranks != 0)
        {
            throw new ArgumentException($"--sequence-parallel {ranks} needs the query heads to divide by {ranks}, but the model has {h}: use a number of ranks that divides {h}.");
        }

        if (kv % ranks != 0 && ranks % kv != 0)
        {
            throw new ArgumentException($"--sequence-parallel {ranks} needs the kv heads ({kv}) to divide by {ranks} (split) or {ranks} to divide by them (replicated); neither holds: use a number of ranks that divides or is a multiple of {kv}.");
        }

        return new UlyssesHeads(ranks, h, kv);
    }

    /// <summary>
    /// Floats each rank sends (and receives the same) per layer, forward and backward, for B rows of N tokens as
    /// implemented: forward q, k, v to heads and the output back (4 all-to-alls); backward rowsum(dO∘O) (H floats per
    /// position), q, k, v, dOutput to heads and dq, dk, dv back (8; checkpointing adds the forward's 4 again).
    /// Sequence-chunked layers (<paramref name="sequenceChunked"/>) send the forward's floats in per-chunk pieces:
    /// forward K, V, then each chunk's q and output; backward K, V again, q and output (recompute), dOutput and dq,
    /// then dK, dV back: the forward's 4 and the backward's 4 q-sized and 4 kv-sized with the recompute included.
    /// Each all-to-all of a (B·N/P, W) shard sends (P − 1)/P of it.
    /// </summary>
    public long FloatsPerLayer(LlamaConfig config, long rowsTimesSeqLen, bool backward, bool sequenceChunked = false)
    {
        ArgumentNullException.ThrowIfNull(config);
        long shardRows = rowsTimesSeqLen / Ranks;
        long q = shardRows * config.QueryDim, kv = shardRows * Ranks * LocalKvHeads * config.HeadDim;
        long forward = (2 * q) + (2 * kv);
        long back = sequenceChunked ? (4 * q) + (4 * kv) : (3 * q) + (4 * kv) + (shardRows * config.NumAttentionHeads);
        long total = backward ? forward + back : forward;
        return total * (Ranks - 1) / Ranks;
    }
}

/// <summary>
/// Hooks a trainer and its batch source up to a communicator for Ulysses sequence-parallel training: every rank of the
/// world one Ulysses rank, or (data × sequence parallel) the world split into groups of P consecutive ranks
/// (<see cref="Group"/>), each group a data-parallel replica that takes rows g, g + D, … of every batch (D = world / P).
/// </summary>
public static class SequenceParallel
{
    /// <summary>
    /// <paramref name="options"/> with the data-parallel reductions (scored count, loss sum, gradient all-reduce: each
    /// rank's weight gradients are partial sums over its tokens) and <see cref="TrainerOptions.SequenceParallel"/>.
    /// A group of one returns <paramref name="options"/> unchanged. <paramref name="zero"/>: ZeRO-1 over the same
    /// ranks (every rank's gradients are partial sums over its positions, reduce-scattered to the owner of each range).
    /// </summary>
    public static TrainerOptions Attach(TrainerOptions options, ICommunicator communicator, long bucketBytes = DataParallel.DefaultBucketBytes, bool zero = false)
    {
        ArgumentNullException.ThrowIfNull(communicator);
        return Attach(options, communicator, communicator, bucketBytes, zero);
    }

    /// <summary>
    /// Data × sequence parallel: the reductions (and ZeRO-1's shards) over every rank of <paramref name="world"/>,
    /// attention's all-to-alls inside <paramref name="group"/> (this rank's Ulysses group, from <see cref="Group"/>),
    /// and this replica's rows (<see cref="TrainerOptions.DataParallelRank"/> of <see cref="TrainerOptions.DataParallelRanks"/>
    /// = world / P) for the token count and the dropout masks. A group of one is data parallel alone.
    /// </summary>
    public static TrainerOptions Attach(TrainerOptions options, ICommunicator world, ICommunicator group, long bucketBytes = DataParallel.DefaultBucketBytes, bool zero = false)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(world);
        ArgumentNullException.ThrowIfNull(group);
        CheckGroup(world, group);
        if (group.Size == 1)
        {
            return DataParallel.Attach(options, world, bucketBytes, zero);
        }

        return DataParallel.Attach(options, world, bucketBytes, zero) with
        {
            SequenceParallel = group,
            DataParallelRanks = world.Size / group.Size,
            DataParallelRank = world.Rank / group.Size,
        };
    }

    /// <summary>
    /// This rank's Ulysses group of <paramref name="ranks"/> consecutive ranks of <paramref name="world"/> (world ranks
    /// g·P … g·P + P − 1 form replica g). Collective; the caller disposes it. P must divide the world's size.
    /// </summary>
    public static ICommunicator Group(ICommunicator world, int ranks)
    {
        ArgumentNullException.ThrowIfNull(world);
        if (ranks < 1 || world.Size % ranks != 0)
        {
            throw new ArgumentException($"--sequence-parallel {ranks} needs a number of MPI ranks it divides (P ranks per Ulysses group, one group per data-parallel replica); this job has {world.Size}.");
        }

        return world.Split(world.Rank / ranks, world.Rank);
    }

    /// <summary>This rank's sequence shard of <paramref name="global"/> (the source itself for a group of one).</summary>
    public static IBatchSource Shard(IBatchSource global, ICommunicator communicator)
    {
        ArgumentNullException.ThrowIfNull(communicator);
        return Shard(global, communicator, communicator);
    }

    /// <summary>Data × sequence parallel: this replica's rows of <paramref name="global"/> (<see cref="RankShardSource"/>,
    /// replica world.Rank / P of world.Size / P), then this rank's positions of them within <paramref name="group"/>.</summary>
    public static IBatchSource Shard(IBatchSource global, ICommunicator world, ICommunicator group)
    {
        ArgumentNullException.ThrowIfNull(global);
        ArgumentNullException.ThrowIfNull(world);
        ArgumentNullException.ThrowIfNull(group);
        CheckGroup(world, group);
        int replicas = world.Size / group.Size;
        IBatchSource rows = replicas == 1 ? global : new RankShardSource(global, world.Rank / group.Size, replicas);
        return group.Size == 1 ? rows : new SequenceShardSource(rows, group.Rank, group.Size);
    }

    /// <summary>This rank's part of one global batch, as <see cref="Shard(IBatchSource, ICommunicator, ICommunicator)"/>
    /// cuts every batch (for evaluation batches that do not come from a source).</summary>
    internal static TokenBatch Take(TokenBatch global, int replica, int replicas, int rank, int ranks, ref TokenBatch? rowsReuse, ref TokenBatch? shardReuse)
    {
        TokenBatch rows = replicas == 1 ? global : rowsReuse = RankShardSource.Take(global, replica, replicas, rowsReuse);
        return ranks == 1 ? rows : shardReuse = SequenceShardSource.Take(rows, rank, ranks, shardReuse);
    }

    private static void CheckGroup(ICommunicator world, ICommunicator group)
    {
        if (world.Size % group.Size != 0 || group.Rank != world.Rank % group.Size)
        {
            throw new ArgumentException($"The Ulysses group (rank {group.Rank} of {group.Size}) is not a block of consecutive ranks of the world (rank {world.Rank} of {world.Size}): make it with SequenceParallel.Group.");
        }
    }
}

/// <summary>
/// Positions [rank·T, (rank+1)·T) of every row of each batch of a global source, T = ⌈N/P⌉; positions at or past N
/// (the end of the last shard when P does not divide N) are padding: token 0, label ignored.
/// </summary>
public sealed class SequenceShardSource : IBatchSource
{
    private TokenBatch? _shard;

    /// <summary>Wraps <paramref name="global"/>.</summary>
    public SequenceShardSource(IBatchSource global, int rank, int ranks)
    {
        Global = global ?? throw new ArgumentNullException(nameof(global));
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(ranks);
        ArgumentOutOfRangeException.ThrowIfNegative(rank);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(rank, ranks);
        Rank = rank;
        Ranks = ranks;
    }

    /// <summary>The source every rank draws the whole batch from.</summary>
    public IBatchSource Global { get; }

    /// <summary>This process's rank.</summary>
    public int Rank { get; }

    /// <summary>Ranks sharing each sequence.</summary>
    public int Ranks { get; }

    /// <inheritdoc/>
    public int BatchSize => Global.BatchSize;

    /// <inheritdoc/>
    public int SeqLen => ShardLength(Global.SeqLen, Ranks);

    /// <summary>Padding positions at the end of every row (P·T − N, fewer than P).</summary>
    public int PaddedPositions => (SeqLen * Ranks) - Global.SeqLen;

    /// <inheritdoc/>
    public long Cursor => Global.Cursor;

    /// <inheritdoc/>
    public ulong? RngState => Global.RngState;

    /// <summary>Positions per shard of a sequence of <paramref name="seqLen"/> tokens over <paramref name="ranks"/> ranks: ⌈N/P⌉.</summary>
    public static int ShardLength(int seqLen, int ranks)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(seqLen);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(ranks);
        return (int)(((long)seqLen + ranks - 1) / ranks);
    }

    /// <inheritdoc/>
    public TokenBatch Next() => _shard = Take(Global.Next(), Rank, Ranks, _shard);

    /// <inheritdoc/>
    public void Restore(long cursor, ulong? rngState) => Global.Restore(cursor, rngState);

    /// <summary>
    /// Positions [rank·T, (rank+1)·T) of every row of <paramref name="batch"/>, T = ⌈N/P⌉, padded past N;
    /// <see cref="TokenBatch.PaddedPositions"/> = P·T − N on every rank. Packed rows keep their document ids (the pass
    /// gathers the whole rows' ids for attention); the padding is a document of its own.
    /// </summary>
    public static TokenBatch Take(TokenBatch batch, int rank, int ranks, TokenBatch? reuse = null)
    {
        ArgumentNullException.ThrowIfNull(batch);
        if (ranks == 1)
        {
            return batch;
        }

        int rows = batch.BatchSize, n = batch.SeqLen, t = ShardLength(n, ranks), padded = (t * ranks) - n;
        bool documents = batch.DocumentIds is not null;
        TokenBatch shard = reuse is not null && reuse.BatchSize == rows && reuse.SeqLen == t && reuse.PaddedPositions == padded && (reuse.DocumentIds is not null) == documents
            ? reuse
            : new TokenBatch(rows, t, new int[rows * t], new int[rows * t], documents ? new int[rows * t] : null) { PaddedPositions = padded };
        int first = rank * t, real = Math.Clamp(n - first, 0, t); // positions of this shard before the padding
        for (int b = 0; b < rows; b++)
        {
            int from = (b * n) + first, to = b * t;
            batch.InputIds.AsSpan(from, real).CopyTo(shard.InputIds.AsSpan(to, real));
            batch.Labels.AsSpan(from, real).CopyTo(shard.Labels.AsSpan(to, real));
            shard.InputIds.AsSpan(to + real, t - real).Clear();
            shard.Labels.AsSpan(to + real, t - real).Fill(TokenBatch.IgnoreIndex);
            if (batch.DocumentIds is { } ids)
            {
                // The padding follows the row's last document as a document of its own (any other id).
                int last = ids[(b * n) + n - 1];
                ids.AsSpan(from, real).CopyTo(shard.DocumentIds!.AsSpan(to, real));
                shard.DocumentIds!.AsSpan(to + real, t - real).Fill(last == -1 ? -2 : -1);
            }
        }

        return shard;
    }
}
