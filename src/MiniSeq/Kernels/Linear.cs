// The projection op every Linear layer of the model goes through: y = x·Wᵀ (+ b) with W stored (out, in) row-major
// as in Hugging Face. Backward forms the weight gradient first (dW += dyᵀ·x, skipped for a frozen weight), then
// dx = dy·W, so dx may overwrite x. A frozen weight, an adapter, a bias or another weight dtype is one change here
// instead of one per call site.
using MiniSeq.Diagnostics;

namespace MiniSeq.Kernels;

/// <summary>A Linear layer's tensors: weight (out × in), optional bias (out), their gradients (null = frozen / none).</summary>
public readonly unsafe struct LinearWeights
{
    /// <summary>Describes a projection from <paramref name="inFeatures"/> to <paramref name="outFeatures"/>.</summary>
    public LinearWeights(float* weight, int inFeatures, int outFeatures, float* weightGrad = null, float* bias = null, float* biasGrad = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(inFeatures);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(outFeatures);
        Weight = weight;
        InFeatures = inFeatures;
        OutFeatures = outFeatures;
        WeightGrad = weightGrad;
        Bias = bias;
        BiasGrad = biasGrad;
    }

    /// <summary>W, out × in, row-major.</summary>
    public float* Weight { get; }

    /// <summary>dW (accumulated), or null when the weight is frozen.</summary>
    public float* WeightGrad { get; }

    /// <summary>b (out), or null for none.</summary>
    public float* Bias { get; }

    /// <summary>db (accumulated), or null.</summary>
    public float* BiasGrad { get; }

    /// <summary>Input width.</summary>
    public int InFeatures { get; }

    /// <summary>Output width.</summary>
    public int OutFeatures { get; }
}

/// <summary>Forward and backward of <see cref="LinearWeights"/> over a block of rows.</summary>
public static unsafe class Linear
{
    /// <summary>y (rows × out) = x·Wᵀ (+ b), or y += x·Wᵀ (+ b) with <paramref name="accumulate"/>.</summary>
    public static void Forward(float* x, int rows, in LinearWeights w, float* y, bool accumulate = false, ProfiledOp op = ProfiledOp.Other)
    {
        using var scope = StepProfiler.Measure(op);
        int i = w.InFeatures, o = w.OutFeatures;
        MatMul.Gemm(false, true, rows, o, i, 1f, x, i, w.Weight, i, accumulate ? 1f : 0f, y, o);
        if (w.Bias != null)
        {
            for (long r = 0; r < rows; r++)
            {
                VectorOps.Add(y + (r * o), w.Bias, o, y + (r * o));
            }
        }
    }

    /// <summary>
    /// dW += dyᵀ·x (when not frozen), db += Σ_rows dy (when there is a bias gradient), then dx = dy·W (or dx += dy·W with
    /// <paramref name="accumulateDx"/>; null <paramref name="dx"/> skips it). <paramref name="dx"/> may be <paramref name="x"/>.
    /// </summary>
    public static void Backward(float* dy, float* x, int rows, in LinearWeights w, float* dx, bool accumulateDx = false, ProfiledOp op = ProfiledOp.Other)
    {
        using var scope = StepProfiler.Measure(op);
        int i = w.InFeatures, o = w.OutFeatures;
        if (w.WeightGrad != null)
        {
            MatMul.Gemm(true, false, o, i, rows, 1f, dy, o, x, i, 1f, w.WeightGrad, i);
        }

        if (w.BiasGrad != null)
        {
            // Rows in order: a fixed summation order, the same for any thread count.
            for (long r = 0; r < rows; r++)
            {
                VectorOps.Add(w.BiasGrad, dy + (r * o), o, w.BiasGrad);
            }
        }

        if (dx != null)
        {
            MatMul.Gemm(false, false, rows, i, o, 1f, dy, o, w.Weight, i, accumulateDx ? 1f : 0f, dx, i);
        }
    }
}
