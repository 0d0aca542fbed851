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
        float* kHead = a.K + ((long)b * seqLen * kvStride) + ((long)kvh * d); // row j at kHead + j·kvStride
        float* vHead = a.V + ((long)b * seqLen * kvStride) + ((long)kvh * d);
        float* acc = Scratch(d); // (D)
        int t0 = a.QueryStart + (qb * a.RowBlock);
        int tEnd = Math.Min(seqLen, t0 + a.RowBlock);
        for (int t = t0; t < tEnd; t++)
        {
            long row = (a.QueryRow(b, t) * qStride) + ((long)h * d);
            float* qRow = a.Q + row;
            float max = float.NegativeInfinity;
            float sum = 0;
            new Span<float>(acc, d).Clear();
            for (int j = FirstKey(ref a, b, t); j <= t; j++)
            {
                float* kRow = kHead + (j * kvStride);
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
                float* vRow = vHead + (j * kvStride);
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
        for (int h = kvh * group; h < (kvh + 1) * group; h++)
        {
            for (int t = a.QueryStart; t < seqLen; t++)
            {
                long row = (a.QueryRow(b, t) * qStride) + ((long)h * d);
                float* qRow = a.Q + row;
                float* dORow = a.DOutput + row;
                float* dqRow = a.DQ + row;
                float lse = a.Lse[a.LseIndex(b, h, t)];

                // D_t = Σ_j p_tj·dp_tj = dO_t·O_t (the softmax Jacobian's row term, from the saved output or given).
                float dDot = a.RowDot != null ? a.RowDot[a.LseIndex(b, h, t)] : Dot(dORow, a.Output + row, d);

                for (int j = FirstKey(ref a, b, t); j <= t; j++)
                {
                    long kvRow = kvHead + (j * kvStride);
                    float* kRow = a.K + kvRow;
                    float* vRow = a.V + kvRow;

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
}
