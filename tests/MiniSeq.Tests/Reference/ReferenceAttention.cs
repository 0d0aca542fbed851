// Scalar, obviously-correct causal grouped-query attention (optionally with a sliding window W: query t sees keys
// t − W < j ≤ t; and with document starts of packed rows: query t never sees keys before its document's start): the test oracle for FlashAttention.
// It materialises each T×T score matrix per (batch, head) and accumulates in double; it is deliberately slow,
// single-threaded and unoptimised. Never call it from model code.
namespace MiniSeq.Kernels.Reference;

/// <summary>Reference attention (forward and backward) in double precision with a materialised score matrix.</summary>
internal static unsafe class ReferenceAttention
{
    /// <summary>Same contract as <see cref="FlashAttention.Forward(float*, float*, float*, int, int, int, int, int, float*, float*)"/>: overwrites output (B·T, H·D) and lse (B, H, T).</summary>
    public static void Forward(float* q, float* k, float* v, int batchSize, int seqLen, int headCount, int kvHeadCount, int headDim, float* output, float* lse, int window = 0, int[]? documentStarts = null)
    {
        double[] qd = ToDouble(q, (long)batchSize * seqLen * headCount * headDim);
        double[] kd = ToDouble(k, (long)batchSize * seqLen * kvHeadCount * headDim);
        double[] vd = ToDouble(v, (long)batchSize * seqLen * kvHeadCount * headDim);
        double[] outd = new double[qd.Length];
        double[] lsed = new double[(long)batchSize * headCount * seqLen];
        ForwardDouble(qd, kd, vd, batchSize, seqLen, headCount, kvHeadCount, headDim, outd, lsed, window, documentStarts);
        for (long i = 0; i < outd.Length; i++)
        {
            output[i] = (float)outd[i];
        }

        for (long i = 0; i < lsed.Length; i++)
        {
            lse[i] = (float)lsed[i];
        }
    }

    /// <summary>
    /// Same contract as <see cref="FlashAttention.Backward(float*, float*, float*, float*, float*, float*, int, int, int, int, int, float*, float*, float*)"/>: accumulates into dq, dk, dv. It ignores the saved output
    /// and lse and recomputes the softmax from q and k, so it also checks what the flash kernel saved.
    /// </summary>
    public static void Backward(float* dOutput, float* q, float* k, float* v, float* output, float* lse, int batchSize, int seqLen, int headCount, int kvHeadCount, int headDim, float* dq, float* dk, float* dv, int window = 0, int[]? documentStarts = null)
    {
        _ = output;
        _ = lse;
        long qCount = (long)batchSize * seqLen * headCount * headDim;
        long kvCount = (long)batchSize * seqLen * kvHeadCount * headDim;
        double[] dqd = new double[qCount];
        double[] dkd = new double[kvCount];
        double[] dvd = new double[kvCount];
        BackwardDouble(ToDouble(dOutput, qCount), ToDouble(q, qCount), ToDouble(k, kvCount), ToDouble(v, kvCount), batchSize, seqLen, headCount, kvHeadCount, headDim, dqd, dkd, dvd, window, documentStarts);
        for (long i = 0; i < qCount; i++)
        {
            dq[i] += (float)dqd[i];
        }

        for (long i = 0; i < kvCount; i++)
        {
            dk[i] += (float)dkd[i];
            dv[i] += (float)dvd[i];
        }
    }

    /// <summary>The forward in double: out = softmax(q·kᵀ/√D + causal mask)·v; lse = log Σ exp(score).</summary>
    public static void ForwardDouble(double[] q, double[] k, double[] v, int batchSize, int seqLen, int headCount, int kvHeadCount, int headDim, double[] output, double[] lse, int window = 0, int[]? documentStarts = null)
    {
        int group = headCount / kvHeadCount;
        double scale = 1.0 / Math.Sqrt(headDim);
        var scores = new double[seqLen, seqLen]; // (T, T): the point of a reference
        var p = new double[seqLen];
        for (int b = 0; b < batchSize; b++)
        {
            for (int h = 0; h < headCount; h++)
            {
                int kvh = h / group;
                Scores(q, k, b, h, kvh, seqLen, headCount, kvHeadCount, headDim, scale, scores, window, documentStarts);
                for (int t = 0; t < seqLen; t++)
                {
                    double sum = ExpRow(scores, t, p, out double max);
                    long outRow = QIndex(b, t, h, 0, seqLen, headCount, headDim);
                    for (int d = 0; d < headDim; d++)
                    {
                        double acc = 0;
                        for (int j = 0; j <= t; j++)
                        {
                            acc += p[j] / sum * v[KvIndex(b, j, kvh, d, seqLen, kvHeadCount, headDim)];
                        }

                        output[outRow + d] = acc;
                    }

                    lse[((long)b * headCount + h) * seqLen + t] = max + Math.Log(sum);
                }
            }
        }
    }

    /// <summary>
    /// The backward in double, accumulating into dq, dk, dv. With p = softmax(s) per row:
    /// dv_j += Σ_t p_tj·dO_t; dp_tj = dO_t·v_j; ds_tj = p_tj·(dp_tj − Σ_i p_ti·dp_ti); dq_t += scale·Σ_j ds_tj·k_j;
    /// dk_j += scale·Σ_t ds_tj·q_t.
    /// </summary>
    public static void BackwardDouble(double[] dOutput, double[] q, double[] k, double[] v, int batchSize, int seqLen, int headCount, int kvHeadCount, int headDim, double[] dq, double[] dk, double[] dv, int window = 0, int[]? documentStarts = null)
    {
        int group = headCount / kvHeadCount;
        double scale = 1.0 / Math.Sqrt(headDim);
        var scores = new double[seqLen, seqLen]; // (T, T)
        var p = new double[seqLen];
        var dp = new double[seqLen];
        for (int b = 0; b < batchSize; b++)
        {
            for (int h = 0; h < headCount; h++)
            {
                int kvh = h / group;
                Scores(q, k, b, h, kvh, seqLen, headCount, kvHeadCount, headDim, scale, scores, window, documentStarts);
                for (int t = 0; t < seqLen; t++)
                {
                    // forward: p_tj = exp(s_tj − max) / Σ_i exp(s_ti − max)
                    double sum = ExpRow(scores, t, p, out _);

                    long qRow = QIndex(b, t, h, 0, seqLen, headCount, headDim);
                    double pDotDp = 0;
                    for (int j = 0; j <= t; j++)
                    {
                        p[j] /= sum;
                        long kvRow = KvIndex(b, j, kvh, 0, seqLen, kvHeadCount, headDim);
                        double acc = 0;
                        for (int d = 0; d < headDim; d++)
                        {
                            // forward: out_t = Σ_j p_tj·v_j
                            dv[kvRow + d] += p[j] * dOutput[qRow + d];
                            acc += dOutput[qRow + d] * v[kvRow + d];
                        }

                        dp[j] = acc;
                        pDotDp += p[j] * acc;
                    }

                    for (int j = 0; j <= t; j++)
                    {
                        // softmax Jacobian, then forward: s_tj = scale·q_t·k_j
                        double ds = p[j] * (dp[j] - pDotDp);
                        long kvRow = KvIndex(b, j, kvh, 0, seqLen, kvHeadCount, headDim);
                        for (int d = 0; d < headDim; d++)
                        {
                            dq[qRow + d] += scale * ds * k[kvRow + d];
                            dk[kvRow + d] += scale * ds * q[qRow + d];
                        }
                    }
                }
            }
        }
    }

    /// <summary>p[j] = exp(scores[t, j] − max) for j ≤ t, max = max_{j ≤ t} scores[t, j]; returns Σ_j p[j].</summary>
    private static double ExpRow(double[,] scores, int t, double[] p, out double max)
    {
        max = double.NegativeInfinity;
        for (int j = 0; j <= t; j++)
        {
            max = Math.Max(max, scores[t, j]);
        }

        double sum = 0;
        for (int j = 0; j <= t; j++)
        {
            p[j] = Math.Exp(scores[t, j] - max);
            sum += p[j];
        }

        return sum;
    }

    private static void Scores(double[] q, double[] k, int b, int h, int kvh, int seqLen, int headCount, int kvHeadCount, int headDim, double scale, double[,] scores, int window, int[]? documentStarts)
    {
        for (int t = 0; t < seqLen; t++)
        {
            for (int j = 0; j <= t; j++)
            {
                double acc = 0;
                for (int d = 0; d < headDim; d++)
                {
                    acc += q[QIndex(b, t, h, d, seqLen, headCount, headDim)] * k[KvIndex(b, j, kvh, d, seqLen, kvHeadCount, headDim)];
                }

                // the sliding window masks keys j ≤ t − W (exp(−∞ − max) = 0 below)
                bool outside = (window > 0 && j <= t - window) || (documentStarts is not null && j < documentStarts[(b * seqLen) + t]);
                scores[t, j] = outside ? double.NegativeInfinity : scale * acc;
            }
        }
    }

    private static long QIndex(int b, int t, int h, int d, int seqLen, int headCount, int headDim)
        => (((long)b * seqLen + t) * headCount + h) * headDim + d;

    private static long KvIndex(int b, int t, int kvh, int d, int seqLen, int kvHeadCount, int headDim)
        => (((long)b * seqLen + t) * kvHeadCount + kvh) * headDim + d;

    private static double[] ToDouble(float* x, long count)
    {
        var result = new double[count];
        for (long i = 0; i < count; i++)
        {
            result[i] = x[i];
        }

        return result;
    }
}
