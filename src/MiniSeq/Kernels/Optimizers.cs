// Fused optimizer updates (AdamW, SGD, Lion, LAMB) over flat parameter/gradient/state arrays: one pass over memory
// (LAMB: two, its trust ratio needs two norms of the whole tensor first), vectorised through SimdLoops and parallel
// over fixed chunks. The scalar factors are formed in double as torch.optim does with Python floats, then rounded to
// float once. Deliberately not: schedules, clipping or parameter-group logic.
using System.Globalization;
using System.Runtime.CompilerServices;
using MiniSeq.Kernels.Simd;
using MiniSeq.Threading;

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
    /// <c>v.mul_(β2).addcmul_(g, g, value=1−β2)</c> (also one FMA, of ((1−β2)·g)·g onto β2·v: PyTorch's GCC build
    /// contracts addcmul's multiply-add, measured on 1.13, where every element matched the fused form);
    /// <c>denom = (v.sqrt() / √bias_c2).add_(eps)</c>;
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
    /// PyTorch SGD: g' = g + wd·p; with momentum μ &gt; 0: buf = g' at step 1, else buf = μ·buf + (1 − dampening)·g';
    /// d = nesterov ? g' + μ·buf : buf; p −= lr·d (p −= lr·g' without momentum). momentum may be null when μ = 0.
    /// </summary>
    /// <remarks>
    /// torch.optim.SGD (single-tensor, PyTorch 1.13) operation by operation: <c>d_p = g.add(p, alpha=wd)</c>;
    /// <c>buf.mul_(μ).add_(d_p, alpha=1 − dampening)</c> (the first step clones d_p, undamped);
    /// <c>d_p = d_p.add(buf, alpha=μ)</c> with Nesterov; <c>p.add_(d_p, alpha=−lr)</c>. Each add-with-alpha is one
    /// fused multiply-add, as ATen's vectorised kernel. Nesterov needs μ &gt; 0 and no dampening (checked by the rule,
    /// as torch does). The gradient array is not modified.
    /// </remarks>
    public static void Sgd(float* param, float* grad, float* momentum, long count, float lr, float momentumFactor, float dampening, bool nesterov, float weightDecay, int step)
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
            OneMinusDampening = (float)(1.0 - AsPythonFloat(dampening)),
            WeightDecay = weightDecay,
            Mode = momentumFactor == 0f ? SgdMode.Plain : step == 1 ? SgdMode.FirstMomentumStep : SgdMode.Momentum,
            Nesterov = nesterov && momentumFactor != 0f,
        };
        SimdLoops.Elementwise(ref op, count);
    }

    /// <summary>
    /// Lion (Chen et al. 2023): p *= 1 − lr·wd; p −= lr·sign(β1·m + (1−β1)·g); m = β2·m + (1−β2)·g.
    /// </summary>
    /// <remarks>
    /// Follows lucidrains/lion-pytorch's <c>update_fn</c> operation by operation: <c>p.mul_(1 − lr·wd)</c>;
    /// <c>update = m.clone().mul_(β1).add(g, alpha=1−β1).sign_()</c>; <c>p.add_(update, alpha=−lr)</c>;
    /// <c>m.mul_(β2).add_(g, alpha=1−β2)</c> (each add-with-alpha one FMA). sign is torch.sign: (0 &lt; x) − (x &lt; 0),
    /// so sign(±0) = 0 and that parameter moves by its decay only. One state buffer (m, PyTorch's <c>exp_avg</c>); no
    /// bias correction and no ε. Scalar factors are formed in double from the floats' shortest decimal forms, as for
    /// <see cref="AdamW"/>.
    /// </remarks>
    public static void Lion(float* param, float* grad, float* m, long count, float lr, float beta1, float beta2, float weightDecay)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        double lrD = AsPythonFloat(lr);
        var op = new LionOperator
        {
            Param = param,
            Grad = grad,
            M = m,
            DecayFactor = (float)(1.0 - (lrD * AsPythonFloat(weightDecay))),
            Beta1 = beta1,
            OneMinusBeta1 = (float)(1.0 - AsPythonFloat(beta1)),
            Beta2 = beta2,
            OneMinusBeta2 = (float)(1.0 - AsPythonFloat(beta2)),
            NegativeLr = -lr,
        };
        SimdLoops.Elementwise(ref op, count);
    }

    /// <summary>
    /// LAMB (You et al. 2020, Algorithm 2, with Adam's bias correction): m = β1·m + (1−β1)·g; v = β2·v + (1−β2)·g²;
    /// r = (m / (1−β1^step)) / (√v / √(1−β2^step) + eps) + wd·p; trust = ‖p‖/‖r‖ if both are &gt; 0, else 1;
    /// p −= lr·trust·r. The tensor is one layer: the trust ratio is computed over all <paramref name="count"/> elements.
    /// </summary>
    /// <remarks>
    /// <para>Conventions. The paper's: the trust ratio applies to every tensor, decayed or not (apex FusedLAMB with
    /// <c>use_nvlamb=True</c>, timm <c>Lamb(always_adapt=True)</c>; their defaults skip it where wd = 0), with φ the
    /// identity and no trust clipping. Bias correction and the order of operations are timm's / apex's:
    /// m and v updated as in <see cref="AdamW"/>, <c>denom = √v / √bc2 + eps</c>, <c>r = (m / bc1) / denom</c>,
    /// <c>r.add_(p, alpha=wd)</c>,
    /// <c>r.mul_(trust)</c>, <c>p.add_(r, alpha=−lr)</c>. Unlike apex and timm (<c>max_grad_norm=1.0</c>), there is no
    /// global gradient clipping inside: use the trainer's --grad-clip. ‖p‖ is of the parameters before this step.</para>
    /// <para>Two passes, no buffer: the first updates m and v and sums r² and p² (r goes through a 4 KiB stack buffer
    /// per run of 1024 elements); the second recomputes r from m, v and p (the same IEEE operations, so the same r)
    /// and applies it. The sums are in double over fixed blocks of <see cref="VectorOps.SumBlock"/> elements added in
    /// block order, so the result depends on the data and the SIMD width, never on the thread count.</para>
    /// </remarks>
    [SkipLocalsInit]
    public static void Lamb(float* param, float* grad, float* m, float* v, long count, float lr, float beta1, float beta2, float eps, float weightDecay, int step)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        ArgumentOutOfRangeException.ThrowIfLessThan(step, 1);
        double beta1D = AsPythonFloat(beta1);
        double beta2D = AsPythonFloat(beta2);
        var op = new LambOperator
        {
            Param = param,
            Grad = grad,
            M = m,
            V = v,
            Beta1 = beta1,
            OneMinusBeta1 = (float)(1.0 - beta1D),
            Beta2 = beta2,
            OneMinusBeta2 = (float)(1.0 - beta2D),
            BiasCorrection1 = (float)(1.0 - Math.Pow(beta1D, step)),
            BiasCorrection2Sqrt = (float)Math.Sqrt(1.0 - Math.Pow(beta2D, step)),
            Eps = (float)AsPythonFloat(eps),
            WeightDecay = weightDecay,
        };

        // Pass 1: moments, Σr², Σp² per block, then the blocks in order.
        const int Group = 1024; // blocks per parallel round (partials live on the stack)
        IsaWidth width = KernelSelector.Width;
        long blocks = (count + VectorOps.SumBlock - 1) / VectorOps.SumBlock;
        double* partials = stackalloc double[2 * Group];
        double sumR = 0, sumP = 0;
        for (long first = 0; first < blocks; first += Group)
        {
            int n = (int)Math.Min(Group, blocks - first);
            var body = new LambMomentsBody { Op = op, Count = count, FirstBlock = first, PartialR = partials, PartialP = partials + Group, Width = width };
            if (n == 1 || (long)n * VectorOps.SumBlock < 2 * SimdLoops.ParallelGrain || KernelThreads.ThreadCount == 1)
            {
                for (int i = 0; i < n; i++)
                {
                    body.Execute(i);
                }
            }
            else
            {
                KernelThreads.For(n, ref body);
            }

            for (int i = 0; i < n; i++)
            {
                sumR += partials[i];
                sumP += partials[Group + i];
            }
        }

        // Pass 2: p −= lr·trust·r with r recomputed.
        double weightNorm = Math.Sqrt(sumP), updateNorm = Math.Sqrt(sumR);
        op.Trust = weightNorm > 0 && updateNorm > 0 ? (float)(weightNorm / updateNorm) : 1f;
        op.NegativeLr = -lr;
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
            TV v = TW.FusedMultiplyAdd(TW.Multiply(TW.Create(OneMinusBeta2), g), g, TW.Multiply(TW.Load(V + offset), TW.Create(Beta2)));
            TV denom = TW.Add(TW.Divide(TW.Sqrt(v), TW.Create(BiasCorrection2Sqrt)), TW.Create(Eps));
            p = TW.Add(p, TW.Divide(TW.Multiply(TW.Create(NegativeStepSize), m), denom));
            TW.Store(m, M + offset);
            TW.Store(v, V + offset);
            TW.Store(p, Param + offset);
        }
    }

    private enum SgdMode
    {
        /// <summary>No momentum: p −= lr·g'.</summary>
        Plain,

        /// <summary>The first step with momentum: buf = g'.</summary>
        FirstMomentumStep,

        /// <summary>Later steps: buf = μ·buf + (1 − dampening)·g'.</summary>
        Momentum,
    }

    private struct SgdOperator : IElementwiseOperator
    {
        public float* Param;
        public float* Grad;
        public float* Momentum;
        public float NegativeLr;
        public float Mu;
        public float OneMinusDampening;
        public float WeightDecay;
        public SgdMode Mode;
        public bool Nesterov;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public readonly void Invoke<TW, TV>(long offset)
            where TW : IVectorWidth<TV>
            where TV : struct
        {
            TV p = TW.Load(Param + offset);
            TV d = TW.FusedMultiplyAdd(p, TW.Create(WeightDecay), TW.Load(Grad + offset));
            if (Mode != SgdMode.Plain)
            {
                // With no dampening the FMA by 1 is the plain sum μ·buf + g', exactly.
                TV buf = Mode == SgdMode.Momentum
                    ? TW.FusedMultiplyAdd(d, TW.Create(OneMinusDampening), TW.Multiply(TW.Load(Momentum + offset), TW.Create(Mu)))
                    : d;
                TW.Store(buf, Momentum + offset);
                d = Nesterov ? TW.FusedMultiplyAdd(buf, TW.Create(Mu), d) : buf;
            }

            TW.Store(TW.FusedMultiplyAdd(d, TW.Create(NegativeLr), p), Param + offset);
        }
    }

    private struct LionOperator : IElementwiseOperator
    {
        public float* Param;
        public float* Grad;
        public float* M;
        public float DecayFactor;
        public float Beta1;
        public float OneMinusBeta1;
        public float Beta2;
        public float OneMinusBeta2;
        public float NegativeLr;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public readonly void Invoke<TW, TV>(long offset)
            where TW : IVectorWidth<TV>
            where TV : struct
        {
            TV g = TW.Load(Grad + offset);
            TV m = TW.Load(M + offset);
            TV p = TW.Multiply(TW.Load(Param + offset), TW.Create(DecayFactor));
            TV c = TW.FusedMultiplyAdd(g, TW.Create(OneMinusBeta1), TW.Multiply(m, TW.Create(Beta1)));
            // torch.sign: (0 < c) − (c < 0); 0 for ±0 (and NaN).
            TV zero = TW.Create(0f), one = TW.Create(1f);
            TV sign = TW.Subtract(TW.SelectLessThan(zero, c, one, zero), TW.SelectLessThan(c, zero, one, zero));
            TW.Store(TW.FusedMultiplyAdd(sign, TW.Create(NegativeLr), p), Param + offset);
            TW.Store(TW.FusedMultiplyAdd(g, TW.Create(OneMinusBeta2), TW.Multiply(m, TW.Create(Beta2))), M + offset);
        }
    }

    /// <summary>LAMB's two element-wise passes: with <see cref="R"/> set, pass 1 (update m and v, write r to R);
    /// with R null, pass 2 (recompute r from the updated m, v and p; p −= lr·trust·r). Pointers may be offset to a run.</summary>
    private struct LambOperator : IElementwiseOperator
    {
        public float* Param;
        public float* Grad;
        public float* M;
        public float* V;
        public float* R;
        public float Beta1;
        public float OneMinusBeta1;
        public float Beta2;
        public float OneMinusBeta2;
        public float BiasCorrection1;
        public float BiasCorrection2Sqrt;
        public float Eps;
        public float WeightDecay;
        public float Trust;
        public float NegativeLr;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public readonly void Invoke<TW, TV>(long offset)
            where TW : IVectorWidth<TV>
            where TV : struct
        {
            TV p = TW.Load(Param + offset);
            TV m, v;
            if (R != null)
            {
                TV g = TW.Load(Grad + offset);
                m = TW.FusedMultiplyAdd(g, TW.Create(OneMinusBeta1), TW.Multiply(TW.Load(M + offset), TW.Create(Beta1)));
                v = TW.FusedMultiplyAdd(TW.Multiply(TW.Create(OneMinusBeta2), g), g, TW.Multiply(TW.Load(V + offset), TW.Create(Beta2)));
                TW.Store(m, M + offset);
                TW.Store(v, V + offset);
            }
            else
            {
                m = TW.Load(M + offset);
                v = TW.Load(V + offset);
            }

            TV denom = TW.Add(TW.Divide(TW.Sqrt(v), TW.Create(BiasCorrection2Sqrt)), TW.Create(Eps));
            TV r = TW.FusedMultiplyAdd(p, TW.Create(WeightDecay), TW.Divide(TW.Divide(m, TW.Create(BiasCorrection1)), denom));
            if (R != null)
            {
                TW.Store(r, R + offset);
            }
            else
            {
                TW.Store(TW.FusedMultiplyAdd(TW.Multiply(r, TW.Create(Trust)), TW.Create(NegativeLr), p), Param + offset);
            }
        }
    }

    /// <summary>LAMB pass 1 over one block of <see cref="VectorOps.SumBlock"/> elements: the moments, and Σr², Σp² of
    /// the block in double, run by run (r of a run lives in a stack buffer).</summary>
    [SkipLocalsInit]
    private struct LambMomentsBody : IParallelBody
    {
        private const int Run = 1024;

        public LambOperator Op;
        public long Count;
        public long FirstBlock;
        public double* PartialR;
        public double* PartialP;
        public IsaWidth Width;

        public readonly void Execute(int index)
        {
            float* r = stackalloc float[Run];
            long blockStart = (FirstBlock + index) * VectorOps.SumBlock;
            long blockEnd = Math.Min(Count, blockStart + VectorOps.SumBlock);
            double sumR = 0, sumP = 0;
            for (long start = blockStart; start < blockEnd; start += Run)
            {
                int n = (int)Math.Min(Run, blockEnd - start);
                LambOperator op = Op;
                op.Param += start;
                op.Grad += start;
                op.M += start;
                op.V += start;
                op.R = r;
                SimdLoops.Run(ref op, 0, n, Width);
                sumR += VectorOps.BlockSumOfSquares(r, n, Width);
                sumP += VectorOps.BlockSumOfSquares(Op.Param + start, n, Width);
            }

            PartialR[index] = sumR;
            PartialP[index] = sumP;
        }
    }
}
