// Packing: documents are laid end to end (each already ends with EOS) into rows of SeqLen tokens, B rows per batch,
// with a document id per token so that attention stays inside each document and RoPE restarts at each (the pass's
// document mask). A document that does not fit in what is left of a row continues in the next row as a new document
// piece; documents longer than a row are split that way too, or dropped with DropLong. No padding, no token wasted.
// Labels: the next token of the same document (even across a row boundary), if it may be a target (chat data:
// assistant turns only); the last token of a document is not scored (its successor belongs to another document).
// Order: an endless stream of epochs, each a seeded shuffle of the documents (epoch e uses seed and e only), so the
// batch at any cursor is a pure function of (documents, seed, cursor): resume needs the cursor alone, no RNG state.
// The validation set is one unshuffled pass, the last batch padded with unscored tokens.
using MiniSeq.IO;
using MiniSeq.Model;

namespace MiniSeq.Training.Data;

/// <summary>What packing did with the documents.</summary>
/// <param name="Documents">Documents packed (per epoch).</param>
/// <param name="Tokens">Tokens per epoch.</param>
/// <param name="LongDocuments">Documents longer than a row: split over rows, or dropped with DropLong.</param>
/// <param name="Dropped">Whether the long documents were dropped.</param>
/// <param name="EmptyDocuments">Documents without tokens (skipped).</param>
public sealed record PackingStats(long Documents, long Tokens, long LongDocuments, bool Dropped, long EmptyDocuments)
{
    /// <summary>One line for the console.</summary>
    public string Describe(int seqLen) => FormattableString.Invariant(
        $"{Documents:N0} documents, {Tokens:N0} tokens per epoch; {LongDocuments:N0} longer than {seqLen} tokens {(Dropped ? "dropped (--drop-long)" : "split over rows")}{(EmptyDocuments > 0 ? $"; {EmptyDocuments:N0} empty skipped" : "")}");
}

/// <summary>Batches of packed rows with document ids, from a set of documents.</summary>
public sealed class PackedSource : IBatchSource
{
    private readonly IDocumentSet _documents;
    private readonly long[] _members;   // the documents packed, in their unshuffled order
    private readonly bool _shuffle;
    private readonly bool _wrap;        // endless epochs (training) or one pass, padded (validation)
    private readonly ulong _seed;
    private readonly int[] _ids, _labels, _documentIds;
    private long _epoch = -1;
    private long[] _order = [];
    private long[] _prefix = [];        // _prefix[i] = tokens of _order[..i]

    /// <summary>Packs <paramref name="documents"/> (or the listed <paramref name="subset"/> of them).</summary>
    /// <param name="documents">The tokenized documents.</param>
    /// <param name="subset">Indices of the documents to use, or null for all.</param>
    /// <param name="batchSize">Rows per batch.</param>
    /// <param name="seqLen">Tokens per row.</param>
    /// <param name="seed">Shuffle seed (ignored without <paramref name="shuffle"/>).</param>
    /// <param name="shuffle">Shuffle the documents every epoch (training) or keep their order (validation).</param>
    /// <param name="dropLong">Skip documents longer than <paramref name="seqLen"/> instead of splitting them.</param>
    /// <param name="endless">Start the next epoch when one ends (training); otherwise pad the last batch and stop.</param>
    /// <param name="documentMask">Hand out document ids with every batch (attention per document, RoPE restarting);
    /// false: each row attends across its documents like one sequence (labels still stop at document ends).</param>
    public PackedSource(IDocumentSet documents, IReadOnlyList<long>? subset, int batchSize, int seqLen, ulong seed, bool shuffle = true, bool dropLong = false, bool endless = true, bool documentMask = true)
    {
        _documents = documents ?? throw new ArgumentNullException(nameof(documents));
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batchSize);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(seqLen);
        BatchSize = batchSize;
        SeqLen = seqLen;
        _seed = seed;
        _shuffle = shuffle;
        _wrap = endless;
        long longDocs = 0, empty = 0, tokens = 0;
        var members = new List<long>();
        foreach (long d in subset ?? LongRange(documents.DocumentCount))
        {
            int length = documents.Document(d).Length;
            if (length == 0)
            {
                empty++;
                continue;
            }

            if (length > seqLen)
            {
                longDocs++;
                if (dropLong)
                {
                    continue;
                }
            }

            members.Add(d);
            tokens += length;
        }

        if (members.Count == 0)
        {
            throw new InvalidDataException(longDocs > 0 && dropLong
                ? $"Every document is longer than --seq-len {seqLen} and --drop-long skips them all: raise --seq-len or drop --drop-long."
                : "The data holds no tokens: nothing to pack.");
        }

        _members = [.. members];
        Stats = new PackingStats(_members.LongLength, tokens, longDocs, dropLong, empty);
        long rowTokens = (long)batchSize * seqLen;
        _ids = new int[rowTokens];
        _labels = new int[rowTokens];
        _documentIds = new int[rowTokens];
        Batch = new TokenBatch(batchSize, seqLen, _ids, _labels, documentMask ? _documentIds : null);
    }

    /// <summary>Counts of what was packed.</summary>
    public PackingStats Stats { get; }

    /// <summary>Batches per epoch (rounded up).</summary>
    public long BatchesPerEpoch => (Stats.Tokens + ((long)BatchSize * SeqLen) - 1) / ((long)BatchSize * SeqLen);

    /// <inheritdoc/>
    public int BatchSize { get; }

    /// <inheritdoc/>
    public int SeqLen { get; }

    /// <inheritdoc/>
    public long Cursor { get; private set; }

    /// <inheritdoc/>
    public ulong? RngState => null;

    /// <summary>The one buffer every batch is written into (valid until the next call).</summary>
    private TokenBatch Batch { get; }

    /// <summary>The batch at <see cref="Cursor"/>; then advances. Without <c>endless</c>, batches past the single
    /// epoch are refused (see <see cref="BatchesPerEpoch"/>).</summary>
    public TokenBatch Next()
    {
        if (!_wrap && Cursor >= BatchesPerEpoch)
        {
            throw new InvalidOperationException($"The validation data holds {BatchesPerEpoch} batches; batch {Cursor} was asked for.");
        }

        Fill(Cursor * BatchSize * SeqLen);
        Cursor++;
        return Batch;
    }

    /// <summary>The first epoch's batches in order (validation: every document once, the last batch padded). Each is
    /// the shared buffer, valid until the next one is produced.</summary>
    public IEnumerable<TokenBatch> FirstEpoch()
    {
        for (long c = 0; c < BatchesPerEpoch; c++)
        {
            Restore(c, null);
            yield return Next();
        }
    }

    /// <inheritdoc/>
    public void Restore(long cursor, ulong? rngState)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(cursor);
        Cursor = cursor;
    }

    /// <summary>Writes the B·T tokens of the stream from <paramref name="position"/> into the batch buffers, one document
    /// piece (the part of a document inside one row) at a time.</summary>
    private void Fill(long position)
    {
        long epoch = position / Stats.Tokens;
        long offset = position % Stats.Tokens;
        UseEpoch(epoch);
        int slot = Array.BinarySearch(_prefix, offset);
        int i = slot >= 0 ? slot : ~slot - 1; // document of the order holding the offset
        int within = (int)(offset - _prefix[i]);
        bool ended = false; // validation: the pass is over, pad
        for (int row = 0; row < _ids.Length; row += SeqLen)
        {
            int t = 0, documentInRow = 0;
            while (t < SeqLen && !ended)
            {
                ReadOnlySpan<int> doc = _documents.Document(_order[i]);
                ReadOnlySpan<byte> trainable = _documents.Trainable(_order[i]);
                int n = Math.Min(SeqLen - t, doc.Length - within);
                int at = row + t;
                doc.Slice(within, n).CopyTo(_ids.AsSpan(at, n));
                _documentIds.AsSpan(at, n).Fill(documentInRow);

                // Label of token k: token k + 1 of the same document, if it may be a target.
                Span<int> labels = _labels.AsSpan(at, n);
                doc.Slice(within + 1, Math.Min(n, doc.Length - within - 1)).CopyTo(labels);
                if (within + n == doc.Length)
                {
                    labels[^1] = TokenBatch.IgnoreIndex; // the document's last token
                }

                if (!trainable.IsEmpty)
                {
                    for (int k = 0; k < n; k++)
                    {
                        int next = within + k + 1;
                        if (next < doc.Length && trainable[next] == 0)
                        {
                            labels[k] = TokenBatch.IgnoreIndex;
                        }
                    }
                }

                t += n;
                within += n;
                if (within == doc.Length)
                {
                    within = 0;
                    documentInRow++;
                    if (++i == _order.Length)
                    {
                        i = 0;
                        if (_wrap)
                        {
                            UseEpoch(++epoch);
                        }
                        else
                        {
                            ended = true;
                        }
                    }
                }
            }

            if (t < SeqLen)
            {
                // Padding after the validation pass: unscored tokens in a document of their own.
                _ids.AsSpan(row + t, SeqLen - t).Clear();
                _labels.AsSpan(row + t, SeqLen - t).Fill(TokenBatch.IgnoreIndex);
                _documentIds.AsSpan(row + t, SeqLen - t).Fill(documentInRow);
            }
        }
    }

    /// <summary>Makes <paramref name="epoch"/>'s document order (and its token prefix sums) current.</summary>
    private void UseEpoch(long epoch)
    {
        if (epoch == _epoch)
        {
            return;
        }

        _order = (long[])_members.Clone();
        if (_shuffle)
        {
            // Fisher–Yates from a generator seeded by (seed, epoch) only.
            var rng = new DeterministicRandom(_seed ^ (0x9E3779B97F4A7C15UL * (ulong)(epoch + 1)));
            for (long k = _order.LongLength - 1; k > 0; k--)
            {
                long j = (long)(rng.NextDouble() * (k + 1));
                (_order[k], _order[j]) = (_order[j], _order[k]);
            }
        }

        _prefix = new long[_order.Length + 1];
        for (int k = 0; k < _order.Length; k++)
        {
            _prefix[k + 1] = _prefix[k] + _documents.Document(_order[k]).Length;
        }

        _epoch = epoch;
    }

    private static IEnumerable<long> LongRange(long count)
    {
        for (long i = 0; i < count; i++)
        {
            yield return i;
        }
    }
}
