// Tiled SIMD flash attention, written once over a vector width: generic methods over TW : IVectorWidth<TV>
// (Simd/VectorWidth.cs), instantiated by FlashAttention.cs for Width512 (16 query rows per vector), Width256 (8) and
// Width128 (4).
// TW and TV are structs, so the JIT compiles each width separately, with every TW call inlined to the intrinsic it
// wraps: no virtual calls, accumulators in registers, the same code as a kernel written on Vector512 directly.
// Query rows live in vector lanes: a block of 4 vectors of query rows is held transposed, (D, Bq), so every
// softmax statistic (max, sum, lse, rowsum(dO∘O)) is a vertical vector op and no horizontal reduction is ever
// needed; keys, values and head-dim elements are scalar broadcasts straight from k, v (no packing of K or V).
// Deliberately not here: dispatch, validation, threading (FlashAttention.cs), the scalar fallback
// (FlashAttention.Scalar.cs) and any T-sized buffer.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics.X86;
using MiniSeq.Kernels.Simd;

namespace MiniSeq.Kernels;

public static unsafe partial class FlashAttention
{
    // Keys per tile, for every width; a multiple of 6 (the key blocking of the tile below). Forward 96 rather than
    // 48 (half the per-tile rescaling and statistics): +2 % (V512) and +4 % (V256) forward GFLOP/s at T = 4096
    // (docs/benchmarks/attention.md, 2026-12-02); the backward keeps 48, its four tile buffers sized to stay in L1.
    private const int ForwardKeyTile = 96;
    private const int BackwardKeyTile = 48;

    // Query blocks per pass over the key tiles in backward: the dK/dV tile of a pass is summed over its blocks and
    // added to dk/dv once, so the read-modify-write of dk/dv rows (and its prefetches) is paid once per 2·Bq rows.
    // Removing that work outright made the AVX2 8/2 backward ≈ 13 % faster at 4K (docs/benchmarks/attention.md).
    private const int BlocksPerPass = 2;

    /// <summary>Forward for query positions [t0, t0 + Bq), t0 = QueryStart + qb·Bq, of every query head of kv head kvh in batch b.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ForwardGroup<TW, TV>(ref Args a, int b, int kvh, int qb)
        where TW : struct, IVectorWidth<TV>
        where TV : struct
    {
        int w = TW.Count;
        int bq = 4 * w;
        const int bk = ForwardKeyTile;
        bool wide = HasWideTiles<TW, TV>();
        int d = a.HeadDim;
        int seqLen = a.SeqLen;
        int group = a.HeadCount / a.KvHeadCount;
        int t0 = a.QueryStart + (qb * bq); // absolute position of the block's first query
        int rows = Math.Min(bq, seqLen - t0);
        long qStride = (long)a.HeadCount * d;
        long kvStride = (long)a.KvHeadCount * d;
        long kvOffset = ((long)b * seqLen * kvStride) + ((long)kvh * d);
        long rowOffset = (a.QueryRow(b, t0) * qStride) + ((long)kvh * group * d); // first head of the group

        long perHead = (2L * d * bq) + (2L * bq);
        long widened = a.Bf16Inputs ? WidenedFloats(bk, bq, d) : 0;
        float* scratch = Scratch((group * perHead) + ((long)bk * bq) + bq + widened);
        float* sT = scratch + (group * perHead); // (Bk, Bq): scores (log2 domain), then probabilities, transposed
        float* kvTiles = sT + ((long)bk * bq) + bq; // bf16 inputs: this tile's k and v rows widened, (Bk, D) each; q rows
        for (int g = 0; g < group; g++)
        {
            float* qT = scratch + (g * perHead); // (D, Bq): q block transposed, times log2(e)/√D, zero rows past T
            float* oT = qT + (d * bq);           // (D, Bq): unnormalised output, transposed
            float* stats = oT + (d * bq);        // (2, Bq): running max (log2 domain), running Σ exp2(s − max)
            float* qSrc = QueryRows(ref a, rowOffset + (g * d), qStride, rows, kvTiles + (2L * bk * d), out long qSrcStride);
            LoadTransposed<TW, TV>(qSrc, qSrcStride, rows, d, a.Scale * Log2E, qT);
            new Span<float>(oT, d * bq).Clear();
            new Span<float>(stats, bq).Fill(float.NegativeInfinity);
            new Span<float>(stats + bq, bq).Clear();
        }

        int kEnd = t0 + rows; // the last row attends to keys [0, kEnd)
        int kStart = FirstKey(ref a, b, t0); // the first row's first key: tiles before it are masked for every row
        bool masked = a.Masked;
        float* firstKeys = sT + ((long)bk * bq); // (Bq): each row's first visible key (window or document mask)
        int maskEnd = masked ? FirstKeys(ref a, b, t0, rows, bq, firstKeys) : 0;
        for (int j0 = kStart; j0 < kEnd; j0 += bk)
        {
            int n = Math.Min(bk, kEnd - j0);
            int nR = RoundUp(n, 6);
            int nextKeys = Math.Min(bk, kEnd - j0 - bk);
            if (nextKeys > 0)
            {
                // k/v rows come from L2/L3 (T·KvH·D floats each); fetch the next tile while this one computes.
                PrefetchKeyRows(ref a, kvOffset + ((j0 + bk) * kvStride), kvStride, nextKeys, d);
            }

            float* kTile = KeyTile(ref a, kvOffset, kvStride, j0, n, kvTiles, bk, out float* vTile, out long tileStride);
            for (int g = 0; g < group; g++)
            {
                float* qT = scratch + (g * perHead);
                float* oT = qT + (d * bq);
                Scores<TW, TV>(kTile, tileStride, j0, kEnd - 1, nR, d, qT, sT, wide);
                if (j0 + nR - 1 > t0)
                {
                    MaskCausal<TW, TV>(sT, j0, nR, t0);
                }

                if (j0 < maskEnd)
                {
                    MaskBefore<TW, TV>(sT, j0, Math.Min(nR, maskEnd - j0), firstKeys);
                }

                OnlineSoftmax<TW, TV>(sT, nR, oT + (d * bq), oT, d, masked);

                // oᵀ += vᵀ·pᵀ over the n real keys of the tile.
                Accumulate<TW, TV>(vTile, tileStride, j0, n, d, sT, oT, wide);
            }
        }

        // out = oᵀ / l transposed back; lse = (max + log2 l)·ln 2 (natural log of the unscaled-exp sum).
        for (int g = 0; g < group; g++)
        {
            float* oT = scratch + (g * perHead) + (d * bq);
            float* stats = oT + (d * bq);
            int h = (kvh * group) + g;
            float* lseRow = a.Lse + a.LseIndex(b, h, t0);
            for (int r = 0; r < rows; r++)
            {
                lseRow[r] = (stats[r] + MathF.Log2(stats[bq + r])) * Ln2;
            }

            // oᵀ·(1/l) lane-wise (rows past T: 0·(1/l)), then transposed into the output rows.
            TV one = TW.Create(1f);
            TV inv0 = TW.Divide(one, TW.Load(stats + bq)), inv1 = TW.Divide(one, TW.Load(stats + bq + w));
            TV inv2 = TW.Divide(one, TW.Load(stats + bq + (2 * w))), inv3 = TW.Divide(one, TW.Load(stats + bq + (3 * w)));
            for (float* x = oT, end = oT + (d * bq); x < end; x += bq)
            {
                TW.Store(TW.Multiply(TW.Load(x), inv0), x);
                TW.Store(TW.Multiply(TW.Load(x + w), inv1), x + w);
                TW.Store(TW.Multiply(TW.Load(x + (2 * w)), inv2), x + (2 * w));
                TW.Store(TW.Multiply(TW.Load(x + (3 * w)), inv3), x + (3 * w));
            }

            StoreTransposed<TW, TV>(oT, rows, d, a.Output + rowOffset + (g * d), qStride, accumulate: false, null);
        }
    }

    /// <summary>
    /// Online softmax step for one tile: max' = max(max, rowmax sᵀ); alpha = exp2(max − max'); pᵀ = exp2(sᵀ − max') in
    /// place; sum' = sum·alpha + Σ pᵀ; oᵀ *= alpha. stats is (2, Bq) = (max, sum); oᵀ is (D, Bq); sᵀ is (nR, Bq).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void OnlineSoftmax<TW, TV>(float* sT, int nR, float* stats, float* oT, int d, bool masked)
        where TW : struct, IVectorWidth<TV>
        where TV : struct
    {
        int w = TW.Count;
        int bq = 4 * w;
        TV m0 = TW.Load(stats), m1 = TW.Load(stats + w), m2 = TW.Load(stats + (2 * w)), m3 = TW.Load(stats + (3 * w));
        TV x0 = m0, x1 = m1, x2 = m2, x3 = m3;
        float* s = sT;
        for (int j = 0; j < nR; j++, s += bq)
        {
            x0 = TW.MaxNative(x0, TW.Load(s));
            x1 = TW.MaxNative(x1, TW.Load(s + w));
            x2 = TW.MaxNative(x2, TW.Load(s + (2 * w)));
            x3 = TW.MaxNative(x3, TW.Load(s + (3 * w)));
        }

        // A row's max is finite after its first tile (key 0 is always visible; rows past T score 0), so
        // exp2(−∞ − finite) = 0 on the first tile and no ∞ − ∞ ever occurs. With a window or document mask a row may see
        // no key of a tile (its first key is later): its max stays −∞ and is stored so, but the exponents use 0 in its
        // place, so alpha = exp2(−∞) = 0 (nothing accumulated yet) and p = exp2(−∞) = 0.
        TW.Store(x0, stats);
        TW.Store(x1, stats + w);
        TW.Store(x2, stats + (2 * w));
        TW.Store(x3, stats + (3 * w));
        if (masked)
        {
            TV finiteFloor = TW.Create(float.MinValue), zero = TW.Create(0f);
            x0 = TW.SelectLessThan(x0, finiteFloor, zero, x0);
            x1 = TW.SelectLessThan(x1, finiteFloor, zero, x1);
            x2 = TW.SelectLessThan(x2, finiteFloor, zero, x2);
            x3 = TW.SelectLessThan(x3, finiteFloor, zero, x3);
        }

        TV alpha0 = Exp2<TW, TV>(TW.Subtract(m0, x0)), alpha1 = Exp2<TW, TV>(TW.Subtract(m1, x1)), alpha2 = Exp2<TW, TV>(TW.Subtract(m2, x2)), alpha3 = Exp2<TW, TV>(TW.Subtract(m3, x3));
        TV sum0 = TW.Create(0f), sum1 = sum0, sum2 = sum0, sum3 = sum0;
        if (!HasWideTiles<TW, TV>())
        {
            // 16 registers: two vectors of rows at a time (four chains of exp2 and their constants spilled).
            (sum0, sum1) = ExpInPlace<TW, TV>(sT, nR, x0, x1);
            (sum2, sum3) = ExpInPlace<TW, TV>(sT + (2 * w), nR, x2, x3);
        }
        else
        {
            s = sT;
            for (int j = 0; j < nR; j++, s += bq)
            {
                TV p0 = Exp2<TW, TV>(TW.Subtract(TW.Load(s), x0));
                TV p1 = Exp2<TW, TV>(TW.Subtract(TW.Load(s + w), x1));
                TV p2 = Exp2<TW, TV>(TW.Subtract(TW.Load(s + (2 * w)), x2));
                TV p3 = Exp2<TW, TV>(TW.Subtract(TW.Load(s + (3 * w)), x3));
                TW.Store(p0, s);
                TW.Store(p1, s + w);
                TW.Store(p2, s + (2 * w));
                TW.Store(p3, s + (3 * w));
                sum0 = TW.Add(sum0, p0);
                sum1 = TW.Add(sum1, p1);
                sum2 = TW.Add(sum2, p2);
                sum3 = TW.Add(sum3, p3);
            }
        }

        float* l = stats + bq;
        TW.Store(TW.FusedMultiplyAdd(TW.Load(l), alpha0, sum0), l);
        TW.Store(TW.FusedMultiplyAdd(TW.Load(l + w), alpha1, sum1), l + w);
        TW.Store(TW.FusedMultiplyAdd(TW.Load(l + (2 * w)), alpha2, sum2), l + (2 * w));
        TW.Store(TW.FusedMultiplyAdd(TW.Load(l + (3 * w)), alpha3, sum3), l + (3 * w));
        for (int i = 0; i < d; i++, oT += bq)
        {
            TW.Store(TW.Multiply(TW.Load(oT), alpha0), oT);
            TW.Store(TW.Multiply(TW.Load(oT + w), alpha1), oT + w);
            TW.Store(TW.Multiply(TW.Load(oT + (2 * w)), alpha2), oT + (2 * w));
            TW.Store(TW.Multiply(TW.Load(oT + (3 * w)), alpha3), oT + (3 * w));
        }
    }

    /// <summary>
    /// Backward for query blocks [firstBlock, endBlock) of every query head of kv head kvh in batch b: the task owns
    /// those dq rows; it adds to dk/dv of kv head kvh, or (<paramref name="intoPartials"/>) to the partial buffers,
    /// whose rows it zeroes first.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void BackwardGroup<TW, TV>(ref Args a, int b, int kvh, int firstBlock, int endBlock, bool intoPartials)
        where TW : struct, IVectorWidth<TV>
        where TV : struct
    {
        int w = TW.Count;
        int bq = 4 * w;
        const int bk = BackwardKeyTile;
        bool wide = HasWideTiles<TW, TV>();
        int d = a.HeadDim;
        int dp = RoundUp(d, 2 * w);
        int seqLen = a.SeqLen;
        int group = a.HeadCount / a.KvHeadCount;
        long qStride = (long)a.HeadCount * d;
        long kvStride = (long)a.KvHeadCount * d;
        long kvOffset = ((long)b * seqLen * kvStride) + ((long)kvh * d);
        float* dkHead = (intoPartials ? a.PartialK : a.DK) + kvOffset; // (T, D) with row stride kvStride, as is dvHead
        float* dvHead = (intoPartials ? a.PartialV : a.DV) + kvOffset;
        if (intoPartials)
        {
            (int first, int keys) = PartialKeys(ref a, b, endBlock);
            for (int j = first; j < keys; j++)
            {
                new Span<float>(dkHead + (j * kvStride), d).Clear();
                new Span<float>(dvHead + (j * kvStride), d).Clear();
            }
        }

        // Per query block of a pass and query head of the group: its blocks of q, dO, dq and row statistics, and per
        // block the rows' first keys; shared: the tile buffers.
        long perHead = (3L * d * bq) + (2L * bq * dp) + (2L * bq);
        long perBlock = (group * perHead) + bq;
        long widened = a.Bf16Inputs ? WidenedFloats(bk, bq, d) : 0;
        float* scratch = Scratch((BlocksPerPass * perBlock) + (2L * bk * bq) + (2L * bk * dp) + widened);
        float* pT = scratch + (BlocksPerPass * perBlock); // (Bk, Bq): p
        float* dsT = pT + (bk * bq);             // (Bk, Bq): dp, then ds/√D
        float* dkTile = dsT + (bk * bq);         // (Bk, Dp): this tile's dk, summed over the pass's blocks and heads
        float* dvTile = dkTile + (bk * dp);      // (Bk, Dp): this tile's dv, summed over the pass's blocks and heads
        float* kvTiles = dvTile + (bk * dp);     // bf16 inputs: this tile's k and v rows widened, (Bk, D) each; q rows
        Span<int> maskEnds = stackalloc int[BlocksPerPass];

        for (int qb0 = firstBlock; qb0 < endBlock; qb0 += BlocksPerPass)
        {
            int blocks = Math.Min(BlocksPerPass, endBlock - qb0);
            int kStart = int.MaxValue; // the pass's first tile: tiles before every row's first key are masked for all
            int kEnd = 0;              // the last row of the last block attends to keys [0, kEnd)
            for (int u = 0; u < blocks; u++)
            {
                int t0 = a.QueryStart + ((qb0 + u) * bq); // absolute position of the block's first query
                int rows = Math.Min(bq, seqLen - t0);
                long rowOffset = (a.QueryRow(b, t0) * qStride) + ((long)kvh * group * d); // first head of the group
                float* blockScratch = scratch + (u * perBlock);
                for (int g = 0; g < group; g++)
                {
                    float* qT = blockScratch + (g * perHead); // (D, Bq): q·log2(e)/√D transposed
                    float* dOT = qT + (d * bq);          // (D, Bq): dO transposed
                    float* dqT = dOT + (d * bq);         // (D, Bq): dq of the block, transposed
                    float* qRows = dqT + (d * bq);       // (Bq, Dp): q, zero padded
                    float* dORows = qRows + (bq * dp);   // (Bq, Dp): dO, zero padded
                    float* lse2 = dORows + (bq * dp);    // (Bq): lse·log2(e), +∞ past T so p = 0 there
                    float* rowDot = lse2 + bq;           // (Bq): D_t = rowsum(dO∘O)
                    long headOffset = rowOffset + (g * d);
                    float* qSrc = QueryRows(ref a, headOffset, qStride, rows, kvTiles + (2L * bk * d), out long qSrcStride);
                    LoadTransposed<TW, TV>(qSrc, qSrcStride, rows, d, a.Scale * Log2E, qT);
                    LoadTransposed<TW, TV>(a.DOutput + headOffset, qStride, rows, d, 1f, dOT);
                    LoadRows(qSrc, qSrcStride, rows, d, dp, bq, qRows);
                    LoadRows(a.DOutput + headOffset, qStride, rows, d, dp, bq, dORows);
                    new Span<float>(dqT, d * bq).Clear();
                    float* lseRow = a.Lse + a.LseIndex(b, (kvh * group) + g, t0);
                    float* givenDot = a.RowDot == null ? null : a.RowDot + a.LseIndex(b, (kvh * group) + g, t0);
                    for (int r = 0; r < bq; r++)
                    {
                        if (r < rows)
                        {
                            lse2[r] = lseRow[r] * Log2E;
                            rowDot[r] = givenDot != null ? givenDot[r] : Dot(a.DOutput + headOffset + (r * qStride), a.Output + headOffset + (r * qStride), d);
                        }
                        else
                        {
                            lse2[r] = float.PositiveInfinity;
                            rowDot[r] = 0;
                        }
                    }
                }

                kStart = Math.Min(kStart, FirstKey(ref a, b, t0));
                kEnd = Math.Max(kEnd, t0 + rows);
                maskEnds[u] = a.Masked ? FirstKeys(ref a, b, t0, rows, bq, blockScratch + (group * perHead)) : 0;
            }

            for (int j0 = kStart; j0 < kEnd; j0 += bk)
            {
                int n = Math.Min(bk, kEnd - j0);

                // dk/dv rows are read-modified-written once per pass, long after they left L1/L2: ask for them now,
                // they are added to at the end of this tile.
                PrefetchRows(dkHead + (j0 * kvStride), kvStride, n, d);
                PrefetchRows(dvHead + (j0 * kvStride), kvStride, n, d);
                int nextKeys = Math.Min(bk, kEnd - j0 - bk);
                if (nextKeys > 0)
                {
                    PrefetchKeyRows(ref a, kvOffset + ((j0 + bk) * kvStride), kvStride, nextKeys, d);
                }

                float* kTile = KeyTile(ref a, kvOffset, kvStride, j0, n, kvTiles, bk, out float* vTile, out long tileStride);

                // The last block sees the most keys of the tile: it starts the dK/dV tile sums (overwrite), the
                // earlier one adds to the rows it sees.
                bool firstTerm = true;
                for (int u = blocks - 1; u >= 0; u--)
                {
                    int t0 = a.QueryStart + ((qb0 + u) * bq);
                    int blockEnd = Math.Min(t0 + bq, seqLen);
                    if (j0 >= blockEnd)
                    {
                        continue;
                    }

                    int nb = Math.Min(bk, blockEnd - j0);
                    int nR = RoundUp(nb, 6);
                    float* blockScratch = scratch + (u * perBlock);
                    float* firstKeys = blockScratch + (group * perHead); // (Bq): each row's first visible key
                    for (int g = 0; g < group; g++)
                    {
                        float* qT = blockScratch + (g * perHead);
                        float* dOT = qT + (d * bq);
                        float* dqT = dOT + (d * bq);
                        float* qRows = dqT + (d * bq);
                        float* dORows = qRows + (bq * dp);
                        float* lse2 = dORows + (bq * dp);
                        float* rowDot = lse2 + bq;
                        bool overwrite = firstTerm && g == 0;

                        // forward: s = q·kᵀ/√D (masked), p = exp(s − lse)
                        Scores<TW, TV>(kTile, tileStride, j0, blockEnd - 1, nR, d, qT, pT, wide);
                        if (j0 + nR - 1 > t0)
                        {
                            MaskCausal<TW, TV>(pT, j0, nR, t0);
                        }

                        if (j0 < maskEnds[u])
                        {
                            MaskBefore<TW, TV>(pT, j0, Math.Min(nR, maskEnds[u] - j0), firstKeys);
                        }

                        // forward: out = p·v  ⇒  dp = dO·vᵀ, dv += pᵀ·dO
                        Scores<TW, TV>(vTile, tileStride, j0, blockEnd - 1, nR, d, dOT, dsT, wide);
                        SoftmaxGrad<TW, TV>(pT, dsT, nR, lse2, rowDot, a.Scale);
                        AccumulateRows<TW, TV>(pT, nR, dORows, dp, dvTile, overwrite, wide);

                        // forward: s = q·kᵀ/√D  ⇒  dk += (ds/√D)ᵀ·q, dq += (ds/√D)·k
                        AccumulateRows<TW, TV>(dsT, nR, qRows, dp, dkTile, overwrite, wide);
                        Accumulate<TW, TV>(kTile, tileStride, j0, nb, d, dsT, dqT, wide);
                    }

                    firstTerm = false;
                }

                AddRows<TW, TV>(dvTile, dp, n, d, dvHead + (j0 * kvStride), kvStride);
                AddRows<TW, TV>(dkTile, dp, n, d, dkHead + (j0 * kvStride), kvStride);
            }

            for (int u = 0; u < blocks; u++)
            {
                int t0 = a.QueryStart + ((qb0 + u) * bq);
                int rows = Math.Min(bq, seqLen - t0);
                long rowOffset = (a.QueryRow(b, t0) * qStride) + ((long)kvh * group * d);
                for (int g = 0; g < group; g++)
                {
                    // dq rows += dqᵀ transposed, through the head's q rows (dead until the next pass reloads them).
                    float* dqT = scratch + (u * perBlock) + (g * perHead) + (2 * d * bq);
                    StoreTransposed<TW, TV>(dqT, rows, d, a.DQ + rowOffset + (g * d), qStride, accumulate: true, dqT + (d * bq));
                }
            }
        }
    }

    /// <summary>
    /// pᵀ = exp2(sᵀ − x) in place for two vectors of rows (columns [0, 2w) of sᵀ from <paramref name="s"/>, row
    /// stride Bq), with the sums over the nR keys: <see cref="OnlineSoftmax"/>'s loop, two vectors at a time.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static (TV Sum0, TV Sum1) ExpInPlace<TW, TV>(float* s, int nR, TV x0, TV x1)
        where TW : struct, IVectorWidth<TV>
        where TV : struct
    {
        int w = TW.Count;
        int bq = 4 * w;
        TV sum0 = TW.Create(0f), sum1 = sum0;
        for (int j = 0; j < nR; j++, s += bq)
        {
            TV p0 = Exp2<TW, TV>(TW.Subtract(TW.Load(s), x0));
            TV p1 = Exp2<TW, TV>(TW.Subtract(TW.Load(s + w), x1));
            TW.Store(p0, s);
            TW.Store(p1, s + w);
            sum0 = TW.Add(sum0, p0);
            sum1 = TW.Add(sum1, p1);
        }

        return (sum0, sum1);
    }

    /// <summary>pᵀ = exp2(sᵀ − lse2) in place; dsᵀ = scale·p∘(dpᵀ − D) in place of dpᵀ. Both (nR, Bq).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void SoftmaxGrad<TW, TV>(float* pT, float* dsT, int nR, float* lse2, float* rowDot, float scale)
        where TW : struct, IVectorWidth<TV>
        where TV : struct
    {
        int w = TW.Count;
        int bq = 4 * w;
        if (!HasWideTiles<TW, TV>())
        {
            // 16 registers: two vectors of rows at a time (four chains of exp2 and their constants spilled).
            SoftmaxGradHalf<TW, TV>(pT, dsT, nR, lse2, rowDot, scale);
            SoftmaxGradHalf<TW, TV>(pT + (2 * w), dsT + (2 * w), nR, lse2 + (2 * w), rowDot + (2 * w), scale);
            return;
        }

        TV l0 = TW.Load(lse2), l1 = TW.Load(lse2 + w), l2 = TW.Load(lse2 + (2 * w)), l3 = TW.Load(lse2 + (3 * w));
        TV r0 = TW.Load(rowDot), r1 = TW.Load(rowDot + w), r2 = TW.Load(rowDot + (2 * w)), r3 = TW.Load(rowDot + (3 * w));
        TV c = TW.Create(scale);
        for (int j = 0; j < nR; j++, pT += bq, dsT += bq)
        {
            TV p0 = Exp2<TW, TV>(TW.Subtract(TW.Load(pT), l0));
            TV p1 = Exp2<TW, TV>(TW.Subtract(TW.Load(pT + w), l1));
            TV p2 = Exp2<TW, TV>(TW.Subtract(TW.Load(pT + (2 * w)), l2));
            TV p3 = Exp2<TW, TV>(TW.Subtract(TW.Load(pT + (3 * w)), l3));
            TW.Store(p0, pT);
            TW.Store(p1, pT + w);
            TW.Store(p2, pT + (2 * w));
            TW.Store(p3, pT + (3 * w));
            TW.Store(TW.Multiply(TW.Multiply(p0, c), TW.Subtract(TW.Load(dsT), r0)), dsT);
            TW.Store(TW.Multiply(TW.Multiply(p1, c), TW.Subtract(TW.Load(dsT + w), r1)), dsT + w);
            TW.Store(TW.Multiply(TW.Multiply(p2, c), TW.Subtract(TW.Load(dsT + (2 * w)), r2)), dsT + (2 * w));
            TW.Store(TW.Multiply(TW.Multiply(p3, c), TW.Subtract(TW.Load(dsT + (3 * w)), r3)), dsT + (3 * w));
        }
    }

    /// <summary><see cref="SoftmaxGrad"/> for two vectors of rows (columns [0, 2w) of the (nR, Bq) tiles).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void SoftmaxGradHalf<TW, TV>(float* pT, float* dsT, int nR, float* lse2, float* rowDot, float scale)
        where TW : struct, IVectorWidth<TV>
        where TV : struct
    {
        int w = TW.Count;
        int bq = 4 * w;
        TV l0 = TW.Load(lse2), l1 = TW.Load(lse2 + w);
        TV r0 = TW.Load(rowDot), r1 = TW.Load(rowDot + w);
        TV c = TW.Create(scale);
        for (int j = 0; j < nR; j++, pT += bq, dsT += bq)
        {
            TV p0 = Exp2<TW, TV>(TW.Subtract(TW.Load(pT), l0));
            TV p1 = Exp2<TW, TV>(TW.Subtract(TW.Load(pT + w), l1));
            TW.Store(p0, pT);
            TW.Store(p1, pT + w);
            TW.Store(TW.Multiply(TW.Multiply(p0, c), TW.Subtract(TW.Load(dsT), r0)), dsT);
            TW.Store(TW.Multiply(TW.Multiply(p1, c), TW.Subtract(TW.Load(dsT + w), r1)), dsT + w);
        }
    }

    /// <summary>
    /// outᵀ[j, r] = Σ_i a[j0 + j, i]·bᵀ[i, r] for j &lt; nR (a multiple of 6): (nR, Bq) = (nR, D)·(D, Bq).
    /// Rows of a past jLast read row jLast (finite values; the causal mask discards them).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Scores<TW, TV>(float* aHead, long stride, int j0, int jLast, int nR, int d, float* bT, float* outT, bool wide)
        where TW : struct, IVectorWidth<TV>
        where TV : struct
    {
        int w = TW.Count;
        int bq = 4 * w;
        for (int jg = 0; jg < nR; jg += 6)
        {
            float* a0 = aHead + (Math.Min(j0 + jg, jLast) * stride);
            float* a1 = aHead + (Math.Min(j0 + jg + 1, jLast) * stride);
            float* a2 = aHead + (Math.Min(j0 + jg + 2, jLast) * stride);
            float* a3 = aHead + (Math.Min(j0 + jg + 3, jLast) * stride);
            float* a4 = aHead + (Math.Min(j0 + jg + 4, jLast) * stride);
            float* a5 = aHead + (Math.Min(j0 + jg + 5, jLast) * stride);
            TileAcrossBlock<TW, TV>(wide, d, a0, a1, a2, a3, a4, a5, 1, bT, outT + (jg * bq), load: false);
        }
    }

    /// <summary>
    /// Whether the micro-kernels below use the wide register tile (6 rows × 4 vectors = 24 accumulators): only at
    /// Vector512, whose AVX-512 has 32 vector registers. AVX2 and SSE have 16: there 24 accumulators spilled to the
    /// stack on every step (attention at ≈ 40 % of peak on AVX2), so V256 and V128 use 6 × 2 tiles of 12
    /// accumulators, two passes per query block. Each output is the same chain of FMAs in the same order either way:
    /// the results are bit-identical.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static bool HasWideTiles<TW, TV>()
        where TW : struct, IVectorWidth<TV>
        where TV : struct
        => TW.Count >= 16;

    /// <summary>
    /// <see cref="Tile"/> for six rows across the Bq = 4W columns of a query block (b and c with row stride Bq): one 6 × 4
    /// tile where <see cref="HasWideTiles"/> (and <paramref name="wide"/>), else two 6 × 2 tiles, one per half.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void TileAcrossBlock<TW, TV>(bool wide, int k, float* a0, float* a1, float* a2, float* a3, float* a4, float* a5, nint kStride, float* b, float* c, bool load)
        where TW : struct, IVectorWidth<TV>
        where TV : struct
    {
        int bq = 4 * TW.Count;
        if (wide && HasWideTiles<TW, TV>())
        {
            Tile<TW, TV, Rows6x4>(k, a0, a1, a2, a3, a4, a5, kStride, b, bq, c, bq, load);
        }
        else
        {
            Tile<TW, TV, Rows6x2>(k, a0, a1, a2, a3, a4, a5, kStride, b, bq, c, bq, load);
            Tile<TW, TV, Rows6x2>(k, a0, a1, a2, a3, a4, a5, kStride, b + (2 * TW.Count), bq, c + (2 * TW.Count), bq, load);
        }
    }

    /// <summary>cᵀ[i, r] += Σ_{j&lt;n} a[j0 + j, i]·pᵀ[j, r]: (D, Bq) += (n, D)ᵀ·(n, Bq).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Accumulate<TW, TV>(float* aHead, long stride, int j0, int n, int d, float* pT, float* cT, bool wide)
        where TW : struct, IVectorWidth<TV>
        where TV : struct
    {
        int w = TW.Count;
        int bq = 4 * w;
        float* a = aHead + (j0 * stride);
        nint s = (nint)stride;
        int i = 0;
        for (; i + 6 <= d; i += 6)
        {
            float* ai = a + i;
            TileAcrossBlock<TW, TV>(wide, n, ai, ai + 1, ai + 2, ai + 3, ai + 4, ai + 5, s, pT, cT + (i * bq), load: true);
        }

        // The head dims the blocks of 6 leave (2 for D = 32): 2 rows × 4 vectors (8 accumulators) fit either register file.
        for (; i + 2 <= d; i += 2)
        {
            Tile<TW, TV, Rows2x4>(n, a + i, a + i + 1, null, null, null, null, s, pT, bq, cT + (i * bq), bq, load: true);
        }

        if (i < d)
        {
            Tile<TW, TV, Rows1x4>(n, a + i, null, null, null, null, null, s, pT, bq, cT + (i * bq), bq, load: true);
        }
    }

    /// <summary>c[j, i] += Σ_r pᵀ[j, r]·x[r, i] for j &lt; nR (a multiple of 6): (nR, Dp) += (Bq, nR)ᵀ·(Bq, Dp); with
    /// <paramref name="overwrite"/>, c = Σ … (the sums start from +0, as they would from a cleared c).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void AccumulateRows<TW, TV>(float* pT, int nR, float* x, int dp, float* c, bool overwrite, bool wide)
        where TW : struct, IVectorWidth<TV>
        where TV : struct
    {
        int w = TW.Count;
        int bq = 4 * w;
        for (int jg = 0; jg < nR; jg += 6)
        {
            float* a = pT + (jg * bq);
            float* cj = c + (jg * dp);
            int i = 0;
            for (; wide && HasWideTiles<TW, TV>() && i + (4 * w) <= dp; i += 4 * w)
            {
                Tile<TW, TV, Rows6x4>(bq, a, a + bq, a + (2 * bq), a + (3 * bq), a + (4 * bq), a + (5 * bq), 1, x + i, dp, cj + i, dp, load: !overwrite);
            }

            for (; i < dp; i += 2 * w)
            {
                Tile<TW, TV, Rows6x2>(bq, a, a + bq, a + (2 * bq), a + (3 * bq), a + (4 * bq), a + (5 * bq), 1, x + i, dp, cj + i, dp, load: !overwrite);
            }
        }
    }

    /// <summary>
    /// The one register tile of the attention micro-kernels: c[m·ldc + (0..V·w)] = (c or 0) + Σ_{p&lt;k}
    /// a_m[p·kStride]·b[p·bStride + (0..V·w)] for the rows m &lt; R of the shape (R × V vectors, <see cref="ITileShape"/>),
    /// one FMA chain per output in increasing p: R·V accumulators, V loads and R broadcasts per step.
    /// <see cref="Scores"/> (rows: keys, p: head dims), <see cref="Accumulate"/> (rows: head dims, p: keys) and
    /// <see cref="AccumulateRows"/> (rows: keys, p: query rows) are this tile over their operands' layouts. The shape is a
    /// type, so each instantiation compiles to straight-line code with only its R·V accumulators (the guards fold away).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Tile<TW, TV, TS>(int k, float* a0, float* a1, float* a2, float* a3, float* a4, float* a5, nint kStride, float* b, nint bStride, float* c, nint ldc, bool load)
        where TW : struct, IVectorWidth<TV>
        where TV : struct
        where TS : struct, ITileShape
    {
        // At most 32 IL locals, or the JIT declines to inline the tile into its callers: no locals beyond the
        // accumulators, the four b vectors and the loop counters (TW.Count and the shape fold to constants).
        TV c00 = TW.Create(0f), c01 = c00, c02 = c00, c03 = c00, c10 = c00, c11 = c00, c12 = c00, c13 = c00;
        TV c20 = c00, c21 = c00, c22 = c00, c23 = c00, c30 = c00, c31 = c00, c32 = c00, c33 = c00;
        TV c40 = c00, c41 = c00, c42 = c00, c43 = c00, c50 = c00, c51 = c00, c52 = c00, c53 = c00;
        if (load)
        {
            LoadRow<TW, TV, TS>(c, ref c00, ref c01, ref c02, ref c03);
            if (TS.Rows >= 2)
            {
                LoadRow<TW, TV, TS>(c + ldc, ref c10, ref c11, ref c12, ref c13);
            }

            if (TS.Rows == 6)
            {
                LoadRow<TW, TV, TS>(c + (2 * ldc), ref c20, ref c21, ref c22, ref c23);
                LoadRow<TW, TV, TS>(c + (3 * ldc), ref c30, ref c31, ref c32, ref c33);
                LoadRow<TW, TV, TS>(c + (4 * ldc), ref c40, ref c41, ref c42, ref c43);
                LoadRow<TW, TV, TS>(c + (5 * ldc), ref c50, ref c51, ref c52, ref c53);
            }
        }

        nint at = 0;
        for (int p = 0; p < k; p++, at += kStride, b += bStride)
        {
            TV b0 = TW.Load(b);
            TV b1 = TW.Load(b + TW.Count);
            TV b2 = TS.Vectors == 4 ? TW.Load(b + (2 * TW.Count)) : b0;
            TV b3 = TS.Vectors == 4 ? TW.Load(b + (3 * TW.Count)) : b0;
            FmaRow<TW, TV, TS>(TW.Create(a0[at]), b0, b1, b2, b3, ref c00, ref c01, ref c02, ref c03);
            if (TS.Rows >= 2)
            {
                FmaRow<TW, TV, TS>(TW.Create(a1[at]), b0, b1, b2, b3, ref c10, ref c11, ref c12, ref c13);
            }

            if (TS.Rows == 6)
            {
                FmaRow<TW, TV, TS>(TW.Create(a2[at]), b0, b1, b2, b3, ref c20, ref c21, ref c22, ref c23);
                FmaRow<TW, TV, TS>(TW.Create(a3[at]), b0, b1, b2, b3, ref c30, ref c31, ref c32, ref c33);
                FmaRow<TW, TV, TS>(TW.Create(a4[at]), b0, b1, b2, b3, ref c40, ref c41, ref c42, ref c43);
                FmaRow<TW, TV, TS>(TW.Create(a5[at]), b0, b1, b2, b3, ref c50, ref c51, ref c52, ref c53);
            }
        }

        StoreRow<TW, TV, TS>(c, c00, c01, c02, c03);
        if (TS.Rows >= 2)
        {
            StoreRow<TW, TV, TS>(c + ldc, c10, c11, c12, c13);
        }

        if (TS.Rows == 6)
        {
            StoreRow<TW, TV, TS>(c + (2 * ldc), c20, c21, c22, c23);
            StoreRow<TW, TV, TS>(c + (3 * ldc), c30, c31, c32, c33);
            StoreRow<TW, TV, TS>(c + (4 * ldc), c40, c41, c42, c43);
            StoreRow<TW, TV, TS>(c + (5 * ldc), c50, c51, c52, c53);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void FmaRow<TW, TV, TS>(TV x, TV b0, TV b1, TV b2, TV b3, ref TV c0, ref TV c1, ref TV c2, ref TV c3)
        where TW : struct, IVectorWidth<TV>
        where TV : struct
        where TS : struct, ITileShape
    {
        c0 = TW.FusedMultiplyAdd(x, b0, c0);
        c1 = TW.FusedMultiplyAdd(x, b1, c1);
        if (TS.Vectors == 4)
        {
            c2 = TW.FusedMultiplyAdd(x, b2, c2);
            c3 = TW.FusedMultiplyAdd(x, b3, c3);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void LoadRow<TW, TV, TS>(float* c, ref TV c0, ref TV c1, ref TV c2, ref TV c3)
        where TW : struct, IVectorWidth<TV>
        where TV : struct
        where TS : struct, ITileShape
    {
        c0 = TW.Load(c);
        c1 = TW.Load(c + TW.Count);
        if (TS.Vectors == 4)
        {
            c2 = TW.Load(c + (2 * TW.Count));
            c3 = TW.Load(c + (3 * TW.Count));
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreRow<TW, TV, TS>(float* c, TV c0, TV c1, TV c2, TV c3)
        where TW : struct, IVectorWidth<TV>
        where TV : struct
        where TS : struct, ITileShape
    {
        TW.Store(c0, c);
        TW.Store(c1, c + TW.Count);
        if (TS.Vectors == 4)
        {
            TW.Store(c2, c + (2 * TW.Count));
            TW.Store(c3, c + (3 * TW.Count));
        }
    }

    /// <summary>The shape of <see cref="Tile"/>: rows (1, 2 or 6) × vectors per row (2 or 4), as JIT-time constants.</summary>
    internal interface ITileShape
    {
        static abstract int Rows { get; }

        static abstract int Vectors { get; }
    }

    private struct Rows6x4 : ITileShape
    {
        public static int Rows => 6;

        public static int Vectors => 4;
    }

    private struct Rows6x2 : ITileShape
    {
        public static int Rows => 6;

        public static int Vectors => 2;
    }

    private struct Rows2x4 : ITileShape
    {
        public static int Rows => 2;

        public static int Vectors => 4;
    }

    private struct Rows1x4 : ITileShape
    {
        public static int Rows => 1;

        public static int Vectors => 4;
    }
    /// <summary>sᵀ[j, r] = −∞ where key j0 + j is after query t0 + r (the causal mask).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MaskCausal<TW, TV>(float* sT, int j0, int nR, int t0)
        where TW : struct, IVectorWidth<TV>
        where TV : struct
    {
        int w = TW.Count;
        int bq = 4 * w;
        TV lane0 = TW.Indices;
        TV lane1 = TW.Add(lane0, TW.Create((float)w));
        TV lane2 = TW.Add(lane1, TW.Create((float)w));
        TV lane3 = TW.Add(lane2, TW.Create((float)w));
        TV minusInf = TW.Create(float.NegativeInfinity);
        for (int j = Math.Max(0, t0 - j0 + 1); j < nR; j++)
        {
            // Key j0 + j is visible to row t0 + r iff r ≥ j0 + j − t0.
            TV first = TW.Create((float)(j0 + j - t0));
            float* s = sT + (j * bq);
            TW.Store(TW.SelectLessThan(lane0, first, minusInf, TW.Load(s)), s);
            TW.Store(TW.SelectLessThan(lane1, first, minusInf, TW.Load(s + w)), s + w);
            TW.Store(TW.SelectLessThan(lane2, first, minusInf, TW.Load(s + (2 * w))), s + (2 * w));
            TW.Store(TW.SelectLessThan(lane3, first, minusInf, TW.Load(s + (3 * w))), s + (3 * w));
        }
    }

    /// <summary>
    /// firstKeys[r] = FirstKey(t0 + r) as a float for the block's rows (0 for padding rows past T); returns the largest,
    /// the end of the keys any row of the block must mask (tiles from there on need the causal mask only).
    /// </summary>
    private static int FirstKeys(ref Args a, int b, int t0, int rows, int bq, float* firstKeys)
    {
        int last = 0;
        for (int r = 0; r < bq; r++)
        {
            int first = r < rows ? FirstKey(ref a, b, t0 + r) : 0;
            firstKeys[r] = first; // exact: positions stay below 2^24
            last = Math.Max(last, first);
        }

        return last;
    }

    /// <summary>sᵀ[j, r] = −∞ where key j0 + j comes before row r's first visible key (window or document mask), for
    /// j &lt; <paramref name="count"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MaskBefore<TW, TV>(float* sT, int j0, int count, float* firstKeys)
        where TW : struct, IVectorWidth<TV>
        where TV : struct
    {
        int w = TW.Count;
        int bq = 4 * w;
        TV f0 = TW.Load(firstKeys), f1 = TW.Load(firstKeys + w), f2 = TW.Load(firstKeys + (2 * w)), f3 = TW.Load(firstKeys + (3 * w));
        TV minusInf = TW.Create(float.NegativeInfinity);
        for (int j = 0; j < count; j++)
        {
            TV key = TW.Create((float)(j0 + j));
            float* s = sT + (j * bq);
            TW.Store(TW.SelectLessThan(key, f0, minusInf, TW.Load(s)), s);
            TW.Store(TW.SelectLessThan(key, f1, minusInf, TW.Load(s + w)), s + w);
            TW.Store(TW.SelectLessThan(key, f2, minusInf, TW.Load(s + (2 * w))), s + (2 * w));
            TW.Store(TW.SelectLessThan(key, f3, minusInf, TW.Load(s + (3 * w))), s + (3 * w));
        }
    }

    /// <summary>dstᵀ[i, r] = src[r, i]·factor for r &lt; rows, 0 for rows ≤ r &lt; Bq: (D, Bq) from (rows, D) with row stride.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void LoadTransposed<TW, TV>(float* src, long stride, int rows, int d, float factor, float* dstT)
        where TW : struct, IVectorWidth<TV>
        where TV : struct
    {
        int w = TW.Count;
        int bq = 4 * w;
        Transpose(src, (nint)stride, rows, d, dstT, bq);
        for (int i = 0; i < d; i++)
        {
            new Span<float>(dstT + (i * bq) + rows, bq - rows).Clear();
        }

        if (factor != 1f)
        {
            // Scaled after the transpose: the same products, on contiguous lanes (padding stays 0).
            TV f = TW.Create(factor);
            for (float* x = dstT, end = dstT + (d * bq); x < end; x += w)
            {
                TW.Store(TW.Multiply(TW.Load(x), f), x);
            }
        }
    }

    /// <summary>dst[r·stride + i] (+)= srcᵀ[i, r] for r &lt; rows, i &lt; d: (rows, D) with row stride from (D, Bq).
    /// <paramref name="rowsScratch"/> holds Bq·D floats when <paramref name="accumulate"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void StoreTransposed<TW, TV>(float* srcT, int rows, int d, float* dst, long stride, bool accumulate, float* rowsScratch)
        where TW : struct, IVectorWidth<TV>
        where TV : struct
    {
        int bq = 4 * TW.Count;
        float* target = accumulate ? rowsScratch : dst;
        Transpose(srcT, bq, d, rows, target, accumulate ? d : (nint)stride);
        if (accumulate)
        {
            for (int r = 0; r < rows; r++)
            {
                VectorOps.Add(dst + (r * stride), rowsScratch + (r * d), d, dst + (r * stride));
            }
        }
    }

    /// <summary>dst[c·dstStride + r] = src[r·srcStride + c] for r &lt; rows, c &lt; cols: 8×8 register transposes where
    /// AVX allows, scalar moves at the edges (also Ulysses' rowsums into the lse layout).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Transpose(float* src, nint srcStride, int rows, int cols, float* dst, nint dstStride)
    {
        int r8 = Avx.IsSupported ? rows & ~7 : 0, c8 = cols & ~7;
        for (int r = 0; r < r8; r += 8)
        {
            for (int c = 0; c < c8; c += 8)
            {
                MatMul.Transpose8x8(src + (r * srcStride) + c, srcStride, dst + (c * dstStride) + r, dstStride);
            }
        }

        for (int r = 0; r < rows; r++)
        {
            for (int c = r < r8 ? c8 : 0; c < cols; c++)
            {
                dst[(c * dstStride) + r] = src[(r * srcStride) + c];
            }
        }
    }

    /// <summary>dst[j·stride + i] += tile[j·dp + i] for j &lt; n, i &lt; d.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AddRows<TW, TV>(float* tile, int dp, int n, int d, float* dst, long stride)
        where TW : struct, IVectorWidth<TV>
        where TV : struct
    {
        int w = TW.Count;
        for (int j = 0; j < n; j++, tile += dp, dst += stride)
        {
            int i = 0;
            for (; i + w <= d; i += w)
            {
                TW.Store(TW.Add(TW.Load(dst + i), TW.Load(tile + i)), dst + i);
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
    private static TV Exp2<TW, TV>(TV x)
        where TW : struct, IVectorWidth<TV>
        where TV : struct
    {
        TV magic = TW.Create(12582912f + 127f);
        x = TW.MaxNative(x, TW.Create(-127f));
        TV t = TW.Add(x, magic);
        TV f = TW.Subtract(x, TW.Subtract(t, magic));
        TV p = TW.FusedMultiplyAdd(TW.Create(1.535336188319500e-4f), f, TW.Create(1.339887440266574e-3f));
        p = TW.FusedMultiplyAdd(p, f, TW.Create(9.618437357674640e-3f));
        p = TW.FusedMultiplyAdd(p, f, TW.Create(5.550332471162809e-2f));
        p = TW.FusedMultiplyAdd(p, f, TW.Create(2.402264791363012e-1f));
        p = TW.FusedMultiplyAdd(p, f, TW.Create(6.931472028550421e-1f));
        p = TW.FusedMultiplyAdd(p, f, TW.Create(1f));
        return TW.Multiply(p, TW.ShiftLeftBits(t, 23)); // · 2^n
    }
}
