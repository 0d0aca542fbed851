// STUB: replaced by the SIMD kernels.
namespace MiniSeq.Kernels;

/// <summary>RMSNorm as in Hugging Face Llama.</summary>
public static unsafe class RmsNorm
{
    /// <summary>output[r, i] = x[r, i]·rstd[r]·weight[i], rstd[r] = 1/√(mean_i x[r, i]² + eps). Overwrites output (rows, dim) and rstd (rows).</summary>
    public static void Forward(float* x, float* weight, int rows, int dim, float eps, float* output, float* rstd)
        => throw new NotImplementedException();

    /// <summary>Accumulates into dx (rows, dim) and dWeight (dim).</summary>
    public static void Backward(float* dOutput, float* x, float* weight, float* rstd, int rows, int dim, float* dx, float* dWeight)
        => throw new NotImplementedException();
}
