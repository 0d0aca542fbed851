// Where the tokens of each row sit: RoPE position = Offset + index within the row (sequence parallelism hands a rank
// the tokens from Offset on). Document boundaries of packed rows change from batch to batch, so they are not part of
// the plan: each pass call takes the batch's document ids (LlamaPass, DocumentLayout).
namespace MiniSeq.Kernels;

/// <summary>The placement of the token rows of one pass within their sequences.</summary>
public sealed record TokenPositions
{
    /// <summary>Offset 0.</summary>
    public static TokenPositions Contiguous { get; } = new();

    /// <summary>RoPE position of the first token of every row (global position of a sequence shard).</summary>
    public int Offset { get; init; }

    /// <summary>Throws unless the offset is usable.</summary>
    public void RequireSupported(int batchSize, int seqLen)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(Offset);
        if ((long)Offset + seqLen > int.MaxValue)
        {
            throw new ArgumentOutOfRangeException(nameof(seqLen), $"Positions up to {(long)Offset + seqLen} do not fit in 32 bits.");
        }
    }
}
