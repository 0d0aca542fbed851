// Causal grouped-query flash attention: public entry points, validation, ISA selection, parallel dispatch and
// per-thread scratch. The arithmetic lives in the partial files FlashAttention.Scalar.cs (row-wise fallback) and
// FlashAttention.Tiled.cs (tiled SIMD kernels, generic over the vector width: run here on Vector512, Vector256 and
// Vector128). The width is KernelSelector.TiledWidth (MINISEQ_FORCE_ISA or the widest, capped at the widest with FMA).
// Every mask is "query t sees keys FirstKey(t) ≤ j ≤ t": the sliding window (Mistral; query i sees key j when
// i − W < j ≤ i, transformers' masking_utils sliding_window_causal_mask_function) and the document boundaries of
// packed rows (cu_seqlens style: per-token document starts, so attention never crosses a boundary) both only raise
// FirstKey, which never decreases along a row. Key tiles before a query block's first row's FirstKey are never
// visited, so packing costs no wasted FLOPs beyond the tiles a boundary cuts through.
// ForwardQueries/BackwardQueries run one chunk of a sequence's queries against its key prefix (sequence-chunked
// layers): the same tasks and kernels, with query blocks starting at an absolute position (Args.QueryStart).
// Deliberately not here: RoPE (q and k arrive rotated), dropout, non-causal or padded masks, and any T×T buffer —
// memory stays O(T·D): output, lse and per-thread scratch sized by the tile, never by T.
// Derivation and measurements: docs/kernels/attention.md.
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using MiniSeq.Kernels.Simd;
using MiniSeq.Threading;

namespace MiniSeq.Kernels;

/// <summary>Causal grouped-query attention with O(N·D) memory: no T×T matrix is ever allocated.</summary>
public static unsafe partial class FlashAttention
{
    private const float Log2E = 1.44269504088896341f;
    private const float Ln2 = 0.693147180559945309f;

    // Query rows per task in the scalar path (the SIMD paths use 4 vectors of rows).
    private const int ScalarRowBlock = 64;

    // One growable 64-byte-aligned buffer per thread: a task uses it from start to end and never yields, so the
    // pool threads and any caller thread can run attention concurrently without sharing scratch.
    [ThreadStatic] private static float* t_scratch;
    [ThreadStatic] private static long t_scratchFloats;

    /// <summary>
    /// output = softmax(q·kᵀ/√D + causal mask)·v per (batch, head); query head h reads kv head h / (H / KvH).
    /// q (B·T, H·D), k and v (B·T, KvH·D), row = b·T + t. Overwrites output (B·T, H·D) and lse (B, H, T), the
    /// natural-log log-sum-exp of each scaled score row, which backward needs. output may be q itself: each query
    /// block's q rows are read before its output rows are written, by the one task that owns both.
    /// </summary>
    public static void Forward(float* q, float* k, float* v, int batchSize, int seqLen, int headCount, int kvHeadCount, int headDim, float* output, float* lse)
        => Forward(q, k, v, batchSize, seqLen, headCount, kvHeadCount, headDim, output, lse, isa: null);

    /// <summary>Recomputes scores per tile from q, k and lse; accumulates into dq (B·T, H·D), dk and dv (B·T, KvH·D).</summary>
    public static void Backward(float* dOutput, float* q, float* k, float* v, float* output, float* lse, int batchSize, int seqLen, int headCount, int kvHeadCount, int headDim, float* dq, float* dk, float* dv)
        => Backward(dOutput, q, k, v, output, lse, batchSize, seqLen, headCount, kvHeadCount, headDim, dq, dk, dv, isa: null);

    /// <summary>
    /// <see cref="Forward(float*, float*, float*, int, int, int, int, int, float*, float*)"/> with the masks of real
    /// models: <paramref name="slidingWindow"/> W &gt; 0 restricts query i to keys i − W &lt; j ≤ i (0: full causal);
    /// <paramref name="documentStarts"/> (B·T, or null for one document per row) gives for every token the index within
    /// its row where its document begins (<see cref="DocumentLayout.Starts"/>): keys before it are never seen.
    /// </summary>
    public static void Forward(float* q, float* k, float* v, int batchSize, int seqLen, int headCount, int kvHeadCount, int headDim, float* output, float* lse, int slidingWindow, int* documentStarts)
        => Forward(q, k, v, batchSize, seqLen, headCount, kvHeadCount, headDim, output, lse, isa: null, slidingWindow, documentStarts);

    /// <summary>Backward with the masks of the matching Forward overload. <paramref name="workspace"/>: at least
    /// <see cref="BackwardWorkspaceFloats"/> floats for the split backward's partial dk/dv (null: allocated here).
    /// <paramref name="rowDot"/>: the backward's only use of the output, D = rowsum(dO∘O) per (batch, head, query),
    /// laid out as lse, computed beforehand by <see cref="RowDot"/> (null: from <paramref name="output"/> here). With it
    /// the output is not read (it may be null), so a trainer can hand the output's buffer over as dq; the result is
    /// bit-identical.</summary>
    public static void Backward(float* dOutput, float* q, float* k, float* v, float* output, float* lse, int batchSize, int seqLen, int headCount, int kvHeadCount, int headDim, float* dq, float* dk, float* dv, int slidingWindow, int* documentStarts, float* workspace = null, float* rowDot = null)
        => Backward(dOutput, q, k, v, output, lse, batchSize, seqLen, headCount, kvHeadCount, headDim, dq, dk, dv, isa: null, slidingWindow, documentStarts, workspace, rowDot);

    /// <summary>
    /// D = rowsum(dO∘O) of <paramref name="rows"/> rows of H heads (row r, head h: dOutput and output at r·H·D + h·D)
    /// into destination[r·<paramref name="rowStride"/> + h·<paramref name="headStride"/>] — for one row of a batch laid out
    /// as lse: rowStride 1, headStride T. The backward's own sum, in its order (the same float bits).
    /// </summary>
    public static void RowDot(float* dOutput, float* output, int rows, int headCount, int headDim, float* destination, long rowStride, long headStride)
    {
        long width = (long)headCount * headDim;
        for (long r = 0; r < rows; r++)
        {
            for (int h = 0; h < headCount; h++)
            {
                float* dORow = dOutput + (r * width) + ((long)h * headDim);
                float* oRow = output + (r * width) + ((long)h * headDim);
                destination[(r * rowStride) + (h * headStride)] = Dot(dORow, oRow, headDim);
            }
        }
    }

    /// <summary>Σ x[i]·y[i] in index order: rowsum(dO∘O) as every backward path forms it.</summary>
    private static float Dot(float* x, float* y, int count)
    {
        float dot = 0;
        for (int i = 0; i < count; i++)
        {
            dot += x[i] * y[i];
        }

        return dot;
    }

    /// <summary>
    /// Floats of scratch the backward needs for partial dk/dv when it splits the query blocks of one (batch, kv head)
    /// in two (see <see cref="BackwardSplits"/>): 2·B·T·KvH·D when B·KvH is odd, else 0.
    /// </summary>
    public static long BackwardWorkspaceFloats(int batchSize, int seqLen, int kvHeadCount, int headDim)
        => BackwardSplits(batchSize, kvHeadCount, queryBlocks: 2) > 1 ? 2L * batchSize * seqLen * kvHeadCount * headDim : 0;

    /// <summary>
    /// Queries at positions [queryStart, queryStart + queryRows) of one sequence against its keys [0, queryStart +
    /// queryRows): the sequence-chunked layers' entry point, where only k and v exist for the whole sequence prefix.
    /// q and output are chunk-local (queryRows, H·D), row i = position queryStart + i; lse is chunk-local (H, queryRows);
    /// k and v are (queryStart + queryRows, KvH·D), row j = position j. <paramref name="documentStarts"/> (null, or at
    /// least queryStart + queryRows ints) is indexed by absolute position. Same masks and arithmetic as
    /// <see cref="Forward(float*, float*, float*, int, int, int, int, int, float*, float*, int, int*)"/>: when nothing
    /// is masked but causality, the chunks reproduce the full forward bit for bit.
    /// </summary>
    public static void ForwardQueries(float* q, float* k, float* v, int queryStart, int queryRows, int headCount, int kvHeadCount, int headDim, float* output, float* lse, int slidingWindow, int* documentStarts)
        => ForwardQueries(q, k, v, queryStart, queryRows, headCount, kvHeadCount, headDim, output, lse, isa: null, slidingWindow, documentStarts);

    /// <summary>
    /// Backward of <see cref="ForwardQueries(float*, float*, float*, int, int, int, int, int, float*, float*, int, int*)"/>:
    /// dOutput, q, output and dq chunk-local (queryRows, H·D), lse chunk-local (H, queryRows); k, v, dk and dv over the
    /// sequence prefix (queryStart + queryRows, KvH·D). Accumulates (+=) into dq, dk and dv (rows at or past
    /// queryStart + queryRows are never touched), so running it for every chunk, in any order, sums to the full
    /// backward. <paramref name="workspace"/>: at least <see cref="BackwardQueriesWorkspaceFloats"/> floats (null:
    /// allocated here).
    /// </summary>
    public static void BackwardQueries(float* dOutput, float* q, float* k, float* v, float* output, float* lse, int queryStart, int queryRows, int headCount, int kvHeadCount, int headDim, float* dq, float* dk, float* dv, int slidingWindow, int* documentStarts, float* workspace = null)
        => BackwardQueries(dOutput, q, k, v, output, lse, queryStart, queryRows, headCount, kvHeadCount, headDim, dq, dk, dv, isa: null, slidingWindow, documentStarts, workspace);

    /// <summary>
    /// Floats of scratch <see cref="BackwardQueries(float*, float*, float*, float*, float*, float*, int, int, int, int, int, float*, float*, float*, int, int*, float*)"/>
    /// needs for the split backward's partial dk/dv over the sequence prefix: 2·(queryStart + queryRows)·KvH·D when
    /// KvH is odd, else 0.
    /// </summary>
    public static long BackwardQueriesWorkspaceFloats(int queryStart, int queryRows, int kvHeadCount, int headDim)
        => BackwardSplits(batchSize: 1, kvHeadCount, queryBlocks: 2) > 1 ? 2L * ((long)queryStart + queryRows) * kvHeadCount * headDim : 0;

    /// <summary>
    /// Query splits per (batch, kv head) in backward: 2 when B·KvH is odd (so that MQA at batch 1 keeps both cores of a
    /// 2-core machine busy; an even count of equal tasks already balances), else 1. A function of the shape only, never
    /// of the thread count, so results stay bit-identical for any number of threads.
    /// </summary>
    internal static int BackwardSplits(int batchSize, int kvHeadCount, int queryBlocks)
        => ((long)batchSize * kvHeadCount) % 2 == 1 && queryBlocks >= 2 ? 2 : 1;

    /// <summary>The width the public entry points run at: <see cref="KernelSelector.TiledWidth"/>.</summary>
    internal static IsaWidth DefaultIsa => KernelSelector.TiledWidth;

    /// <summary><see cref="Forward(float*, float*, float*, int, int, int, int, int, float*, float*)"/> at a chosen width (null: <see cref="DefaultIsa"/>; tests force each one).</summary>
    internal static void Forward(float* q, float* k, float* v, int batchSize, int seqLen, int headCount, int kvHeadCount, int headDim, float* output, float* lse, IsaWidth? isa, int slidingWindow = 0, int* documentStarts = null)
    {
        Validate(batchSize, seqLen, headCount, kvHeadCount, headDim, slidingWindow);
        var args = new Args(q, k, v, null, output, lse, batchSize, seqLen, queryStart: 0, queryRows: seqLen, headCount, kvHeadCount, headDim, null, null, null, Resolve(isa), slidingWindow, documentStarts);
        RunForward(ref args);
    }

    /// <summary><see cref="ForwardQueries(float*, float*, float*, int, int, int, int, int, float*, float*, int, int*)"/> at a chosen width (null: <see cref="DefaultIsa"/>).</summary>
    internal static void ForwardQueries(float* q, float* k, float* v, int queryStart, int queryRows, int headCount, int kvHeadCount, int headDim, float* output, float* lse, IsaWidth? isa, int slidingWindow = 0, int* documentStarts = null)
    {
        int keys = ValidateQueries(queryStart, queryRows, headCount, kvHeadCount, headDim, slidingWindow);
        var args = new Args(q, k, v, null, output, lse, batchSize: 1, keys, queryStart, queryRows, headCount, kvHeadCount, headDim, null, null, null, Resolve(isa), slidingWindow, documentStarts);
        RunForward(ref args);
    }

    /// <summary><see cref="Backward(float*, float*, float*, float*, float*, float*, int, int, int, int, int, float*, float*, float*)"/> at a chosen width (null: <see cref="DefaultIsa"/>).</summary>
    internal static void Backward(float* dOutput, float* q, float* k, float* v, float* output, float* lse, int batchSize, int seqLen, int headCount, int kvHeadCount, int headDim, float* dq, float* dk, float* dv, IsaWidth? isa, int slidingWindow = 0, int* documentStarts = null, float* workspace = null, float* rowDot = null)
    {
        Validate(batchSize, seqLen, headCount, kvHeadCount, headDim, slidingWindow);
        var args = new Args(q, k, v, dOutput, output, lse, batchSize, seqLen, queryStart: 0, queryRows: seqLen, headCount, kvHeadCount, headDim, dq, dk, dv, Resolve(isa), slidingWindow, documentStarts)
        {
            RowDot = rowDot,
        };
        RunBackward(ref args, workspace);
    }

    /// <summary><see cref="BackwardQueries(float*, float*, float*, float*, float*, float*, int, int, int, int, int, float*, float*, float*, int, int*, float*)"/> at a chosen width (null: <see cref="DefaultIsa"/>).</summary>
    internal static void BackwardQueries(float* dOutput, float* q, float* k, float* v, float* output, float* lse, int queryStart, int queryRows, int headCount, int kvHeadCount, int headDim, float* dq, float* dk, float* dv, IsaWidth? isa, int slidingWindow = 0, int* documentStarts = null, float* workspace = null)
    {
        int keys = ValidateQueries(queryStart, queryRows, headCount, kvHeadCount, headDim, slidingWindow);
        var args = new Args(q, k, v, dOutput, output, lse, batchSize: 1, keys, queryStart, queryRows, headCount, kvHeadCount, headDim, dq, dk, dv, Resolve(isa), slidingWindow, documentStarts);
        RunBackward(ref args, workspace);
    }

    /// <summary>
    /// <see cref="Forward(float*, float*, float*, int, int, int, int, int, float*, float*, int, int*)"/> with q, k and v
    /// stored as bf16 (mixed precision): each tile's rows are widened (exactly) into per-thread scratch as the kernel
    /// reaches them, so the output and lse are, bit for bit, those of the fp32 forward on the widened tensors, and no
    /// fp32 copy of q, k or v exists.
    /// </summary>
    public static void Forward(ushort* q, ushort* k, ushort* v, int batchSize, int seqLen, int headCount, int kvHeadCount, int headDim, float* output, float* lse, int slidingWindow, int* documentStarts)
        => Forward(q, k, v, batchSize, seqLen, headCount, kvHeadCount, headDim, output, lse, isa: null, slidingWindow, documentStarts);

    /// <summary>
    /// <see cref="Backward(float*, float*, float*, float*, float*, float*, int, int, int, int, int, float*, float*, float*, int, int*, float*, float*)"/>
    /// with q, k and v stored as bf16 and <paramref name="rowDot"/> given (the output is not read): dq, dk and dv (fp32)
    /// are, bit for bit, the fp32 backward's on the widened tensors.
    /// </summary>
    public static void Backward(float* dOutput, ushort* q, ushort* k, ushort* v, float* lse, int batchSize, int seqLen, int headCount, int kvHeadCount, int headDim, float* dq, float* dk, float* dv, int slidingWindow, int* documentStarts, float* workspace, float* rowDot)
        => Backward(dOutput, q, k, v, lse, batchSize, seqLen, headCount, kvHeadCount, headDim, dq, dk, dv, isa: null, slidingWindow, documentStarts, workspace, rowDot);

    /// <summary>The bf16-input forward at a chosen width (null: <see cref="DefaultIsa"/>).</summary>
    internal static void Forward(ushort* q, ushort* k, ushort* v, int batchSize, int seqLen, int headCount, int kvHeadCount, int headDim, float* output, float* lse, IsaWidth? isa, int slidingWindow = 0, int* documentStarts = null)
    {
        Validate(batchSize, seqLen, headCount, kvHeadCount, headDim, slidingWindow);
        var args = new Args(null, null, null, null, output, lse, batchSize, seqLen, queryStart: 0, queryRows: seqLen, headCount, kvHeadCount, headDim, null, null, null, Resolve(isa), slidingWindow, documentStarts)
        {
            QBf16 = q,
            KBf16 = k,
            VBf16 = v,
        };
        RunForward(ref args);
    }

    /// <summary>The bf16-input backward at a chosen width (null: <see cref="DefaultIsa"/>).</summary>
    internal static void Backward(float* dOutput, ushort* q, ushort* k, ushort* v, float* lse, int batchSize, int seqLen, int headCount, int kvHeadCount, int headDim, float* dq, float* dk, float* dv, IsaWidth? isa, int slidingWindow = 0, int* documentStarts = null, float* workspace = null, float* rowDot = null)
    {
        Validate(batchSize, seqLen, headCount, kvHeadCount, headDim, slidingWindow);
        ThrowIfNull(rowDot, "rowDot");
        var args = new Args(null, null, null, dOutput, null, lse, batchSize, seqLen, queryStart: 0, queryRows: seqLen, headCount, kvHeadCount, headDim, dq, dk, dv, Resolve(isa), slidingWindow, documentStarts)
        {
            RowDot = rowDot,
            QBf16 = q,
            KBf16 = k,
            VBf16 = v,
        };
        RunBackward(ref args, workspace);
    }

    /// <summary>Checks the tensors forward and backward both read and sets the query blocking of the width.</summary>
    private static void PrepareBlocks(ref Args args)
    {
        if (args.QBf16 != null || args.KBf16 != null || args.VBf16 != null)
        {
            ThrowIfNull((float*)args.QBf16, "q");
            ThrowIfNull((float*)args.KBf16, "k");
            ThrowIfNull((float*)args.VBf16, "v");
        }
        else
        {
            ThrowIfNull(args.Q, "q");
            ThrowIfNull(args.K, "k");
            ThrowIfNull(args.V, "v");
        }

        if (args.RowDot == null)
        {
            ThrowIfNull(args.Output, "output");
        }

        ThrowIfNull(args.Lse, "lse");
        args.RowBlock = RowBlock(args.Isa);
        args.QueryBlocks = (args.QueryRows + args.RowBlock - 1) / args.RowBlock;
    }

    private static void RunForward(ref Args args)
    {
        PrepareBlocks(ref args);
        fixed (Args* context = &args)
        {
            KernelThreads.For(args.BatchSize * args.KvHeadCount * args.QueryBlocks, &ForwardTask, context);
        }
    }

    private static void RunBackward(ref Args args, float* workspace)
    {
        ThrowIfNull(args.DOutput, "dOutput");
        PrepareBlocks(ref args);
        ThrowIfNull(args.DQ, "dq");
        ThrowIfNull(args.DK, "dk");
        ThrowIfNull(args.DV, "dv");

        // One task per (batch, kv head, query split): it owns the dq rows of its query blocks of the group's heads and
        // writes dk/dv of its kv head — the last split into dk/dv, an earlier one into its own partial buffer, added
        // afterwards in a fixed order. No two tasks write the same float; the result is independent of the thread count.
        args.Splits = args.Isa == IsaWidth.Scalar ? 1 : BackwardSplits(args.BatchSize, args.KvHeadCount, args.QueryBlocks);
        float* owned = null;
        if (args.Splits > 1)
        {
            // Partial dk/dv cover the keys of every batch row: B·SeqLen·KvH·D floats each (BackwardWorkspaceFloats,
            // BackwardQueriesWorkspaceFloats).
            long floats = 2L * args.BatchSize * args.SeqLen * args.KvHeadCount * args.HeadDim;
            if (workspace == null)
            {
                workspace = owned = (float*)NativeMemory.AlignedAlloc((nuint)(floats * sizeof(float)), 64);
            }

            args.PartialK = workspace;
            args.PartialV = workspace + (floats / 2);
        }

        try
        {
            fixed (Args* context = &args)
            {
                KernelThreads.For(args.BatchSize * args.KvHeadCount * args.Splits, &BackwardTask, context);
                if (args.Splits > 1)
                {
                    KernelThreads.For(args.BatchSize * args.KvHeadCount, &AddPartialsTask, context);
                }
            }
        }
        finally
        {
            NativeMemory.AlignedFree(owned);
        }
    }

    /// <summary>Query rows per query block (and per task) at a width: 4 vectors of rows, or ScalarRowBlock.</summary>
    private static int RowBlock(IsaWidth isa) => isa switch
    {
        IsaWidth.V512 => 4 * Width512.Count,
        IsaWidth.V256 => 4 * Width256.Count,
        IsaWidth.V128 => 4 * Width128.Count,
        _ => ScalarRowBlock,
    };

    private static void ForwardTask(void* context, int index)
    {
        ref Args a = ref *(Args*)context;

        // A task is one query block of all the query heads of one kv head: the k/v tile it streams is then reused
        // from L1 by every head of the group. Heaviest query blocks (most keys under the causal mask) come first,
        // so the pool's dynamic claiming balances the triangle.
        int groups = a.BatchSize * a.KvHeadCount;
        int qb = a.QueryBlocks - 1 - (index / groups);
        int b = index % groups / a.KvHeadCount;
        int kvh = index % a.KvHeadCount;
        switch (a.Isa)
        {
            case IsaWidth.V512:
                ForwardGroup<Width512, Vector512<float>>(ref a, b, kvh, qb);
                break;
            case IsaWidth.V256:
                ForwardGroup<Width256, Vector256<float>>(ref a, b, kvh, qb);
                break;
            case IsaWidth.V128:
                ForwardGroup<Width128, Vector128<float>>(ref a, b, kvh, qb);
                break;
            default:
                int group = a.HeadCount / a.KvHeadCount;
                for (int h = kvh * group; h < (kvh + 1) * group; h++)
                {
                    ForwardBlockScalar(ref a, b, h, qb);
                }

                break;
        }
    }

    private static void BackwardTask(void* context, int index)
    {
        ref Args a = ref *(Args*)context;
        int split = index % a.Splits;
        int b = index / a.Splits / a.KvHeadCount;
        int kvh = index / a.Splits % a.KvHeadCount;
        int first = 0, end = a.QueryBlocks;
        if (a.Splits > 1)
        {
            int middle = SplitBlock(ref a, b);
            (first, end) = split == 0 ? (0, middle) : (middle, a.QueryBlocks);
        }

        switch (a.Isa)
        {
            case IsaWidth.V512:
                BackwardGroup<Width512, Vector512<float>>(ref a, b, kvh, first, end, split < a.Splits - 1);
                break;
            case IsaWidth.V256:
                BackwardGroup<Width256, Vector256<float>>(ref a, b, kvh, first, end, split < a.Splits - 1);
                break;
            case IsaWidth.V128:
                BackwardGroup<Width128, Vector128<float>>(ref a, b, kvh, first, end, split < a.Splits - 1);
                break;
            default:
                BackwardGroupScalar(ref a, b, kvh);
                break;
        }
    }

    /// <summary>
    /// The query block where the second split of row b begins: the one that best halves the backward's work, counted as
    /// keys visited per query block (causal triangle, window and document masks included). Depends on the inputs only.
    /// </summary>
    private static int SplitBlock(ref Args a, int b)
    {
        long total = 0;
        for (int qb = 0; qb < a.QueryBlocks; qb++)
        {
            total += BlockWork(ref a, b, qb);
        }

        long done = 0;
        for (int qb = 0; qb < a.QueryBlocks - 1; qb++)
        {
            done += BlockWork(ref a, b, qb);
            if (2 * done >= total)
            {
                return qb + 1;
            }
        }

        return a.QueryBlocks - 1;
    }

    private static long BlockWork(ref Args a, int b, int qb)
    {
        int t0 = a.QueryStart + (qb * a.RowBlock);
        int end = Math.Min(a.SeqLen, t0 + a.RowBlock);
        return end - FirstKey(ref a, b, t0);
    }

    /// <summary>
    /// Keys [first, end) the query blocks [0, <paramref name="endBlock"/>) of row b can see: from the first query's
    /// first key (FirstKey never decreases along a row) to the last query. The rows the first split's partials cover.
    /// </summary>
    private static (int First, int End) PartialKeys(ref Args a, int b, int endBlock)
        => (FirstKey(ref a, b, a.QueryStart), Math.Min(a.SeqLen, a.QueryStart + (endBlock * a.RowBlock)));

    /// <summary>dk, dv += the first split's partials, over the keys its queries can see.</summary>
    private static void AddPartialsTask(void* context, int index)
    {
        ref Args a = ref *(Args*)context;
        int b = index / a.KvHeadCount;
        int kvh = index % a.KvHeadCount;
        (int first, int keys) = PartialKeys(ref a, b, SplitBlock(ref a, b));
        long kvStride = (long)a.KvHeadCount * a.HeadDim;
        long offset = ((long)b * a.SeqLen * kvStride) + ((long)kvh * a.HeadDim);
        for (int j = first; j < keys; j++)
        {
            long row = offset + (j * kvStride);
            VectorOps.Add(a.DK + row, a.PartialK + row, a.HeadDim, a.DK + row);
            VectorOps.Add(a.DV + row, a.PartialV + row, a.HeadDim, a.DV + row);
        }
    }

    // An explicit width runs as given (tests run every width on any machine); null follows KernelSelector.
    private static IsaWidth Resolve(IsaWidth? isa) => isa ?? DefaultIsa;

    /// <summary>Validates a query chunk's shape; returns its key count queryStart + queryRows.</summary>
    private static int ValidateQueries(int queryStart, int queryRows, int headCount, int kvHeadCount, int headDim, int slidingWindow)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(queryStart);
        ArgumentOutOfRangeException.ThrowIfLessThan(queryRows, 1);
        if ((long)queryStart + queryRows > int.MaxValue)
        {
            throw new ArgumentOutOfRangeException(nameof(queryRows), $"queryStart + queryRows ({(long)queryStart + queryRows}) must fit in an int.");
        }

        int keys = queryStart + queryRows;
        Validate(batchSize: 1, keys, headCount, kvHeadCount, headDim, slidingWindow);
        return keys;
    }

    private static void Validate(int batchSize, int seqLen, int headCount, int kvHeadCount, int headDim, int slidingWindow)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(seqLen, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(headCount, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(kvHeadCount, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(headDim, 1);
        if (headCount % kvHeadCount != 0)
        {
            throw new ArgumentException($"headCount ({headCount}) must be a multiple of kvHeadCount ({kvHeadCount}).", nameof(kvHeadCount));
        }

        ArgumentOutOfRangeException.ThrowIfNegative(slidingWindow);
    }

    private static void ThrowIfNull(float* pointer, string name)
    {
        if (pointer == null)
        {
            throw new ArgumentNullException(name);
        }
    }

    /// <summary>This thread's scratch, at least <paramref name="floats"/> long and 64-byte aligned (contents undefined).</summary>
    private static float* Scratch(long floats)
    {
        if (t_scratchFloats < floats)
        {
            NativeMemory.AlignedFree(t_scratch);
            t_scratch = null;
            t_scratchFloats = 0;
            t_scratch = (float*)NativeMemory.AlignedAlloc((nuint)(floats * sizeof(float)), 64);
            t_scratchFloats = floats;
        }

        return t_scratch;
    }

    /// <summary>dst[r, i] = src[r·stride + i] for r &lt; rows, i &lt; d; zero elsewhere in (blockRows, dp).</summary>
    private static void LoadRows(float* src, long stride, int rows, int d, int dp, int blockRows, float* dst)
    {
        new Span<float>(dst, blockRows * dp).Clear();
        for (int r = 0; r < rows; r++)
        {
            new Span<float>(src + (r * stride), d).CopyTo(new Span<float>(dst + (r * dp), d));
        }
    }

    /// <summary>Software prefetch (into all cache levels) of rows [0, rows) of d floats; a no-op off x86.</summary>
    private static void PrefetchRows(float* first, long stride, int rows, int d)
        => PrefetchRows((byte*)first, stride * sizeof(float), rows, d * sizeof(float));

    /// <summary>Software prefetch of rows [0, rows) of <paramref name="rowBytes"/> bytes, <paramref name="strideBytes"/>
    /// apart (fp32 or bf16 rows); a no-op off x86.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PrefetchRows(byte* first, long strideBytes, int rows, int rowBytes)
    {
        if (!Sse.IsSupported)
        {
            return;
        }

        // A row's last line needs its own fetch only when rows do not start on a line (then a row can span one line
        // more than rowBytes/64).
        bool lineAligned = ((nint)first & 63) == 0 && strideBytes % 64 == 0 && rowBytes % 64 == 0;
        for (int r = 0; r < rows; r++)
        {
            byte* row = first + (r * strideBytes);
            for (int i = 0; i < rowBytes; i += 64)
            {
                Sse.Prefetch0(row + i);
            }

            if (!lineAligned)
            {
                Sse.Prefetch0(row + rowBytes - 1);
            }
        }
    }

    private static int RoundUp(int value, int multiple) => (value + multiple - 1) / multiple * multiple;

    /// <summary>Scratch floats a tiled task adds for bf16 inputs: one key tile's k and v rows, (Bk, D) each, and one
    /// query block's q rows, (Bq, D).</summary>
    private static long WidenedFloats(int keyTile, int rowBlock, int d) => ((2L * keyTile) + rowBlock) * d;

    /// <summary>
    /// The <paramref name="rows"/> q rows of one head of a query block starting at element <paramref name="offset"/>
    /// (row stride <paramref name="stride"/>): in place when q is fp32, else widened into <paramref name="widened"/>
    /// ((rows, D), <paramref name="rowStride"/> D).
    /// </summary>
    private static float* QueryRows(ref Args a, long offset, long stride, int rows, float* widened, out long rowStride)
    {
        if (!a.Bf16Inputs)
        {
            rowStride = stride;
            return a.Q + offset;
        }

        int d = a.HeadDim;
        for (int r = 0; r < rows; r++)
        {
            BFloat16.ToFloat(a.QBf16 + offset + (r * stride), widened + ((long)r * d), d, a.Isa);
        }

        rowStride = d;
        return widened;
    }

    /// <summary>
    /// Keys [j0, j0 + n) of one (batch, kv head), whose rows start at element <paramref name="kvOffset"/> with row
    /// stride <paramref name="kvStride"/>: fp32 k and v as they are; bf16 ones widened into <paramref name="widened"/>
    /// (k rows, then v rows at <paramref name="keyTile"/>·D). Returns k's base (and v's) such that key j's row is at
    /// base + j·stride, as the micro-kernels index them (only rows j0 … j0 + n − 1 are read).
    /// </summary>
    private static float* KeyTile(ref Args a, long kvOffset, long kvStride, int j0, int n, float* widened, int keyTile, out float* vBase, out long stride)
    {
        if (!a.Bf16Inputs)
        {
            vBase = a.V + kvOffset;
            stride = kvStride;
            return a.K + kvOffset;
        }

        int d = a.HeadDim;
        float* kRows = widened, vRows = widened + ((long)keyTile * d);
        for (int r = 0; r < n; r++)
        {
            long row = kvOffset + ((j0 + r) * kvStride);
            BFloat16.ToFloat(a.KBf16 + row, kRows + ((long)r * d), d, a.Isa);
            BFloat16.ToFloat(a.VBf16 + row, vRows + ((long)r * d), d, a.Isa);
        }

        vBase = vRows - ((long)j0 * d);
        stride = d;
        return kRows - ((long)j0 * d);
    }

    /// <summary><see cref="PrefetchRows(byte*, long, int, int)"/> of k and v rows (fp32 or bf16) from element
    /// <paramref name="offset"/>, <paramref name="stride"/> elements apart.</summary>
    private static void PrefetchKeyRows(ref Args a, long offset, long stride, int rows, int d)
    {
        int bytes = a.Bf16Inputs ? sizeof(ushort) : sizeof(float);
        byte* k = a.Bf16Inputs ? (byte*)a.KBf16 : (byte*)a.K, v = a.Bf16Inputs ? (byte*)a.VBf16 : (byte*)a.V;
        PrefetchRows(k + (offset * bytes), stride * bytes, rows, d * bytes);
        PrefetchRows(v + (offset * bytes), stride * bytes, rows, d * bytes);
    }

    /// <summary>First key query t (absolute position) of row b sees: the later of its document's start and t − W + 1 (0 when neither applies).</summary>
    private static int FirstKey(ref Args a, int b, int t)
    {
        int first = a.Window == int.MaxValue ? 0 : Math.Max(0, t - a.Window + 1);
        return a.DocumentStarts == null ? first : Math.Max(first, a.DocumentStarts[((long)b * a.SeqLen) + t]);
    }

    /// <summary>
    /// Everything a task needs, passed by pointer to the pool (no closures, no allocation). Each batch row has SeqLen
    /// keys (positions 0..SeqLen − 1) and QueryRows queries at positions QueryStart..QueryStart + QueryRows − 1, where
    /// QueryStart + QueryRows = SeqLen (the full-sequence entry points: QueryStart = 0, QueryRows = SeqLen). Query t of
    /// row b is q/output/dOutput/dq row b·QueryRows + (t − QueryStart) and lse index (b·H + h)·QueryRows + (t − QueryStart);
    /// key j is k/v/dk/dv/DocumentStarts row b·SeqLen + j. Masks and tiles work on absolute positions.
    /// </summary>
    private struct Args
    {
        public float* Q;        // (B, QueryRows, H, D)
        public float* K;        // (B, SeqLen, KvH, D)
        public float* V;        // (B, SeqLen, KvH, D)
        public float* DOutput;  // (B, QueryRows, H, D)
        public float* Output;   // (B, QueryRows, H, D)
        public float* Lse;      // (B, H, QueryRows)
        public float* DQ;       // (B, QueryRows, H, D)
        public float* DK;       // (B, SeqLen, KvH, D)
        public float* DV;       // (B, SeqLen, KvH, D)
        public int BatchSize;
        public int SeqLen;      // keys per batch row
        public int QueryStart;  // position of the first query of each batch row
        public int QueryRows;   // queries per batch row
        public int HeadCount;
        public int KvHeadCount;
        public int HeadDim;
        public int RowBlock;
        public int QueryBlocks; // ceil(QueryRows / RowBlock); block qb starts at position QueryStart + qb·RowBlock
        public float Scale;     // 1/√D
        public IsaWidth Isa;
        public int Window;      // W: query i sees keys i − W < j ≤ i; int.MaxValue when there is no sliding window
        public int* DocumentStarts; // (B, SeqLen): where each token's document begins within its row; null: one per row
        public int Splits;          // backward: query splits per (batch, kv head)
        public float* PartialK;     // backward with 2 splits: the first split's dk, dv, laid out as dk, dv
        public float* PartialV;
        public float* RowDot;       // backward: (B, H, QueryRows) rowsum(dO∘O) given by the caller, else null (from Output)
        public ushort* QBf16;       // bf16 inputs (then Q, K, V are null): q, k, v as bf16, laid out as Q, K, V
        public ushort* KBf16;
        public ushort* VBf16;

        /// <summary>Whether q, k and v are bf16 (<see cref="QBf16"/> …): widened exactly per tile, so every result is
        /// the fp32 kernel's on the widened values, bit for bit.</summary>
        public readonly bool Bf16Inputs => KBf16 != null;

        /// <summary>Whether some query may see fewer keys than the causal mask allows.</summary>
        public readonly bool Masked => Window != int.MaxValue || DocumentStarts != null;

        public Args(float* q, float* k, float* v, float* dOutput, float* output, float* lse, int batchSize, int seqLen, int queryStart, int queryRows, int headCount, int kvHeadCount, int headDim, float* dq, float* dk, float* dv, IsaWidth isa, int slidingWindow, int* documentStarts)
        {
            DocumentStarts = documentStarts;
            Window = slidingWindow > 0 ? slidingWindow : int.MaxValue;
            Q = q;
            K = k;
            V = v;
            DOutput = dOutput;
            Output = output;
            Lse = lse;
            DQ = dq;
            DK = dk;
            DV = dv;
            BatchSize = batchSize;
            SeqLen = seqLen;
            QueryStart = queryStart;
            QueryRows = queryRows;
            HeadCount = headCount;
            KvHeadCount = kvHeadCount;
            HeadDim = headDim;
            Scale = 1f / MathF.Sqrt(headDim);
            Isa = isa;
        }

        /// <summary>Row of q/output/dOutput/dq holding query position t of batch row b (times H·D for its offset).</summary>
        public readonly long QueryRow(int b, int t) => ((long)b * QueryRows) + (t - QueryStart);

        /// <summary>Index in lse of query position t of batch row b, head h.</summary>
        public readonly long LseIndex(int b, int h, int t) => ((((long)b * HeadCount) + h) * QueryRows) + (t - QueryStart);
    }
}
