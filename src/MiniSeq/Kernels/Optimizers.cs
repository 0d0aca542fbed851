// STUB: replaced by the SIMD kernels.
namespace MiniSeq.Kernels;

/// <summary>Fused optimizer updates over flat parameter/gradient/state arrays.</summary>
public static unsafe class OptimizerKernels
{
    /// <summary>
    /// PyTorch AdamW (step ≥ 1): p *= 1 − lr·wd; m = β1·m + (1−β1)·g; v = β2·v + (1−β2)·g²;
    /// p −= (lr / (1−β1^step)) · m / (√v / √(1−β2^step) + eps).
    /// </summary>
    public static void AdamW(float* param, float* grad, float* m, float* v, long count, float lr, float beta1, float beta2, float eps, float weightDecay, int step)
        => throw new NotImplementedException();

    /// <summary>
    /// PyTorch SGD: g' = g + wd·p; with momentum μ &gt; 0: buf = μ·buf + g' (buf = g' at step 1); p −= lr·(μ &gt; 0 ? buf : g').
    /// momentum may be null when μ = 0.
    /// </summary>
    public static void Sgd(float* param, float* grad, float* momentum, long count, float lr, float momentumFactor, float weightDecay, int step)
        => throw new NotImplementedException();
}
