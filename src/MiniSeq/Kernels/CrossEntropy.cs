// Fused softmax cross-entropy over a block of logit rows (N, V): forward loss per row and, in place, the gradient with
// respect to the logits, with PyTorch's ignore_index = -100 and label smoothing, PaLM's z-loss and Gemma-style
// final-logit soft-capping. Rows are independent and run in parallel; the returned sum adds the row losses in row
// order, so it is deterministic. Deliberately not: materialising probabilities (the gradient overwrites the logits).
using System.Runtime.CompilerServices;
using MiniSeq.Kernels.Simd;

namespace MiniSeq.Kernels;

/// <summary>Loss options: label smoothing ε, z-loss weight (w·lse²), and final-logit soft-capping (0 = off).</summary>
public readonly record struct CrossEntropyOptions(float LabelSmoothing = 0f, float ZLossWeight = 0f, float SoftCap = 0f);

/// <summary>Softmax cross-entropy over a block of logit rows, with ignore_index = -100.</summary>
public static unsafe class CrossEntropy
{
    /// <summary>The label that marks a position without loss.</summary>
    public const int IgnoreIndex = -100;

    /// <summary>
    /// For each row r with labels[r] != -100: z = softcap(logits[r]) (cap·tanh(z/cap) when SoftCap &gt; 0),
    /// lse = log Σ exp z, loss_r = (1−ε)(lse − z[y]) + ε(lse − mean_j z_j) + w·lse² (PyTorch label_smoothing semantics).
    /// Writes rowLoss[r] (0 for ignored rows). If gradScale != 0, OVERWRITES logits row r with gradScale·∂loss_r/∂logits
    /// (zero rows for ignored labels); if gradScale == 0, logits are left unchanged. Returns Σ rowLoss in row order (double).
    /// </summary>
    /// <remarks>
    /// Per row, in float: m = max z, s = Σ e^(z−m) (vector lanes, fixed order), then lse = m + ln s and the loss in
    /// double. Gradient: ∂loss/∂z_j = p_j·(1 + 2w·lse) − ε/V − (1−ε)·[j = y] with p_j = e^(z_j−m)/s, times
    /// 1 − (z_j/cap)² through the soft-cap. Labels must be −100 or in [0, vocab) (checked, throws otherwise).
    /// Derivation: docs/kernels/elementwise.md. The sum returned is Σ (double)rowLoss[r] for r = 0, 1, … in order.
    /// </remarks>
    public static double ForwardBackward(float* logits, int* labels, int rows, int vocab, CrossEntropyOptions options, float gradScale, float* rowLoss)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfNegative(vocab);
        if (!(options.LabelSmoothing >= 0f && options.LabelSmoothing <= 1f))
        {
            throw new ArgumentOutOfRangeException(nameof(options), $"LabelSmoothing must be in [0, 1], got {options.LabelSmoothing}.");
        }

        if (!(options.ZLossWeight >= 0f) || !(options.SoftCap >= 0f))
        {
            throw new ArgumentOutOfRangeException(nameof(options), $"ZLossWeight and SoftCap must be ≥ 0, got {options.ZLossWeight} and {options.SoftCap}.");
        }

        for (int r = 0; r < rows; r++)
        {
            int y = labels[r];
            if (y != IgnoreIndex && (uint)y >= (uint)vocab)
            {
                throw new ArgumentOutOfRangeException(nameof(labels), $"labels[{r}] = {y} is neither {IgnoreIndex} (ignored) nor in [0, {vocab}).");
            }
        }

        if (rows == 0)
        {
            return 0;
        }

        var body = new WidthBody<RowBody>(new RowBody
        {
            Logits = logits,
            Labels = labels,
            Rows = rows,
            Vocab = vocab,
            Smoothing = options.LabelSmoothing,
            ZLossWeight = options.ZLossWeight,
            SoftCap = options.SoftCap,
            GradScale = gradScale,
            RowLoss = rowLoss,
            RowsPerTask = RmsNorm.RowsPerTask(vocab),
        }, KernelSelector.Width);
        RmsNorm.RunRows(ref body, rows, body.Body.RowsPerTask);

        double total = 0;
        for (int r = 0; r < rows; r++)
        {
            total += rowLoss[r];
        }

        return total;
    }

    private struct RowBody : IWidthBody
    {
        public float* Logits;
        public int* Labels;
        public int Rows;
        public int Vocab;
        public float Smoothing;
        public float ZLossWeight;
        public float SoftCap;
        public float GradScale;
        public float* RowLoss;
        public int RowsPerTask;

        public readonly void Execute<TW, TV>(int index)
            where TW : IVectorWidth<TV>
            where TV : struct
        {
            int start = index * RowsPerTask;
            int end = Math.Min(Rows, start + RowsPerTask);
            for (int r = start; r < end; r++)
            {
                float* row = Logits + ((long)r * Vocab);
                int y = Labels[r];
                if (y == IgnoreIndex)
                {
                    RowLoss[r] = 0f;
                    if (GradScale != 0f)
                    {
                        new Span<float>(row, Vocab).Clear();
                    }

                    continue;
                }

                RowLoss[r] = Row<TW, TV>(row, y);
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private readonly float Row<TW, TV>(float* row, int y)
            where TW : IVectorWidth<TV>
            where TV : struct
        {
            int n = Vocab;
            int c = TW.Count;
            bool capped = SoftCap > 0f;
            bool inPlace = GradScale != 0f;
            TV cap = TW.Create(SoftCap);

            // Pass 1: z (soft-capped, written in place when the row is overwritten anyway), max z and Σ z.
            TV max0 = TW.Create(float.NegativeInfinity), max1 = max0;
            TV sum0 = TW.Create(0f), sum1 = sum0;
            int i = 0;
            for (; i <= n - (2 * c); i += 2 * c)
            {
                TV z0 = TW.Load(row + i);
                TV z1 = TW.Load(row + i + c);
                if (capped)
                {
                    z0 = TW.Multiply(cap, SimdMath.Tanh<TW, TV>(TW.Divide(z0, cap)));
                    z1 = TW.Multiply(cap, SimdMath.Tanh<TW, TV>(TW.Divide(z1, cap)));
                    if (inPlace)
                    {
                        TW.Store(z0, row + i);
                        TW.Store(z1, row + i + c);
                    }
                }

                max0 = TW.Max(max0, z0);
                max1 = TW.Max(max1, z1);
                sum0 = TW.Add(sum0, z0);
                sum1 = TW.Add(sum1, z1);
            }

            float max = TW.MaxAcross(TW.Max(max0, max1));
            float sumZ = TW.Sum(TW.Add(sum0, sum1));
            for (; i < n; i++)
            {
                float z = Cap(row[i]);
                if (capped && inPlace)
                {
                    row[i] = z;
                }

                max = MathF.Max(max, z);
                sumZ += z;
            }

            float zy = (capped && !inPlace) ? Cap(row[y]) : row[y];

            // Pass 2: s = Σ e^(z − max).
            TV maxV = TW.Create(max);
            TV s0 = TW.Create(0f), s1 = s0;
            bool recap = capped && !inPlace;
            i = 0;
            for (; i <= n - (2 * c); i += 2 * c)
            {
                TV z0 = TW.Load(row + i);
                TV z1 = TW.Load(row + i + c);
                if (recap)
                {
                    z0 = TW.Multiply(cap, SimdMath.Tanh<TW, TV>(TW.Divide(z0, cap)));
                    z1 = TW.Multiply(cap, SimdMath.Tanh<TW, TV>(TW.Divide(z1, cap)));
                }

                s0 = TW.Add(s0, TW.Exp(TW.Subtract(z0, maxV)));
                s1 = TW.Add(s1, TW.Exp(TW.Subtract(z1, maxV)));
            }

            float sumExp = TW.Sum(TW.Add(s0, s1));
            for (; i < n; i++)
            {
                float z = recap ? Cap(row[i]) : row[i];
                sumExp += SimdMath.Exp(z - max);
            }

            double lse = max + Math.Log(sumExp);
            double eps = Smoothing;
            double loss = ((1.0 - eps) * (lse - zy)) + (eps * (lse - ((double)sumZ / n))) + (ZLossWeight * lse * lse);
            if (!inPlace)
            {
                return (float)loss;
            }

            // Pass 3: gradScale·∂loss/∂logit_j = gradScale·(p_j·k − ε/V − (1−ε)[j = y])·(1 − (z_j/cap)²), in place.
            float invSum = 1f / sumExp;
            float k = (float)(1.0 + (2.0 * ZLossWeight * lse));
            float a = -(float)(eps / n);
            float invCap = capped ? 1f / SoftCap : 0f;
            float gs = GradScale;
            TV invSumV = TW.Create(invSum), kV = TW.Create(k), aV = TW.Create(a), invCapV = TW.Create(invCap), gsV = TW.Create(gs);
            TV one = TW.Create(1f);
            i = 0;
            for (; i <= n - c; i += c)
            {
                TV z = TW.Load(row + i);
                TV p = TW.Multiply(TW.Exp(TW.Subtract(z, maxV)), invSumV);
                TV dz = TW.FusedMultiplyAdd(p, kV, aV);
                if (capped)
                {
                    TV u = TW.Multiply(z, invCapV);
                    dz = TW.Multiply(dz, TW.FusedMultiplyAdd(TW.Subtract(TW.Create(0f), u), u, one));
                }

                TW.Store(TW.Multiply(dz, gsV), row + i);
            }

            for (; i < n; i++)
            {
                row[i] = Gradient(row[i], max, invSum, k, a, 0f, invCap, gs, capped);
            }

            // The one-hot term at the label, recomputed from the saved z_y in one expression.
            row[y] = Gradient(zy, max, invSum, k, a, (float)(1.0 - eps), invCap, gs, capped);
            return (float)loss;
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private readonly float Cap(float logit) => SoftCap > 0f ? SoftCap * SimdMath.Tanh<ScalarWidth, float>(logit / SoftCap) : logit;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static float Gradient(float z, float max, float invSum, float k, float a, float oneHot, float invCap, float gs, bool capped)
        {
            float p = SimdMath.Exp(z - max) * invSum;
            float dz = MathF.FusedMultiplyAdd(p, k, a) - oneHot;
            if (capped)
            {
                float u = z * invCap;
                dz *= MathF.FusedMultiplyAdd(-u, u, 1f);
            }

            return dz * gs;
        }
    }
}
