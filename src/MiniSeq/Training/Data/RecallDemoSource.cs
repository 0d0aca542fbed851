// The built-in demo's data as a batch source: fresh associative-recall sequences every step from a seeded generator.
using MiniSeq.IO;
using MiniSeq.Model;

namespace MiniSeq.Training.Data;

/// <summary>Endless associative-recall batches (see <see cref="AssociativeRecall"/>).</summary>
public sealed class RecallDemoSource(AssociativeRecall task, int batchSize, ulong seed) : IBatchSource
{
    private DeterministicRandom _rng = new(seed);
    private TokenBatch? _batch;

    /// <summary>The task.</summary>
    public AssociativeRecall Task { get; } = task ?? throw new ArgumentNullException(nameof(task));

    /// <inheritdoc/>
    public int BatchSize { get; } = batchSize > 0 ? batchSize : throw new ArgumentOutOfRangeException(nameof(batchSize));

    /// <inheritdoc/>
    public int SeqLen => Task.SeqLen;

    /// <inheritdoc/>
    public long Cursor { get; private set; }

    /// <inheritdoc/>
    public ulong? RngState => _rng.State;

    /// <summary>The next batch: one buffer refilled every step (valid until the next call), so that training
    /// allocates nothing per step and the managed heap does not grow past what the planner measured.</summary>
    public TokenBatch Next()
    {
        Cursor++;
        if (_batch is null)
        {
            _batch = Draw(Task, _rng, BatchSize);
        }
        else
        {
            Task.Generate(_rng, BatchSize, _batch.InputIds, _batch.Labels);
        }

        return _batch;
    }

    /// <inheritdoc/>
    public void Restore(long cursor, ulong? rngState)
    {
        Cursor = cursor;
        _rng = new DeterministicRandom(rngState ?? throw new ArgumentNullException(nameof(rngState), "The demo source needs its generator state."));
    }

    /// <summary><paramref name="rows"/> fresh sequences from <paramref name="rng"/>.</summary>
    public static TokenBatch Draw(AssociativeRecall task, DeterministicRandom rng, int rows)
    {
        ArgumentNullException.ThrowIfNull(task);
        var ids = new int[rows * task.SeqLen];
        var labels = new int[rows * task.SeqLen];
        task.Generate(rng, rows, ids, labels);
        return new TokenBatch(rows, task.SeqLen, ids, labels);
    }
}
