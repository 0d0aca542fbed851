// Fused optimizer updates (AdamW, SGD) over flat parameter/gradient/state arrays: one pass over memory, vectorised
// through SimdLoops and parallel over fixed chunks. The scalar factors are formed in double as torch.optim does with
// Python floats, then rounded to float once. Deliberately not: schedules, clipping or parameter-group logic.
using System.Globalization;
using System.Runtime.CompilerServices;
using MiniSeq.Kernels.Simd;

namespace MiniSeq.Kernels;

/// <summary>Fused optimizer updates over flat parameter/gradient/state arrays.</summary>
public static unsafe class OptimizerKernels
{
    /// <summary>
    /// PyTorch AdamW (step ≥ 1): p *= 1 − lr·wd; m = β1·m + (1−β1)·g; v = β2·v + (1−β2)·g²;
    /// p −= (lr / (1−β1^step)) · m / (√v / √(1−β2^step) + eps).
    /// </summary>
    /// <remarks>
    /// Follows torch.optim.AdamW (single-tensor, non-fused, PyTorch 1.13) operation by operation:
    /// <c>p.mul_(1 − lr·wd)</c>; <c>m.mul_(β1).add_(g, alpha=1−β1)</c> (an FMA, as ATen's vectorised add);
    /// <c>v.mul_(β2).addcmul_(g, g, value=1−β2)</c>; <c>denom = (v.sqrt() / √bias_c2).add_(eps)</c>;
    /// <c>p.addcdiv_(m, denom, value=−lr/bias_c1)</c>. Torch holds the hyper-parameters as Python floats (double); this
    /// API receives floats, so each is widened through its shortest decimal form (0.9f → 0.9, not 0.89999997615…) and
    /// the scalar factors 1 − lr·wd, 1 − β, 1 − β^step, lr/bias_c1 and √bias_c2 are computed in double, then rounded to
    /// float once, exactly as the Python-side arithmetic does for hyper-parameters written as decimal literals.
    /// </remarks>
    public static void AdamW(float* param, float* grad, float* m, float* v, long count, float lr, float beta1, float beta2, float eps, float weightDecay, int step)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        ArgumentOutOfRangeException.ThrowIfLessThan(step, 1);
        double lrD = AsPythonFloat(lr);
        double beta1D = AsPythonFloat(beta1);
        double beta2D = AsPythonFloat(beta2);
        double biasCorrection1 = 1.0 - Math.Pow(beta1D, step);
        double biasCorrection2 = 1.0 - Math.Pow(beta2D, step);
        var op = new AdamWOperator
        {
            Param = param,
            Grad = grad,
            M = m,
            V = v,
            DecayFactor = (float)(1.0 - (lrD * AsPythonFloat(weightDecay))),
            Beta1 = beta1,
            OneMinusBeta1 = (float)(1.0 - beta1D),
            Beta2 = beta2,
            OneMinusBeta2 = (float)(1.0 - beta2D),
            BiasCorrection2Sqrt = (float)Math.Sqrt(biasCorrection2),
            Eps = (float)AsPythonFloat(eps),
            NegativeStepSize = (float)(-(lrD / biasCorrection1)),
        };
        SimdLoops.Elementwise(ref op, count);
    }

    /// <summary>
    /// PyTorch SGD: g' = g + wd·p; with momentum μ &gt; 0: buf = μ·buf + g' (buf = g' at step 1); p −= lr·(μ &gt; 0 ? buf : g').
    /// momentum may be null when μ = 0.
    /// </summary>
    /// <remarks>torch.optim.SGD without dampening or Nesterov; the gradient array is not modified.</remarks>
    public static void Sgd(float* param, float* grad, float* momentum, long count, float lr, float momentumFactor, float weightDecay, int step)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        ArgumentOutOfRangeException.ThrowIfLessThan(step, 1);
        if (momentumFactor != 0f && momentum == null && count > 0)
        {
            throw new ArgumentNullException(nameof(momentum), "SGD with momentum needs a momentum buffer of count floats.");
        }

        var op = new SgdOperator
        {
            Param = param,
            Grad = grad,
            Momentum = momentum,
            NegativeLr = -lr,
            Mu = momentumFactor,
            WeightDecay = weightDecay,
            Mode = momentumFactor == 0f ? 0 : step == 1 ? 1 : 2,
        };
        SimdLoops.Elementwise(ref op, count);
    }

    /// <summary>The double a Python float literal with the same shortest decimal form as <paramref name="value"/> has.</summary>
    [SkipLocalsInit]
    internal static double AsPythonFloat(float value)
    {
        if (!float.IsFinite(value))
        {
            return value;
        }

        Span<char> text = stackalloc char[32];
        return value.TryFormat(text, out int written, "R", CultureInfo.InvariantCulture)
            ? double.Parse(text[..written], NumberStyles.Float, CultureInfo.InvariantCulture)
            : value;
    }

    private struct AdamWOperator : IElementwiseOperator
    {
        public float* Param;
        public float* Grad;
        public float* M;
        public float* V;
        public float DecayFactor;
        public float Beta1;
        public float OneMinusBeta1;
        public float Beta2;
        public float OneMinusBeta2;
        public float BiasCorrection2Sqrt;
        public float Eps;
        public float NegativeStepSize;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public readonly void Invoke<TW, TV>(long offset)
            where TW : IVectorWidth<TV>
            where TV : struct
        {
            TV g = TW.Load(Grad + offset);
            TV p = TW.Multiply(TW.Load(Param + offset), TW.Create(DecayFactor));
            TV m = TW.FusedMultiplyAdd(g, TW.Create(OneMinusBeta1), TW.Multiply(TW.Load(M + offset), TW.Create(Beta1)));
            TV v = TW.Add(TW.Multiply(TW.Load(V + offset), TW.Create(Beta2)), TW.Multiply(TW.Multiply(TW.Create(OneMinusBeta2), g), g));
            TV denom = TW.Add(TW.Divide(TW.Sqrt(v), TW.Create(BiasCorrection2Sqrt)), TW.Create(Eps));
            p = TW.Add(p, TW.Divide(TW.Multiply(TW.Create(NegativeStepSize), m), denom));
            TW.Store(m, M + offset);
            TW.Store(v, V + offset);
            TW.Store(p, Param + offset);
        }
    }

    private struct SgdOperator : IElementwiseOperator
    {
        public float* Param;
        public float* Grad;
        public float* Momentum;
        public float NegativeLr;
        public float Mu;
        public float WeightDecay;
        public int Mode; // 0: no momentum, 1: first step (buf = g'), 2: buf = μ·buf + g'

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public readonly void Invoke<TW, TV>(long offset)
            where TW : IVectorWidth<TV>
            where TV : struct
        {
            TV p = TW.Load(Param + offset);
            TV d = TW.FusedMultiplyAdd(p, TW.Create(WeightDecay), TW.Load(Grad + offset));
            if (Mode == 2)
            {
                d = TW.Add(TW.Multiply(TW.Load(Momentum + offset), TW.Create(Mu)), d);
            }

            if (Mode != 0)
            {
                TW.Store(d, Momentum + offset);
            }

            TW.Store(TW.FusedMultiplyAdd(d, TW.Create(NegativeLr), p), Param + offset);
        }
    }
}
