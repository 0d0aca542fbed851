// GENERATED from FlashAttention.V512.cs; do not edit. Regenerate (in src/MiniSeq/Kernels) with:
// { sed -n 1,2p FlashAttention.V256.cs; sed -e 1,2d -e 's/Vector512/Vector256/g; s/V512/V256/g' FlashAttention.V512.cs; } > t && mv t FlashAttention.V256.cs
// Query rows live in vector lanes: a block of 4 vectors of query rows is held transposed, (D, Bq), so every
// softmax statistic (max, sum, lse, rowsum(dO∘O)) is a vertical vector op and no horizontal reduction is ever
// needed; keys, values and head-dim elements are scalar broadcasts straight from k, v (no packing of K or V).
// Deliberately not here: dispatch, validation, threading (FlashAttention.cs) and any T-sized buffer.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Vec = System.Runtime.Intrinsics.Vector256<float>;

namespace MiniSeq.Kernels;

public static unsafe partial class FlashAttention
{
    // Keys per tile; a multiple of 12 (the key blocking of the kernels below).
    private const int ForwardKeyTileV256 = 48;
    private const int BackwardKeyTileV256 = 48;

    /// <summary>Forward for query rows [qb·Bq, qb·Bq + Bq) of every query head of kv head kvh in batch b.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ForwardGroupV256(ref Args a, int b, int kvh, int qb)
    {
        int w = Vec.Count;
        int bq = 4 * w;
        const int bk = ForwardKeyTileV256;
        int d = a.HeadDim;
        int seqLen = a.SeqLen;
        int group = a.HeadCount / a.KvHeadCount;
        int t0 = qb * bq;
        int rows = Math.Min(bq, seqLen - t0);
        long qStride = (long)a.HeadCount * d;
        long kvStride = (long)a.KvHeadCount * d;
        long kvOffset = ((long)b * seqLen * kvStride) + ((long)kvh * d);
        float* kHead = a.K + kvOffset; // (T, D) with row stride kvStride
        float* vHead = a.V + kvOffset; // (T, D) with row stride kvStride
        long rowOffset = ((((long)b * seqLen) + t0) * qStride) + ((long)kvh * group * d); // first head of the group

        long perHead = (2L * d * bq) + (2L * bq);
        float* scratch = Scratch((group * perHead) + ((long)bk * bq));
        float* sT = scratch + (group * perHead); // (Bk, Bq): scores (log2 domain), then probabilities, transposed
        for (int g = 0; g < group; g++)
        {
            float* qT = scratch + (g * perHead); // (D, Bq): q block transposed, times log2(e)/√D, zero rows past T
            float* oT = qT + (d * bq);           // (D, Bq): unnormalised output, transposed
            float* stats = oT + (d * bq);        // (2, Bq): running max (log2 domain), running Σ exp2(s − max)
            LoadTransposedV256(a.Q + rowOffset + (g * d), qStride, rows, d, a.Scale * Log2E, qT);
            new Span<float>(oT, d * bq).Clear();
            new Span<float>(stats, bq).Fill(float.NegativeInfinity);
            new Span<float>(stats + bq, bq).Clear();
        }

        int kEnd = t0 + rows; // the last row attends to keys [0, kEnd)
        for (int j0 = 0; j0 < kEnd; j0 += bk)
        {
            int n = Math.Min(bk, kEnd - j0);
            int nR = RoundUp(n, 6);
            int nextKeys = Math.Min(bk, kEnd - j0 - bk);
            if (nextKeys > 0)
            {
                // k/v rows come from L2/L3 (T·KvH·D floats each); fetch the next tile while this one computes.
                PrefetchRows(kHead + ((j0 + bk) * kvStride), kvStride, nextKeys, d);
                PrefetchRows(vHead + ((j0 + bk) * kvStride), kvStride, nextKeys, d);
            }

            for (int g = 0; g < group; g++)
            {
                float* qT = scratch + (g * perHead);
                float* oT = qT + (d * bq);
                ScoresV256(kHead, kvStride, j0, kEnd - 1, nR, d, qT, sT);
                if (j0 + nR - 1 > t0)
                {
                    MaskCausalV256(sT, j0, nR, t0);
                }

                OnlineSoftmaxV256(sT, nR, oT + (d * bq), oT, d);

                // oᵀ += vᵀ·pᵀ over the n real keys of the tile.
                AccumulateV256(vHead, kvStride, j0, n, d, sT, oT);
            }
        }

        // out = oᵀ / l transposed back; lse = (max + log2 l)·ln 2 (natural log of the unscaled-exp sum).
        for (int g = 0; g < group; g++)
        {
            float* oT = scratch + (g * perHead) + (d * bq);
            float* stats = oT + (d * bq);
            int h = (kvh * group) + g;
            float* lseRow = a.Lse + ((((long)b * a.HeadCount) + h) * seqLen) + t0;
            for (int r = 0; r < rows; r++)
            {
                float sum = stats[bq + r];
                float inv = 1f / sum;
                float* outRow = a.Output + rowOffset + (g * d) + (r * qStride);
                for (int i = 0; i < d; i++)
                {
                    outRow[i] = oT[(i * bq) + r] * inv;
                }

                lseRow[r] = (stats[r] + MathF.Log2(sum)) * Ln2;
            }
        }
    }

    /// <summary>
    /// Online softmax step for one tile: max' = max(max, rowmax sᵀ); alpha = exp2(max − max'); pᵀ = exp2(sᵀ − max') in
    /// place; sum' = sum·alpha + Σ pᵀ; oᵀ *= alpha. stats is (2, Bq) = (max, sum); oᵀ is (D, Bq); sᵀ is (nR, Bq).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void OnlineSoftmaxV256(float* sT, int nR, float* stats, float* oT, int d)
    {
        int w = Vec.Count;
        int bq = 4 * w;
        Vec m0 = Vector256.Load(stats), m1 = Vector256.Load(stats + w), m2 = Vector256.Load(stats + (2 * w)), m3 = Vector256.Load(stats + (3 * w));
        Vec x0 = m0, x1 = m1, x2 = m2, x3 = m3;
        float* s = sT;
        for (int j = 0; j < nR; j++, s += bq)
        {
            x0 = Vector256.MaxNative(x0, Vector256.Load(s));
            x1 = Vector256.MaxNative(x1, Vector256.Load(s + w));
            x2 = Vector256.MaxNative(x2, Vector256.Load(s + (2 * w)));
            x3 = Vector256.MaxNative(x3, Vector256.Load(s + (3 * w)));
        }

        // A row's max is finite after its first tile (key 0 is always visible; rows past T score 0), so
        // exp2(−∞ − finite) = 0 on the first tile and no ∞ − ∞ ever occurs.
        Vec alpha0 = Exp2V256(m0 - x0), alpha1 = Exp2V256(m1 - x1), alpha2 = Exp2V256(m2 - x2), alpha3 = Exp2V256(m3 - x3);
        Vec sum0 = Vec.Zero, sum1 = sum0, sum2 = sum0, sum3 = sum0;
        s = sT;
        for (int j = 0; j < nR; j++, s += bq)
        {
            Vec p0 = Exp2V256(Vector256.Load(s) - x0);
            Vec p1 = Exp2V256(Vector256.Load(s + w) - x1);
            Vec p2 = Exp2V256(Vector256.Load(s + (2 * w)) - x2);
            Vec p3 = Exp2V256(Vector256.Load(s + (3 * w)) - x3);
            p0.Store(s);
            p1.Store(s + w);
            p2.Store(s + (2 * w));
            p3.Store(s + (3 * w));
            sum0 += p0;
            sum1 += p1;
            sum2 += p2;
            sum3 += p3;
        }

        x0.Store(stats);
        x1.Store(stats + w);
        x2.Store(stats + (2 * w));
        x3.Store(stats + (3 * w));
        float* l = stats + bq;
        Vector256.FusedMultiplyAdd(Vector256.Load(l), alpha0, sum0).Store(l);
        Vector256.FusedMultiplyAdd(Vector256.Load(l + w), alpha1, sum1).Store(l + w);
        Vector256.FusedMultiplyAdd(Vector256.Load(l + (2 * w)), alpha2, sum2).Store(l + (2 * w));
        Vector256.FusedMultiplyAdd(Vector256.Load(l + (3 * w)), alpha3, sum3).Store(l + (3 * w));
        for (int i = 0; i < d; i++, oT += bq)
        {
            (Vector256.Load(oT) * alpha0).Store(oT);
            (Vector256.Load(oT + w) * alpha1).Store(oT + w);
            (Vector256.Load(oT + (2 * w)) * alpha2).Store(oT + (2 * w));
            (Vector256.Load(oT + (3 * w)) * alpha3).Store(oT + (3 * w));
        }
    }

    /// <summary>Backward for every query head of kv head kvh in batch b (the task owns those dq, dk, dv rows).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void BackwardGroupV256(ref Args a, int b, int kvh)
    {
        int w = Vec.Count;
        int bq = 4 * w;
        const int bk = BackwardKeyTileV256;
        int d = a.HeadDim;
        int dp = RoundUp(d, 2 * w);
        int seqLen = a.SeqLen;
        int group = a.HeadCount / a.KvHeadCount;
        long qStride = (long)a.HeadCount * d;
        long kvStride = (long)a.KvHeadCount * d;
        long kvOffset = ((long)b * seqLen * kvStride) + ((long)kvh * d);
        float* kHead = a.K + kvOffset;   // (T, D) with row stride kvStride, as are the next three
        float* vHead = a.V + kvOffset;
        float* dkHead = a.DK + kvOffset;
        float* dvHead = a.DV + kvOffset;

        // Per query head of the group: its blocks of q, dO, dq and row statistics; shared: the tile buffers.
        long perHead = (3L * d * bq) + (2L * bq * dp) + (2L * bq);
        float* scratch = Scratch((group * perHead) + (2L * bk * bq) + (2L * bk * dp));
        float* pT = scratch + (group * perHead); // (Bk, Bq): p
        float* dsT = pT + (bk * bq);             // (Bk, Bq): dp, then ds/√D
        float* dkTile = dsT + (bk * bq);         // (Bk, Dp): this tile's dk, summed over the group's heads
        float* dvTile = dkTile + (bk * dp);      // (Bk, Dp): this tile's dv, summed over the group's heads

        int queryBlocks = (seqLen + bq - 1) / bq;
        for (int qb = 0; qb < queryBlocks; qb++)
        {
            int t0 = qb * bq;
            int rows = Math.Min(bq, seqLen - t0);
            long rowOffset = ((((long)b * seqLen) + t0) * qStride) + ((long)kvh * group * d); // first head of the group
            for (int g = 0; g < group; g++)
            {
                float* qT = scratch + (g * perHead); // (D, Bq): q·log2(e)/√D transposed
                float* dOT = qT + (d * bq);          // (D, Bq): dO transposed
                float* dqT = dOT + (d * bq);         // (D, Bq): dq of the block, transposed
                float* qRows = dqT + (d * bq);       // (Bq, Dp): q, zero padded
                float* dORows = qRows + (bq * dp);   // (Bq, Dp): dO, zero padded
                float* lse2 = dORows + (bq * dp);    // (Bq): lse·log2(e), +∞ past T so p = 0 there
                float* rowDot = lse2 + bq;           // (Bq): D_t = rowsum(dO∘O)
                long headOffset = rowOffset + (g * d);
                LoadTransposedV256(a.Q + headOffset, qStride, rows, d, a.Scale * Log2E, qT);
                LoadTransposedV256(a.DOutput + headOffset, qStride, rows, d, 1f, dOT);
                LoadRows(a.Q + headOffset, qStride, rows, d, dp, bq, qRows);
                LoadRows(a.DOutput + headOffset, qStride, rows, d, dp, bq, dORows);
                new Span<float>(dqT, d * bq).Clear();
                float* lseRow = a.Lse + ((((long)b * a.HeadCount) + (kvh * group) + g) * seqLen) + t0;
                for (int r = 0; r < bq; r++)
                {
                    if (r < rows)
                    {
                        float* dORow = a.DOutput + headOffset + (r * qStride);
                        float* oRow = a.Output + headOffset + (r * qStride);
                        float dot = 0;
                        for (int i = 0; i < d; i++)
                        {
                            dot += dORow[i] * oRow[i];
                        }

                        lse2[r] = lseRow[r] * Log2E;
                        rowDot[r] = dot;
                    }
                    else
                    {
                        lse2[r] = float.PositiveInfinity;
                        rowDot[r] = 0;
                    }
                }
            }

            int kEnd = t0 + rows;
            for (int j0 = 0; j0 < kEnd; j0 += bk)
            {
                int n = Math.Min(bk, kEnd - j0);
                int nR = RoundUp(n, 12);
                new Span<float>(dkTile, nR * dp).Clear();
                new Span<float>(dvTile, nR * dp).Clear();

                // dk/dv rows are read-modified-written once per query block, long after they left L1/L2: ask for
                // them now, they are added to at the end of this tile.
                PrefetchRows(dkHead + (j0 * kvStride), kvStride, n, d);
                PrefetchRows(dvHead + (j0 * kvStride), kvStride, n, d);
                int nextKeys = Math.Min(bk, kEnd - j0 - bk);
                if (nextKeys > 0)
                {
                    PrefetchRows(kHead + ((j0 + bk) * kvStride), kvStride, nextKeys, d);
                    PrefetchRows(vHead + ((j0 + bk) * kvStride), kvStride, nextKeys, d);
                }

                for (int g = 0; g < group; g++)
                {
                    float* qT = scratch + (g * perHead);
                    float* dOT = qT + (d * bq);
                    float* dqT = dOT + (d * bq);
                    float* qRows = dqT + (d * bq);
                    float* dORows = qRows + (bq * dp);
                    float* lse2 = dORows + (bq * dp);
                    float* rowDot = lse2 + bq;

                    // forward: s = q·kᵀ/√D (masked), p = exp(s − lse)
                    ScoresV256(kHead, kvStride, j0, kEnd - 1, nR, d, qT, pT);
                    if (j0 + nR - 1 > t0)
                    {
                        MaskCausalV256(pT, j0, nR, t0);
                    }

                    // forward: out = p·v  ⇒  dp = dO·vᵀ, dv += pᵀ·dO
                    ScoresV256(vHead, kvStride, j0, kEnd - 1, nR, d, dOT, dsT);
                    SoftmaxGradV256(pT, dsT, nR, lse2, rowDot, a.Scale);
                    AccumulateRowsV256(pT, nR, dORows, dp, dvTile);

                    // forward: s = q·kᵀ/√D  ⇒  dk += (ds/√D)ᵀ·q, dq += (ds/√D)·k
                    AccumulateRowsV256(dsT, nR, qRows, dp, dkTile);
                    AccumulateV256(kHead, kvStride, j0, n, d, dsT, dqT);
                }

                AddRowsV256(dvTile, dp, n, d, dvHead + (j0 * kvStride), kvStride);
                AddRowsV256(dkTile, dp, n, d, dkHead + (j0 * kvStride), kvStride);
            }

            for (int g = 0; g < group; g++)
            {
                float* dqT = scratch + (g * perHead) + (2 * d * bq);
                for (int r = 0; r < rows; r++)
                {
                    float* dqRow = a.DQ + rowOffset + (g * d) + (r * qStride);
                    for (int i = 0; i < d; i++)
                    {
                        dqRow[i] += dqT[(i * bq) + r];
                    }
                }
            }
        }
    }

    /// <summary>pᵀ = exp2(sᵀ − lse2) in place; dsᵀ = scale·p∘(dpᵀ − D) in place of dpᵀ. Both (nR, Bq).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void SoftmaxGradV256(float* pT, float* dsT, int nR, float* lse2, float* rowDot, float scale)
    {
        int w = Vec.Count;
        int bq = 4 * w;
        Vec l0 = Vector256.Load(lse2), l1 = Vector256.Load(lse2 + w), l2 = Vector256.Load(lse2 + (2 * w)), l3 = Vector256.Load(lse2 + (3 * w));
        Vec r0 = Vector256.Load(rowDot), r1 = Vector256.Load(rowDot + w), r2 = Vector256.Load(rowDot + (2 * w)), r3 = Vector256.Load(rowDot + (3 * w));
        Vec c = Vector256.Create(scale);
        for (int j = 0; j < nR; j++, pT += bq, dsT += bq)
        {
            Vec p0 = Exp2V256(Vector256.Load(pT) - l0);
            Vec p1 = Exp2V256(Vector256.Load(pT + w) - l1);
            Vec p2 = Exp2V256(Vector256.Load(pT + (2 * w)) - l2);
            Vec p3 = Exp2V256(Vector256.Load(pT + (3 * w)) - l3);
            p0.Store(pT);
            p1.Store(pT + w);
            p2.Store(pT + (2 * w));
            p3.Store(pT + (3 * w));
            (p0 * c * (Vector256.Load(dsT) - r0)).Store(dsT);
            (p1 * c * (Vector256.Load(dsT + w) - r1)).Store(dsT + w);
            (p2 * c * (Vector256.Load(dsT + (2 * w)) - r2)).Store(dsT + (2 * w));
            (p3 * c * (Vector256.Load(dsT + (3 * w)) - r3)).Store(dsT + (3 * w));
        }
    }

    /// <summary>
    /// outᵀ[j, r] = Σ_i a[j0 + j, i]·bᵀ[i, r] for j &lt; nR (a multiple of 6): (nR, Bq) = (nR, D)·(D, Bq).
    /// Rows of a past jLast read row jLast (finite values; the causal mask discards them).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ScoresV256(float* aHead, long stride, int j0, int jLast, int nR, int d, float* bT, float* outT)
    {
        int w = Vec.Count;
        int bq = 4 * w;
        for (int jg = 0; jg < nR; jg += 6)
        {
            float* a0 = aHead + (Math.Min(j0 + jg, jLast) * stride);
            float* a1 = aHead + (Math.Min(j0 + jg + 1, jLast) * stride);
            float* a2 = aHead + (Math.Min(j0 + jg + 2, jLast) * stride);
            float* a3 = aHead + (Math.Min(j0 + jg + 3, jLast) * stride);
            float* a4 = aHead + (Math.Min(j0 + jg + 4, jLast) * stride);
            float* a5 = aHead + (Math.Min(j0 + jg + 5, jLast) * stride);
            Vec c00 = Vec.Zero, c01 = c00, c02 = c00, c03 = c00;
            Vec c10 = c00, c11 = c00, c12 = c00, c13 = c00;
            Vec c20 = c00, c21 = c00, c22 = c00, c23 = c00;
            Vec c30 = c00, c31 = c00, c32 = c00, c33 = c00;
            Vec c40 = c00, c41 = c00, c42 = c00, c43 = c00;
            Vec c50 = c00, c51 = c00, c52 = c00, c53 = c00;
            float* bp = bT;
            for (int i = 0; i < d; i++, bp += bq)
            {
                Vec b0 = Vector256.Load(bp);
                Vec b1 = Vector256.Load(bp + w);
                Vec b2 = Vector256.Load(bp + (2 * w));
                Vec b3 = Vector256.Load(bp + (3 * w));
                Vec x = Vector256.Create(a0[i]);
                c00 = Vector256.FusedMultiplyAdd(x, b0, c00);
                c01 = Vector256.FusedMultiplyAdd(x, b1, c01);
                c02 = Vector256.FusedMultiplyAdd(x, b2, c02);
                c03 = Vector256.FusedMultiplyAdd(x, b3, c03);
                x = Vector256.Create(a1[i]);
                c10 = Vector256.FusedMultiplyAdd(x, b0, c10);
                c11 = Vector256.FusedMultiplyAdd(x, b1, c11);
                c12 = Vector256.FusedMultiplyAdd(x, b2, c12);
                c13 = Vector256.FusedMultiplyAdd(x, b3, c13);
                x = Vector256.Create(a2[i]);
                c20 = Vector256.FusedMultiplyAdd(x, b0, c20);
                c21 = Vector256.FusedMultiplyAdd(x, b1, c21);
                c22 = Vector256.FusedMultiplyAdd(x, b2, c22);
                c23 = Vector256.FusedMultiplyAdd(x, b3, c23);
                x = Vector256.Create(a3[i]);
                c30 = Vector256.FusedMultiplyAdd(x, b0, c30);
                c31 = Vector256.FusedMultiplyAdd(x, b1, c31);
                c32 = Vector256.FusedMultiplyAdd(x, b2, c32);
                c33 = Vector256.FusedMultiplyAdd(x, b3, c33);
                x = Vector256.Create(a4[i]);
                c40 = Vector256.FusedMultiplyAdd(x, b0, c40);
                c41 = Vector256.FusedMultiplyAdd(x, b1, c41);
                c42 = Vector256.FusedMultiplyAdd(x, b2, c42);
                c43 = Vector256.FusedMultiplyAdd(x, b3, c43);
                x = Vector256.Create(a5[i]);
                c50 = Vector256.FusedMultiplyAdd(x, b0, c50);
                c51 = Vector256.FusedMultiplyAdd(x, b1, c51);
                c52 = Vector256.FusedMultiplyAdd(x, b2, c52);
                c53 = Vector256.FusedMultiplyAdd(x, b3, c53);
            }

            float* o = outT + (jg * bq);
            c00.Store(o);
            c01.Store(o + w);
            c02.Store(o + (2 * w));
            c03.Store(o + (3 * w));
            o += bq;
            c10.Store(o);
            c11.Store(o + w);
            c12.Store(o + (2 * w));
            c13.Store(o + (3 * w));
            o += bq;
            c20.Store(o);
            c21.Store(o + w);
            c22.Store(o + (2 * w));
            c23.Store(o + (3 * w));
            o += bq;
            c30.Store(o);
            c31.Store(o + w);
            c32.Store(o + (2 * w));
            c33.Store(o + (3 * w));
            o += bq;
            c40.Store(o);
            c41.Store(o + w);
            c42.Store(o + (2 * w));
            c43.Store(o + (3 * w));
            o += bq;
            c50.Store(o);
            c51.Store(o + w);
            c52.Store(o + (2 * w));
            c53.Store(o + (3 * w));
        }
    }

    /// <summary>cᵀ[i, r] += Σ_{j&lt;n} a[j0 + j, i]·pᵀ[j, r]: (D, Bq) += (n, D)ᵀ·(n, Bq).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AccumulateV256(float* aHead, long stride, int j0, int n, int d, float* pT, float* cT)
    {
        int w = Vec.Count;
        int bq = 4 * w;
        float* aTile = aHead + (j0 * stride);
        int i = 0;
        for (; i + 4 <= d; i += 4)
        {
            float* cp = cT + (i * bq);
            Vec c00 = Vector256.Load(cp), c01 = Vector256.Load(cp + w), c02 = Vector256.Load(cp + (2 * w)), c03 = Vector256.Load(cp + (3 * w));
            cp += bq;
            Vec c10 = Vector256.Load(cp), c11 = Vector256.Load(cp + w), c12 = Vector256.Load(cp + (2 * w)), c13 = Vector256.Load(cp + (3 * w));
            cp += bq;
            Vec c20 = Vector256.Load(cp), c21 = Vector256.Load(cp + w), c22 = Vector256.Load(cp + (2 * w)), c23 = Vector256.Load(cp + (3 * w));
            cp += bq;
            Vec c30 = Vector256.Load(cp), c31 = Vector256.Load(cp + w), c32 = Vector256.Load(cp + (2 * w)), c33 = Vector256.Load(cp + (3 * w));
            float* ap = aTile + i;
            float* pp = pT;
            for (int j = 0; j < n; j++, ap += stride, pp += bq)
            {
                Vec p0 = Vector256.Load(pp);
                Vec p1 = Vector256.Load(pp + w);
                Vec p2 = Vector256.Load(pp + (2 * w));
                Vec p3 = Vector256.Load(pp + (3 * w));
                Vec x = Vector256.Create(ap[0]);
                c00 = Vector256.FusedMultiplyAdd(x, p0, c00);
                c01 = Vector256.FusedMultiplyAdd(x, p1, c01);
                c02 = Vector256.FusedMultiplyAdd(x, p2, c02);
                c03 = Vector256.FusedMultiplyAdd(x, p3, c03);
                x = Vector256.Create(ap[1]);
                c10 = Vector256.FusedMultiplyAdd(x, p0, c10);
                c11 = Vector256.FusedMultiplyAdd(x, p1, c11);
                c12 = Vector256.FusedMultiplyAdd(x, p2, c12);
                c13 = Vector256.FusedMultiplyAdd(x, p3, c13);
                x = Vector256.Create(ap[2]);
                c20 = Vector256.FusedMultiplyAdd(x, p0, c20);
                c21 = Vector256.FusedMultiplyAdd(x, p1, c21);
                c22 = Vector256.FusedMultiplyAdd(x, p2, c22);
                c23 = Vector256.FusedMultiplyAdd(x, p3, c23);
                x = Vector256.Create(ap[3]);
                c30 = Vector256.FusedMultiplyAdd(x, p0, c30);
                c31 = Vector256.FusedMultiplyAdd(x, p1, c31);
                c32 = Vector256.FusedMultiplyAdd(x, p2, c32);
                c33 = Vector256.FusedMultiplyAdd(x, p3, c33);
            }

            cp = cT + (i * bq);
            c00.Store(cp);
            c01.Store(cp + w);
            c02.Store(cp + (2 * w));
            c03.Store(cp + (3 * w));
            cp += bq;
            c10.Store(cp);
            c11.Store(cp + w);
            c12.Store(cp + (2 * w));
            c13.Store(cp + (3 * w));
            cp += bq;
            c20.Store(cp);
            c21.Store(cp + w);
            c22.Store(cp + (2 * w));
            c23.Store(cp + (3 * w));
            cp += bq;
            c30.Store(cp);
            c31.Store(cp + w);
            c32.Store(cp + (2 * w));
            c33.Store(cp + (3 * w));
        }

        for (; i < d; i++)
        {
            float* cp = cT + (i * bq);
            Vec c0 = Vector256.Load(cp), c1 = Vector256.Load(cp + w), c2 = Vector256.Load(cp + (2 * w)), c3 = Vector256.Load(cp + (3 * w));
            float* ap = aTile + i;
            float* pp = pT;
            for (int j = 0; j < n; j++, ap += stride, pp += bq)
            {
                Vec x = Vector256.Create(ap[0]);
                c0 = Vector256.FusedMultiplyAdd(x, Vector256.Load(pp), c0);
                c1 = Vector256.FusedMultiplyAdd(x, Vector256.Load(pp + w), c1);
                c2 = Vector256.FusedMultiplyAdd(x, Vector256.Load(pp + (2 * w)), c2);
                c3 = Vector256.FusedMultiplyAdd(x, Vector256.Load(pp + (3 * w)), c3);
            }

            c0.Store(cp);
            c1.Store(cp + w);
            c2.Store(cp + (2 * w));
            c3.Store(cp + (3 * w));
        }
    }

    /// <summary>c[j, i] += Σ_r pᵀ[j, r]·x[r, i] for j &lt; nR (a multiple of 12): (nR, Dp) += (Bq, nR)ᵀ·(Bq, Dp).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AccumulateRowsV256(float* pT, int nR, float* x, int dp, float* c)
    {
        int w = Vec.Count;
        int bq = 4 * w;
        for (int jg = 0; jg < nR; jg += 12)
        {
            for (int i = 0; i < dp; i += 2 * w)
            {
                float* cp = c + (jg * dp) + i;
                Vec c00 = Vector256.Load(cp), c01 = Vector256.Load(cp + w);
                Vec c10 = Vector256.Load(cp + dp), c11 = Vector256.Load(cp + dp + w);
                Vec c20 = Vector256.Load(cp + (2 * dp)), c21 = Vector256.Load(cp + (2 * dp) + w);
                Vec c30 = Vector256.Load(cp + (3 * dp)), c31 = Vector256.Load(cp + (3 * dp) + w);
                Vec c40 = Vector256.Load(cp + (4 * dp)), c41 = Vector256.Load(cp + (4 * dp) + w);
                Vec c50 = Vector256.Load(cp + (5 * dp)), c51 = Vector256.Load(cp + (5 * dp) + w);
                Vec c60 = Vector256.Load(cp + (6 * dp)), c61 = Vector256.Load(cp + (6 * dp) + w);
                Vec c70 = Vector256.Load(cp + (7 * dp)), c71 = Vector256.Load(cp + (7 * dp) + w);
                Vec c80 = Vector256.Load(cp + (8 * dp)), c81 = Vector256.Load(cp + (8 * dp) + w);
                Vec c90 = Vector256.Load(cp + (9 * dp)), c91 = Vector256.Load(cp + (9 * dp) + w);
                Vec ca0 = Vector256.Load(cp + (10 * dp)), ca1 = Vector256.Load(cp + (10 * dp) + w);
                Vec cb0 = Vector256.Load(cp + (11 * dp)), cb1 = Vector256.Load(cp + (11 * dp) + w);
                float* pp = pT + (jg * bq);
                float* xp = x + i;
                for (int r = 0; r < bq; r++, pp++, xp += dp)
                {
                    Vec x0 = Vector256.Load(xp);
                    Vec x1 = Vector256.Load(xp + w);
                    Vec y = Vector256.Create(pp[0]);
                    c00 = Vector256.FusedMultiplyAdd(y, x0, c00);
                    c01 = Vector256.FusedMultiplyAdd(y, x1, c01);
                    y = Vector256.Create(pp[bq]);
                    c10 = Vector256.FusedMultiplyAdd(y, x0, c10);
                    c11 = Vector256.FusedMultiplyAdd(y, x1, c11);
                    y = Vector256.Create(pp[2 * bq]);
                    c20 = Vector256.FusedMultiplyAdd(y, x0, c20);
                    c21 = Vector256.FusedMultiplyAdd(y, x1, c21);
                    y = Vector256.Create(pp[3 * bq]);
                    c30 = Vector256.FusedMultiplyAdd(y, x0, c30);
                    c31 = Vector256.FusedMultiplyAdd(y, x1, c31);
                    y = Vector256.Create(pp[4 * bq]);
                    c40 = Vector256.FusedMultiplyAdd(y, x0, c40);
                    c41 = Vector256.FusedMultiplyAdd(y, x1, c41);
                    y = Vector256.Create(pp[5 * bq]);
                    c50 = Vector256.FusedMultiplyAdd(y, x0, c50);
                    c51 = Vector256.FusedMultiplyAdd(y, x1, c51);
                    y = Vector256.Create(pp[6 * bq]);
                    c60 = Vector256.FusedMultiplyAdd(y, x0, c60);
                    c61 = Vector256.FusedMultiplyAdd(y, x1, c61);
                    y = Vector256.Create(pp[7 * bq]);
                    c70 = Vector256.FusedMultiplyAdd(y, x0, c70);
                    c71 = Vector256.FusedMultiplyAdd(y, x1, c71);
                    y = Vector256.Create(pp[8 * bq]);
                    c80 = Vector256.FusedMultiplyAdd(y, x0, c80);
                    c81 = Vector256.FusedMultiplyAdd(y, x1, c81);
                    y = Vector256.Create(pp[9 * bq]);
                    c90 = Vector256.FusedMultiplyAdd(y, x0, c90);
                    c91 = Vector256.FusedMultiplyAdd(y, x1, c91);
                    y = Vector256.Create(pp[10 * bq]);
                    ca0 = Vector256.FusedMultiplyAdd(y, x0, ca0);
                    ca1 = Vector256.FusedMultiplyAdd(y, x1, ca1);
                    y = Vector256.Create(pp[11 * bq]);
                    cb0 = Vector256.FusedMultiplyAdd(y, x0, cb0);
                    cb1 = Vector256.FusedMultiplyAdd(y, x1, cb1);
                }

                c00.Store(cp);
                c01.Store(cp + w);
                c10.Store(cp + dp);
                c11.Store(cp + dp + w);
                c20.Store(cp + (2 * dp));
                c21.Store(cp + (2 * dp) + w);
                c30.Store(cp + (3 * dp));
                c31.Store(cp + (3 * dp) + w);
                c40.Store(cp + (4 * dp));
                c41.Store(cp + (4 * dp) + w);
                c50.Store(cp + (5 * dp));
                c51.Store(cp + (5 * dp) + w);
                c60.Store(cp + (6 * dp));
                c61.Store(cp + (6 * dp) + w);
                c70.Store(cp + (7 * dp));
                c71.Store(cp + (7 * dp) + w);
                c80.Store(cp + (8 * dp));
                c81.Store(cp + (8 * dp) + w);
                c90.Store(cp + (9 * dp));
                c91.Store(cp + (9 * dp) + w);
                ca0.Store(cp + (10 * dp));
                ca1.Store(cp + (10 * dp) + w);
                cb0.Store(cp + (11 * dp));
                cb1.Store(cp + (11 * dp) + w);
            }
        }
    }

    /// <summary>sᵀ[j, r] = −∞ where key j0 + j is after query t0 + r (the causal mask).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MaskCausalV256(float* sT, int j0, int nR, int t0)
    {
        int w = Vec.Count;
        int bq = 4 * w;
        Vec lane0 = Vector256.ConvertToSingle(Vector256<int>.Indices);
        Vec lane1 = lane0 + Vector256.Create((float)w);
        Vec lane2 = lane1 + Vector256.Create((float)w);
        Vec lane3 = lane2 + Vector256.Create((float)w);
        Vec minusInf = Vector256.Create(float.NegativeInfinity);
        for (int j = Math.Max(0, t0 - j0 + 1); j < nR; j++)
        {
            // Key j0 + j is visible to row t0 + r iff r ≥ j0 + j − t0.
            Vec first = Vector256.Create((float)(j0 + j - t0));
            float* s = sT + (j * bq);
            Vector256.ConditionalSelect(Vector256.LessThan(lane0, first), minusInf, Vector256.Load(s)).Store(s);
            Vector256.ConditionalSelect(Vector256.LessThan(lane1, first), minusInf, Vector256.Load(s + w)).Store(s + w);
            Vector256.ConditionalSelect(Vector256.LessThan(lane2, first), minusInf, Vector256.Load(s + (2 * w))).Store(s + (2 * w));
            Vector256.ConditionalSelect(Vector256.LessThan(lane3, first), minusInf, Vector256.Load(s + (3 * w))).Store(s + (3 * w));
        }
    }

    /// <summary>dstᵀ[i, r] = src[r, i]·factor for r &lt; rows, 0 for rows ≤ r &lt; Bq: (D, Bq) from (rows, D) with row stride.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void LoadTransposedV256(float* src, long stride, int rows, int d, float factor, float* dstT)
    {
        int bq = 4 * Vec.Count;
        for (int r = 0; r < bq; r++)
        {
            if (r < rows)
            {
                float* row = src + (r * stride);
                for (int i = 0; i < d; i++)
                {
                    dstT[(i * bq) + r] = row[i] * factor;
                }
            }
            else
            {
                for (int i = 0; i < d; i++)
                {
                    dstT[(i * bq) + r] = 0;
                }
            }
        }
    }

    /// <summary>dst[j·stride + i] += tile[j·dp + i] for j &lt; n, i &lt; d.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AddRowsV256(float* tile, int dp, int n, int d, float* dst, long stride)
    {
        int w = Vec.Count;
        for (int j = 0; j < n; j++, tile += dp, dst += stride)
        {
            int i = 0;
            for (; i + w <= d; i += w)
            {
                (Vector256.Load(dst + i) + Vector256.Load(tile + i)).Store(dst + i);
            }

            for (; i < d; i++)
            {
                dst[i] += tile[i];
            }
        }
    }

    /// <summary>
    /// 2^x for x ≤ 0 (−∞ allowed), exact 0 below −126.5. x = n + f with n = round(x), f ∈ [−½, ½]; 2^f by the
    /// Cephes exp2f polynomial (relative error ≈ 2e-7 against MathF.Exp2); 2^n built in the exponent field by the
    /// 1.5·2²³ + 127 rounding trick, which also yields the bit pattern 0 for n = −127.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vec Exp2V256(Vec x)
    {
        Vec magic = Vector256.Create(12582912f + 127f);
        x = Vector256.MaxNative(x, Vector256.Create(-127f));
        Vec t = x + magic;
        Vec f = x - (t - magic);
        Vec scale = Vector256.ShiftLeft(t.AsInt32(), 23).AsSingle();
        Vec p = Vector256.FusedMultiplyAdd(Vector256.Create(1.535336188319500e-4f), f, Vector256.Create(1.339887440266574e-3f));
        p = Vector256.FusedMultiplyAdd(p, f, Vector256.Create(9.618437357674640e-3f));
        p = Vector256.FusedMultiplyAdd(p, f, Vector256.Create(5.550332471162809e-2f));
        p = Vector256.FusedMultiplyAdd(p, f, Vector256.Create(2.402264791363012e-1f));
        p = Vector256.FusedMultiplyAdd(p, f, Vector256.Create(6.931472028550421e-1f));
        p = Vector256.FusedMultiplyAdd(p, f, Vector256.Create(1f));
        return p * scale;
    }
}
