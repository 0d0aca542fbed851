// Packed rows: several documents share a row, told apart by a document id per token (the token file's
// "document_ids"). A document begins wherever the id changes within a row. The kernels take the layout as one int
// per token — where that token's document begins within its row — which is all attention (first visible key) and
// RoPE (position = index − start) need; cu_seqlens in Hugging Face's terms, per token so any row is O(1) to query.
namespace MiniSeq.Kernels;

/// <summary>Document boundaries of packed token rows.</summary>
public static class DocumentLayout
{
    /// <summary>Whether some row of <paramref name="documentIds"/> (B·T) holds more than one document.</summary>
    public static bool HasBoundaries(ReadOnlySpan<int> documentIds, int batchSize, int seqLen)
    {
        CheckShape(documentIds.Length, batchSize, seqLen);
        for (int b = 0; b < batchSize; b++)
        {
            ReadOnlySpan<int> row = documentIds.Slice(b * seqLen, seqLen);
            if (row.IndexOfAnyExcept(row[0]) >= 0)
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>starts[b·T + t] = the index within row b where token t's document begins (0 for the first document).</summary>
    public static void Starts(ReadOnlySpan<int> documentIds, int batchSize, int seqLen, Span<int> starts)
    {
        CheckShape(documentIds.Length, batchSize, seqLen);
        CheckShape(starts.Length, batchSize, seqLen);
        for (int b = 0; b < batchSize; b++)
        {
            int row = b * seqLen;
            int start = 0;
            for (int t = 0; t < seqLen; t++)
            {
                if (t > 0 && documentIds[row + t] != documentIds[row + t - 1])
                {
                    start = t;
                }

                starts[row + t] = start;
            }
        }
    }

    private static void CheckShape(int length, int batchSize, int seqLen)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batchSize);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(seqLen);
        if (length != (long)batchSize * seqLen)
        {
            throw new ArgumentException($"A batch of {batchSize} × {seqLen} needs {(long)batchSize * seqLen} per-token entries, got {length}.");
        }
    }
}
