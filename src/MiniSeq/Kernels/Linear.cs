// The projection op every Linear layer of the model goes through: y = x·Wᵀ (+ b) with W stored (out, in) row-major
// as in Hugging Face. Backward forms the weight gradient first (dW += dyᵀ·x, skipped for a frozen weight), then
// dx = dy·W, so dx may overwrite x. A frozen weight, an adapter, a bias or another weight dtype is one change here
// instead of one per call site. W is fp32 or bf16 (a frozen base for LoRA: half the weight memory); a bf16 W is
// widened exactly inside the GEMM's packing (MatMul.GemmBf16B), so both compute in fp32 and give the fp32 results on
// the widened weight bit for bit.
using MiniSeq.Diagnostics;

namespace MiniSeq.Kernels;

/// <summary>
/// A Linear layer's tensors: weight (out × in, fp32 or bf16), optional bias (out), their gradients (null = frozen / none).
/// Exactly one of <see cref="Weight"/> and <see cref="WeightBf16"/> is set; a bf16 weight is always frozen.
/// </summary>
public readonly unsafe struct LinearWeights
{
    /// <summary>Describes a projection from <paramref name="inFeatures"/> to <paramref name="outFeatures"/>.</summary>
    public LinearWeights(float* weight, int inFeatures, int outFeatures, float* weightGrad = null, float* bias = null, float* biasGrad = null)
        : this(inFeatures, outFeatures, bias, biasGrad)
    {
        if (weight == null)
        {
            throw new ArgumentNullException(nameof(weight));
        }

        Weight = weight;
        WeightGrad = weightGrad;
    }

    /// <summary>
    /// Describes a projection whose weight is stored as bfloat16 bits. A bf16 weight is frozen (its gradient is never
    /// formed): <paramref name="weightGrad"/> must be null, it is taken only so that a non-null one throws.
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="weightGrad"/> is not null.</exception>
    public LinearWeights(ushort* weightBf16, int inFeatures, int outFeatures, float* weightGrad = null, float* bias = null, float* biasGrad = null)
        : this(inFeatures, outFeatures, bias, biasGrad)
    {
        if (weightBf16 == null)
        {
            throw new ArgumentNullException(nameof(weightBf16));
        }

        if (weightGrad != null)
        {
            throw new ArgumentException("A bf16 weight is frozen and has no gradient: pass a null weightGrad (or keep the weight in fp32 to train it).", nameof(weightGrad));
        }

        WeightBf16 = weightBf16;
    }

    private LinearWeights(int inFeatures, int outFeatures, float* bias, float* biasGrad)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(inFeatures);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(outFeatures);
        InFeatures = inFeatures;
        OutFeatures = outFeatures;
        Bias = bias;
        BiasGrad = biasGrad;
    }

    /// <summary>W, out × in, row-major (fp32), or null when the weight is <see cref="WeightBf16"/>.</summary>
    public float* Weight { get; }

    /// <summary>W, out × in, row-major, as bfloat16 bits (frozen), or null when the weight is <see cref="Weight"/>.</summary>
    public ushort* WeightBf16 { get; }

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
        float beta = accumulate ? 1f : 0f;
        if (w.WeightBf16 != null)
        {
            MatMul.GemmBf16B(false, true, rows, o, i, 1f, x, i, w.WeightBf16, i, beta, y, o);
        }
        else
        {
            MatMul.Gemm(false, true, rows, o, i, 1f, x, i, w.Weight, i, beta, y, o);
        }

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
            float beta = accumulateDx ? 1f : 0f;
            if (w.WeightBf16 != null)
            {
                MatMul.GemmBf16B(false, false, rows, i, o, 1f, dy, o, w.WeightBf16, i, beta, dx, i);
            }
            else
            {
                MatMul.Gemm(false, false, rows, i, o, 1f, dy, o, w.Weight, i, beta, dx, i);
            }
        }
    }
}
