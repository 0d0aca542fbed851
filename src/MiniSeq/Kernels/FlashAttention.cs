// STUB: replaced by the tiled flash attention (forward and backward).
namespace MiniSeq.Kernels;

/// <summary>Causal grouped-query attention with O(N·D) memory: no T×T matrix is ever allocated.</summary>
public static unsafe class FlashAttention
{
    /// <summary>
    /// output = softmax(q·kᵀ/√D + causal mask)·v per (batch, head); query head h reads kv head h / (H / KvH).
    /// q (B·T, H·D), k and v (B·T, KvH·D), row = b·T + t. Overwrites output (B·T, H·D) and lse (B, H, T), the
    /// natural-log log-sum-exp of each scaled score row, which backward needs.
    /// </summary>
    public static void Forward(float* q, float* k, float* v, int batchSize, int seqLen, int headCount, int kvHeadCount, int headDim, float* output, float* lse)
        => throw new NotImplementedException();

    /// <summary>Recomputes scores per tile from q, k and lse; accumulates into dq (B·T, H·D), dk and dv (B·T, KvH·D).</summary>
    public static void Backward(float* dOutput, float* q, float* k, float* v, float* output, float* lse, int batchSize, int seqLen, int headCount, int kvHeadCount, int headDim, float* dq, float* dk, float* dv)
        => throw new NotImplementedException();
}
