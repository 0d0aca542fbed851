// One rank's share of a data-parallel batch: every rank draws the same global batch of B rows from its own copy of
// the source (same files, same seed, same cursor) and keeps rows r, r + P, r + 2P, … — so P ranks of B/P rows together
// see exactly the rows one process would, whatever P is. Position and RNG state are the global source's, so a
// checkpoint resumes on every rank from the same batch. Deliberately not: uneven shards (B % P must be 0).
using MiniSeq.IO;

namespace MiniSeq.Training.Data;

/// <summary>Rows <c>rank, rank + ranks, …</c> of each batch of a global source.</summary>
public sealed class RankShardSource : IBatchSource
{
    private TokenBatch? _shard;

    /// <summary>Wraps <paramref name="global"/>; its batch size must be a multiple of <paramref name="ranks"/>.</summary>
    /// <exception cref="ArgumentException">The batch does not divide evenly over the ranks.</exception>
    public RankShardSource(IBatchSource global, int rank, int ranks)
    {
        Global = global ?? throw new ArgumentNullException(nameof(global));
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(ranks);
        if ((uint)rank >= (uint)ranks)
        {
            throw new ArgumentOutOfRangeException(nameof(rank), $"Rank {rank} is not one of {ranks}.");
        }

        CheckDivisible(global.BatchSize, ranks);
        Rank = rank;
        Ranks = ranks;
    }

    /// <summary>The source every rank draws the whole batch from.</summary>
    public IBatchSource Global { get; }

    /// <summary>This process's rank.</summary>
    public int Rank { get; }

    /// <summary>Number of ranks sharing each batch.</summary>
    public int Ranks { get; }

    /// <inheritdoc/>
    public int BatchSize => Global.BatchSize / Ranks;

    /// <inheritdoc/>
    public int SeqLen => Global.SeqLen;

    /// <inheritdoc/>
    public long Cursor => Global.Cursor;

    /// <inheritdoc/>
    public ulong? RngState => Global.RngState;

    /// <summary>Throws the one-line error of a batch of <paramref name="rows"/> that <paramref name="ranks"/> cannot share evenly.</summary>
    public static void CheckDivisible(int rows, int ranks)
    {
        if (rows % ranks != 0)
        {
            throw new ArgumentException($"data parallel over {ranks} ranks needs a batch whose rows divide by {ranks}, but the batch has {rows} rows: change the rows (--batch, or the token file's) or the number of ranks (mpirun -np).");
        }
    }

    /// <summary>This rank's rows of the global source's next batch (one buffer, refilled every call).</summary>
    public TokenBatch Next() => _shard = Take(Global.Next(), Rank, Ranks, _shard);

    /// <inheritdoc/>
    public void Restore(long cursor, ulong? rngState) => Global.Restore(cursor, rngState);

    /// <summary>
    /// Rows <paramref name="rank"/>, <paramref name="rank"/> + <paramref name="ranks"/>, … of <paramref name="batch"/>,
    /// written into <paramref name="reuse"/> when it has the right shape (else into a new batch).
    /// </summary>
    public static TokenBatch Take(TokenBatch batch, int rank, int ranks, TokenBatch? reuse = null)
    {
        ArgumentNullException.ThrowIfNull(batch);
        CheckDivisible(batch.BatchSize, ranks);
        int rows = batch.BatchSize / ranks, t = batch.SeqLen;
        if (ranks == 1)
        {
            return batch;
        }

        bool fits = reuse is not null && reuse.BatchSize == rows && reuse.SeqLen == t && (reuse.DocumentIds is null) == (batch.DocumentIds is null);
        TokenBatch shard = fits ? reuse! : new TokenBatch(rows, t, new int[rows * t], new int[rows * t], batch.DocumentIds is null ? null : new int[rows * t]);
        for (int i = 0; i < rows; i++)
        {
            int from = ((i * ranks) + rank) * t, to = i * t;
            batch.InputIds.AsSpan(from, t).CopyTo(shard.InputIds.AsSpan(to, t));
            batch.Labels.AsSpan(from, t).CopyTo(shard.Labels.AsSpan(to, t));
            batch.DocumentIds?.AsSpan(from, t).CopyTo(shard.DocumentIds!.AsSpan(to, t));
        }

        return shard;
    }
}
