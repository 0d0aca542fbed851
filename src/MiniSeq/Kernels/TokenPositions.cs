// Where the tokens of each row sit: RoPE position = Offset + index within the row (sequence parallelism hands a rank
// the tokens from Offset on), and which tokens may attend to which (document boundaries of packed rows, cu_seqlens
// style). Today's behaviour is the special case: offset 0, one document per row. The kernels take this as input so
// that packing and sequence sharding plug in without another signature change; document masking itself is not
// implemented yet and is refused with a clear message rather than silently ignored.
namespace MiniSeq.Kernels;

/// <summary>Positions and document boundaries of the token rows of one pass.</summary>
public sealed record TokenPositions
{
    /// <summary>Offset 0, each row one document.</summary>
    public static TokenPositions Contiguous { get; } = new();

    /// <summary>RoPE position of the first token of every row (global position of a sequence shard).</summary>
    public int Offset { get; init; }

    /// <summary>
    /// Optional cu_seqlens-style document starts per row: for row b, the token indices where a new document begins,
    /// ascending, first entry 0 (null: the whole row is one document). Attention never crosses a boundary and RoPE
    /// positions restart at each one.
    /// </summary>
    public IReadOnlyList<int[]>? DocumentStarts { get; init; }

    /// <summary>Whether every row is a single document (no masking beyond causal).</summary>
    public bool IsSingleDocument => DocumentStarts is null || DocumentStarts.All(starts => starts.Length <= 1);

    /// <summary>Throws unless the kernels can honour these positions today (any offset; one document per row).</summary>
    public void RequireSupported(int batchSize, int seqLen)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(Offset);
        if (DocumentStarts is not null)
        {
            if (DocumentStarts.Count != batchSize)
            {
                throw new ArgumentException($"DocumentStarts has {DocumentStarts.Count} rows; the pass has {batchSize}.");
            }

            foreach (int[] starts in DocumentStarts)
            {
                if (starts.Length > 0 && (starts[0] != 0 || starts.Zip(starts.Skip(1)).Any(p => p.Second <= p.First) || starts[^1] >= seqLen))
                {
                    throw new ArgumentException($"Document starts must begin at 0, ascend strictly and lie below the row length {seqLen}.");
                }
            }
        }

        if (!IsSingleDocument)
        {
            throw new NotSupportedException("Document masking of packed rows is not implemented yet: give one document per row.");
        }
    }
}
