// Where a training run's batches come from. A source hands out fixed-shape batches one optimizer step at a time and
// can say (and be told) where it is, so that a saved run resumes on exactly the batch it would have seen next.
using MiniSeq.IO;

namespace MiniSeq.Training.Data;

/// <summary>A stream of token batches of one shape.</summary>
public interface IBatchSource
{
    /// <summary>Rows per batch.</summary>
    int BatchSize { get; }

    /// <summary>Tokens per row.</summary>
    int SeqLen { get; }

    /// <summary>Batches handed out so far.</summary>
    long Cursor { get; }

    /// <summary>The state of the source's random generator, or null if it draws none.</summary>
    ulong? RngState { get; }

    /// <summary>The next batch.</summary>
    TokenBatch Next();

    /// <summary>Continues from a saved position (<see cref="Cursor"/>, <see cref="RngState"/>).</summary>
    void Restore(long cursor, ulong? rngState);
}
