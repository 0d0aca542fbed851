// STUB: replaced by the SIMD kernels.
using MiniSeq.Tensors;

namespace MiniSeq.Kernels;

/// <summary>cos/sin table of rotary embeddings for positions [0, MaxPositions): (MaxPositions, D/2) each.</summary>
public sealed unsafe class RopeTable : IDisposable
{
    /// <summary>Builds the table: inv_freq[j] = 1/θ^(2j/D) in float32 (as HF), angle = float(pos)·inv_freq[j].</summary>
    public RopeTable(int headDim, double theta, int maxPositions, MemoryLedger? ledger = null)
        => throw new NotImplementedException();

    /// <summary>Head dimension D.</summary>
    public int HeadDim { get; }

    /// <summary>Positions covered.</summary>
    public int MaxPositions { get; }

    /// <summary>Frees the table.</summary>
    public void Dispose()
    {
    }
}

/// <summary>Rotary position embedding, Hugging Face <c>rotate_half</c> convention.</summary>
public static unsafe class Rope
{
    /// <summary>
    /// In place on x (rows, heads·D); row r is at position positionOffset + r % seqLen. With x1 = x[:D/2], x2 = x[D/2:]:
    /// x1' = x1·cos − x2·sin, x2' = x2·cos + x1·sin.
    /// </summary>
    public static void Forward(float* x, int rows, int seqLen, int heads, RopeTable table, int positionOffset)
        => throw new NotImplementedException();

    /// <summary>In place on dx: applies the transposed rotation (dx1' = dx1·cos + dx2·sin, dx2' = dx2·cos − dx1·sin).</summary>
    public static void Backward(float* dx, int rows, int seqLen, int heads, RopeTable table, int positionOffset)
        => throw new NotImplementedException();
}
