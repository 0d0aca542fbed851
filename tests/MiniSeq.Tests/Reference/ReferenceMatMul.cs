// Scalar reference GEMM: the obvious triple loop with double accumulation, the oracle for MatMul tests.
// Deliberately not: fast, blocked, vectorised or parallel.
using System.Runtime.CompilerServices;

namespace MiniSeq.Kernels.Reference;

/// <summary>Obviously-correct single-precision GEMM (row-major BLAS semantics, same contract as MatMul.Gemm).</summary>
public static unsafe class ReferenceMatMul
{
    /// <summary>
    /// C (m×n) = beta·C + alpha·op(A)·op(B) with the products summed in double; beta = 0 never reads C.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Gemm(bool transA, bool transB, int m, int n, int k, float alpha, float* a, int lda, float* b, int ldb, float beta, float* c, int ldc)
    {
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < n; j++)
            {
                double sum = 0;
                for (int p = 0; p < k; p++)
                {
                    float aip = transA ? a[((long)p * lda) + i] : a[((long)i * lda) + p];
                    float bpj = transB ? b[((long)j * ldb) + p] : b[((long)p * ldb) + j];
                    sum += (double)aip * bpj;
                }

                float* cij = c + ((long)i * ldc) + j;
                double result = alpha * sum;
                if (beta != 0f)
                {
                    result += (double)beta * *cij;
                }

                *cij = (float)result;
            }
        }
    }
}
