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
// layers (and their offload) run on the local positions (SequenceChunkedLayers). Deliberately not yet: data parallel ×
// sequence parallel in one run.
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
    /// implemented: forward q, k, v to heads and the output back (4 all-to-alls); backward q, k, v, output, dOutput to
    /// heads and dq, dk, dv back (8; checkpointing adds the forward's 4 again). Sequence-chunked layers send the same
    /// floats in per-chunk pieces: forward K, V, then each chunk's q and output; backward K, V again, q and output
    /// (recompute), dOutput and dq, then dK, dV back: the forward's 4 and the backward's 8 with the recompute included.
    /// Each all-to-all of a (B·N/P, W) shard sends (P − 1)/P of it.
    /// </summary>
    public long FloatsPerLayer(LlamaConfig config, long rowsTimesSeqLen, bool backward)
    {
        ArgumentNullException.ThrowIfNull(config);
        long shardRows = rowsTimesSeqLen / Ranks;
        long q = shardRows * config.QueryDim, kv = shardRows * Ranks * LocalKvHeads * config.HeadDim;
        long forward = (2 * q) + (2 * kv);
        long total = backward ? forward + (4 * q) + (4 * kv) : forward;
        return total * (Ranks - 1) / Ranks;
    }
}

/// <summary>Hooks a trainer and its batch source up to a communicator for Ulysses sequence-parallel training.</summary>
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
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(communicator);
        if (communicator.Size == 1)
        {
            return options;
        }

        return DataParallel.Attach(options, communicator, bucketBytes, zero) with { SequenceParallel = communicator };
    }

    /// <summary>This rank's sequence shard of <paramref name="global"/> (the source itself for a group of one).</summary>
    public static IBatchSource Shard(IBatchSource global, ICommunicator communicator)
    {
        ArgumentNullException.ThrowIfNull(global);
        ArgumentNullException.ThrowIfNull(communicator);
        return communicator.Size == 1 ? global : new SequenceShardSource(global, communicator.Rank, communicator.Size);
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
