// A token file as a batch source: the same batch every step (full-batch training on what the file holds). Streaming
// data with packing and shuffling is the data pipeline's source.
using MiniSeq.IO;

namespace MiniSeq.Training.Data;

/// <summary>One fixed batch, handed out every step.</summary>
public sealed class TokenFileSource(TokenBatch batch) : IBatchSource
{
    private readonly TokenBatch _batch = batch ?? throw new ArgumentNullException(nameof(batch));

    /// <summary>Loads and validates a token file against <paramref name="vocabSize"/>.</summary>
    public static TokenFileSource Load(string path, int vocabSize)
    {
        TokenBatch batch = TokenBatch.Load(path);
        batch.Validate(vocabSize, path);
        return new TokenFileSource(batch);
    }

    /// <inheritdoc/>
    public int BatchSize => _batch.BatchSize;

    /// <inheritdoc/>
    public int SeqLen => _batch.SeqLen;

    /// <inheritdoc/>
    public long Cursor { get; private set; }

    /// <inheritdoc/>
    public ulong? RngState => null;

    /// <inheritdoc/>
    public TokenBatch Next()
    {
        Cursor++;
        return _batch;
    }

    /// <inheritdoc/>
    public void Restore(long cursor, ulong? rngState) => Cursor = cursor;
}
