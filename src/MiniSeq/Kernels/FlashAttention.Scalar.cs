// Scalar fallback of FlashAttention: one query row at a time, online softmax over its keys, O(D) scratch.
// Used when no vector ISA is accelerated (or when forced for tests). Deliberately simple and untiled; speed
// comes from the SIMD files.
namespace MiniSeq.Kernels;

public static unsafe partial class FlashAttention
{
    private static void ForwardBlockScalar(ref Args a, int b, int h, int qb)
    {
        int d = a.HeadDim;
        int seqLen = a.SeqLen;
        int kvh = h / (a.HeadCount / a.KvHeadCount);
        long qStride = (long)a.HeadCount * d;
        long kvStride = (long)a.KvHeadCount * d;
        long kvHead = ((long)b * seqLen * kvStride) + ((long)kvh * d); // row j at kvHead + j·kvStride
        float* acc = Scratch(4L * d); // (D), then bf16 inputs' widened q, k, v rows
        int t0 = a.QueryStart + (qb * a.RowBlock);
        int tEnd = Math.Min(seqLen, t0 + a.RowBlock);
        for (int t = t0; t < tEnd; t++)
        {
            long row = (a.QueryRow(b, t) * qStride) + ((long)h * d);
            float* qRow = InputRow(a.Q, a.QBf16, row, d, acc + d);
            float max = float.NegativeInfinity;
            float sum = 0;
            new Span<float>(acc, d).Clear();
            for (int j = FirstKey(ref a, b, t); j <= t; j++)
            {
                float* kRow = InputRow(a.K, a.KBf16, kvHead + (j * kvStride), d, acc + (2 * d));
                float s = 0;
                for (int i = 0; i < d; i++)
                {
                    s += qRow[i] * kRow[i];
                }

                s *= a.Scale;
                if (s > max)
                {
                    // Online softmax: rescale what was accumulated under the old maximum.
                    float correction = MathF.Exp(max - s);
                    sum *= correction;
                    for (int i = 0; i < d; i++)
                    {
                        acc[i] *= correction;
                    }

                    max = s;
                }

                float p = MathF.Exp(s - max);
                sum += p;
                float* vRow = InputRow(a.V, a.VBf16, kvHead + (j * kvStride), d, acc + (3 * d));
                for (int i = 0; i < d; i++)
                {
                    acc[i] += p * vRow[i];
                }
            }

            float inv = 1f / sum;
            for (int i = 0; i < d; i++)
            {
                a.Output[row + i] = acc[i] * inv;
            }

            a.Lse[a.LseIndex(b, h, t)] = max + MathF.Log(sum);
        }
    }

    private static void BackwardGroupScalar(ref Args a, int b, int kvh)
    {
        int d = a.HeadDim;
        int seqLen = a.SeqLen;
        int group = a.HeadCount / a.KvHeadCount;
        long qStride = (long)a.HeadCount * d;
        long kvStride = (long)a.KvHeadCount * d;
        long kvHead = ((long)b * seqLen * kvStride) + ((long)kvh * d); // row j at kvHead + j·kvStride
        float* widened = Scratch(3L * d); // bf16 inputs: the q, k, v rows in use
        for (int h = kvh * group; h < (kvh + 1) * group; h++)
        {
            for (int t = a.QueryStart; t < seqLen; t++)
            {
                long row = (a.QueryRow(b, t) * qStride) + ((long)h * d);
                float* qRow = InputRow(a.Q, a.QBf16, row, d, widened);
                float* dORow = a.DOutput + row;
                float* dqRow = a.DQ + row;
                float lse = a.Lse[a.LseIndex(b, h, t)];

                // D_t = Σ_j p_tj·dp_tj = dO_t·O_t (the softmax Jacobian's row term, from the saved output or given).
                float dDot = a.RowDot != null ? a.RowDot[a.LseIndex(b, h, t)] : Dot(dORow, a.Output + row, d);

                for (int j = FirstKey(ref a, b, t); j <= t; j++)
                {
                    long kvRow = kvHead + (j * kvStride);
                    float* kRow = InputRow(a.K, a.KBf16, kvRow, d, widened + d);
                    float* vRow = InputRow(a.V, a.VBf16, kvRow, d, widened + (2 * d));

                    // forward: s = scale·q_t·k_j; p = exp(s − lse_t)
                    float s = 0;
                    float dp = 0;
                    for (int i = 0; i < d; i++)
                    {
                        s += qRow[i] * kRow[i];
                        dp += dORow[i] * vRow[i];
                    }

                    float p = MathF.Exp((s * a.Scale) - lse);

                    // forward: out_t = Σ_j p_tj·v_j  ⇒  dv_j += p_tj·dO_t, dp_tj = dO_t·v_j
                    // softmax: ds_tj = p_tj·(dp_tj − D_t); forward s = scale·q·k ⇒ dq_t += scale·ds·k_j, dk_j += scale·ds·q_t
                    float ds = p * (dp - dDot) * a.Scale;
                    float* dkRow = a.DK + kvRow;
                    float* dvRow = a.DV + kvRow;
                    for (int i = 0; i < d; i++)
                    {
                        dvRow[i] += p * dORow[i];
                        dqRow[i] += ds * kRow[i];
                        dkRow[i] += ds * qRow[i];
                    }
                }
            }
        }
    }

    /// <summary>The d-element row at <paramref name="offset"/> of an fp32 input, or of its bf16 form widened into
    /// <paramref name="widened"/>.</summary>
    private static float* InputRow(float* fp32, ushort* bf16, long offset, int d, float* widened)
    {
        if (bf16 == null)
        {
            return fp32 + offset;
        }

        BFloat16.ToFloat(bf16 + offset, widened, d, IsaWidth.Scalar);
        return widened;
    }
}
