// STUB: replaced by the SIMD kernels.
namespace MiniSeq.Kernels;

/// <summary>Token embedding lookup.</summary>
public static unsafe class Embedding
{
    /// <summary>output[r, :] = table[tokens[r], :]. Overwrites output (count, dim). Token ids must be in range (caller validates).</summary>
    public static void Forward(int* tokens, int count, float* table, int dim, float* output)
        => throw new NotImplementedException();

    /// <summary>Accumulates dTable[tokens[r], :] += dOutput[r, :], deterministically (rows in order per token).</summary>
    public static void Backward(float* dOutput, int* tokens, int count, int dim, float* dTable)
        => throw new NotImplementedException();
}
