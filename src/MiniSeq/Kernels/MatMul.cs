// STUB: replaced by the packed, multi-threaded AVX-512 GEMM.
namespace MiniSeq.Kernels;

/// <summary>Single-precision matrix multiply (row-major BLAS semantics).</summary>
public static unsafe class MatMul
{
    /// <summary>
    /// C (m×n, row stride ldc) = beta·C + alpha·op(A)·op(B). op(A) is m×k: A stored m×k (lda ≥ k), or if
    /// <paramref name="transA"/> A stored k×m (lda ≥ m). op(B) is k×n: B stored k×n (ldb ≥ n), or if
    /// <paramref name="transB"/> B stored n×k (ldb ≥ k). beta must be 0 (C is overwritten and never read) or 1.
    /// Multi-threaded over output tiles when large; runs on the calling thread inside a KernelThreads job.
    /// </summary>
    public static void Gemm(bool transA, bool transB, int m, int n, int k, float alpha, float* a, int lda, float* b, int ldb, float beta, float* c, int ldc)
        => throw new NotImplementedException();
}
