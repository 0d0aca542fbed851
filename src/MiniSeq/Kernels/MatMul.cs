// Single-precision GEMM, GotoBLAS/BLIS structure: op(B) is packed once per call into NR-wide micro-panels (in
// parallel), then the output is cut into fixed MC×NC tiles; each tile packs its own MR-row micro-panels of op(A) per
// KC slice into a per-thread buffer and runs a register-blocked micro-kernel (MatMul.Kernels.cs) over them.
// Packing absorbs every transpose, so there is one micro-kernel per width (IsaWidth: V512, V256, V128, Scalar, chosen
// by KernelSelector.TiledWidth; a forced width is capped at the widest with hardware FMA). Threads split output tiles only (never k)
// and every C element is reduced in the same fixed k order whatever the tiling or thread count, so results are
// bit-identical for any KernelThreads.ThreadCount. B may be stored as bf16 bits (GemmBf16B, a frozen bf16 weight): it is
// widened exactly while packed, so that GEMM equals the fp32 one on the widened B bit for bit.
// Deliberately not: a general BLAS (no column-major entry, no complex/double), no k-splitting for short-wide shapes,
// no runtime-emitted machine code.
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;
using MiniSeq.Threading;

namespace MiniSeq.Kernels;

/// <summary>Single-precision matrix multiply (row-major BLAS semantics).</summary>
[SkipLocalsInit]
public static unsafe partial class MatMul
{
    // Depth of one packed slice of k: a KC×NR B micro-panel (32 KiB for NR = 32) stays in L1 while the MC×KC A block
    // (≈256 KiB) stays in L2. Every output tile uses the same KC slices, which fixes the k reduction order.
    internal const int KC = 256;

    // Rows of k packed at once: bounds the packed op(B) to n × KSuper floats (a multiple of KC, so slices line up).
    public const int KSuper = 2048;

    // Target rows per output tile (A block in L2) and maximum columns per output tile.
    private const int McTarget = 256;
    private const int NcMax = 2048;

    // Tiles wanted per GEMM so both cores get balanced work (dynamic claiming evens out the rest).
    private const int MinTiles = 8;

    // Below this many multiply-adds a GEMM runs on the calling thread only (a pool dispatch costs microseconds).
    private const long ParallelThreshold = 1L << 20;

    // Extra floats between packed panels (64 bytes) so panels are not a power-of-two apart, which would map the same
    // row of every panel to one cache set.
    private const int PanelPad = 16;

    // Outputs at least this large (bytes) and written in a single k pass use non-temporal stores (≈ half the L3).
    private const long StreamThresholdBytes = 16L << 20;

    // Micro-kernel store modes: C = fma(acc, alpha, C); C = acc·alpha; C = acc·alpha with non-temporal stores.
    internal const int StoreAccumulate = 0;
    internal const int StoreOverwrite = 1;
    internal const int StoreStream = 2;

    // Per-thread packing buffers, allocated on first use and grown (never shrunk); 64-byte aligned native memory.
    [ThreadStatic] private static float* t_packA;
    [ThreadStatic] private static nint t_packACapacity;
    [ThreadStatic] private static float* t_packB;
    [ThreadStatic] private static nint t_packBCapacity;

    /// <summary>The width the public Gemm uses: <see cref="KernelSelector.TiledWidth"/> (MINISEQ_FORCE_ISA or the widest, capped at the widest with FMA).</summary>
    internal static IsaWidth DefaultVariant => KernelSelector.TiledWidth;

    /// <summary>The widest micro-kernel this machine runs with hardware FMA.</summary>
    internal static IsaWidth BestVariant => KernelSelector.WidestFma;

    /// <summary>Whether <paramref name="variant"/> can run on this machine.</summary>
    internal static bool IsSupported(IsaWidth variant) => variant <= KernelSelector.WidestFma;

    /// <summary>
    /// C (m×n, row stride ldc) = beta·C + alpha·op(A)·op(B). op(A) is m×k: A stored m×k (lda ≥ k), or if
    /// <paramref name="transA"/> A stored k×m (lda ≥ m). op(B) is k×n: B stored k×n (ldb ≥ n), or if
    /// <paramref name="transB"/> B stored n×k (ldb ≥ k). beta is normally 0 (C is overwritten and never read, so it may
    /// hold garbage) or 1 (accumulate); other values scale C first.
    /// Multi-threaded over output tiles when large; runs on the calling thread inside a KernelThreads job.
    /// </summary>
    /// <remarks>
    /// Effectively computes, per element, alpha·Σ_p op(A)[i,p]·op(B)[p,j] in fp32 with fused multiply-adds, k summed
    /// in slices of 256 in increasing order. Results do not depend on the thread count.
    /// </remarks>
    public static void Gemm(bool transA, bool transB, int m, int n, int k, float alpha, float* a, int lda, float* b, int ldb, float beta, float* c, int ldc)
        => Gemm(KernelSelector.TiledWidth, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);

    /// <summary><see cref="Gemm(bool, bool, int, int, int, float, float*, int, float*, int, float, float*, int)"/> with a forced micro-kernel variant (for tests and benchmarks).</summary>
    /// <remarks>An unsupported variant falls back to the widest supported one.</remarks>
    internal static void Gemm(IsaWidth variant, bool transA, bool transB, int m, int n, int k, float alpha, float* a, int lda, float* b, int ldb, float beta, float* c, int ldc)
        => Gemm<float>(variant, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);

    /// <summary>
    /// <see cref="Gemm(bool, bool, int, int, int, float, float*, int, float*, int, float, float*, int)"/> with B stored as
    /// bfloat16 bits (a frozen weight kept in bf16): C = beta·C + alpha·op(A)·op(widen(B)), with the same layouts and
    /// strides (in elements) as the fp32 call.
    /// </summary>
    /// <remarks>
    /// B is widened exactly (bits &lt;&lt; 16) while it is packed and the packed panels are fp32, so the result is bit for
    /// bit the fp32 Gemm's on the widened B, at every width and thread count. Only B's memory traffic halves.
    /// </remarks>
    public static void GemmBf16B(bool transA, bool transB, int m, int n, int k, float alpha, float* a, int lda, ushort* b, int ldb, float beta, float* c, int ldc)
        => Gemm(KernelSelector.TiledWidth, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);

    /// <summary><see cref="GemmBf16B(bool, bool, int, int, int, float, float*, int, ushort*, int, float, float*, int)"/> with a forced micro-kernel variant (for tests).</summary>
    internal static void GemmBf16B(IsaWidth variant, bool transA, bool transB, int m, int n, int k, float alpha, float* a, int lda, ushort* b, int ldb, float beta, float* c, int ldc)
        => Gemm<ushort>(variant, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);

    // TB is B's element type: float, or ushort (bf16 bits). It only changes how B is packed (PackBTask<TB>).
    private static void Gemm<TB>(IsaWidth variant, bool transA, bool transB, int m, int n, int k, float alpha, float* a, int lda, TB* b, int ldb, float beta, float* c, int ldc)
        where TB : unmanaged
    {
        ArgumentOutOfRangeException.ThrowIfNegative(m);
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        ArgumentOutOfRangeException.ThrowIfNegative(k);
        ArgumentOutOfRangeException.ThrowIfLessThan(lda, transA ? m : k);
        ArgumentOutOfRangeException.ThrowIfLessThan(ldb, transB ? k : n);
        ArgumentOutOfRangeException.ThrowIfLessThan(ldc, n);
        if (m == 0 || n == 0)
        {
            return;
        }

        if (k == 0 || alpha == 0f)
        {
            ScaleC(m, n, beta, c, ldc);
            return;
        }

        if (beta != 0f && beta != 1f)
        {
            ScaleC(m, n, beta, c, ldc);
            beta = 1f;
        }

        variant = KernelSelector.CapToFma(variant);

        // A long k (e.g. a weight gradient summed over every token) is processed in super-slices of KSuper rows so the
        // packed op(B) stays bounded (n × KSuper floats) instead of growing with k. Each super-slice adds its KC slices
        // to C in the same increasing order as one pass would, so the result is bit-identical.
        if (k > KSuper)
        {
            for (int k0 = 0; k0 < k; k0 += KSuper)
            {
                int ks = Math.Min(KSuper, k - k0);
                float* aSlice = transA ? a + ((nint)k0 * lda) : a + k0;
                TB* bSlice = transB ? b + k0 : b + ((nint)k0 * ldb);
                Gemm(variant, transA, transB, m, n, ks, alpha, aSlice, lda, bSlice, ldb, k0 == 0 ? beta : 1f, c, ldc);
            }

            return;
        }

        var job = new GemmJob
        {
            TransA = transA,
            TransB = transB,
            M = m,
            N = n,
            K = k,
            Alpha = alpha,
            A = a,
            Lda = lda,
            B = b,
            Ldb = ldb,
            C = c,
            Ldc = ldc,
            Overwrite = beta == 0f,
        };

        switch (variant)
        {
            case IsaWidth.V512 when n <= NrV512Narrow:
                job.Mr = MrV512Narrow;
                job.Nr = NrV512Narrow;
                job.Kernel = &KernelV512Narrow;
                job.RowsKernel = transA ? null : &KernelV512NarrowRows;
                break;
            case IsaWidth.V512:
                job.Mr = MrV512;
                job.Nr = NrV512;
                job.Kernel = &KernelV512;
                break;
            case IsaWidth.V256:
                job.Mr = MrV256;
                job.Nr = NrV256;
                job.Kernel = &KernelV256;
                job.RowsKernel = transA || n > NrV256 ? null : &KernelV256Rows;
                break;
            case IsaWidth.V128:
                job.Mr = MrV128;
                job.Nr = NrV128;
                job.Kernel = &KernelV128;
                break;
            default:
                job.Mr = MrScalar;
                job.Nr = NrScalar;
                job.Kernel = &KernelScalar;
                break;
        }

        // A huge C written in one pass (k ≤ KC) would only evict the operands from cache: stream it past the cache
        // with non-temporal stores (full tiles land on whole aligned cache lines).
        job.Stream = job.Overwrite && k <= KC && (long)m * n * sizeof(float) >= StreamThresholdBytes
            && variant == IsaWidth.V512 && ((nint)c & 63) == 0 && ldc % 16 == 0;

        // Output tiling: a function of the shape only (not of the thread count). Prefer splitting m (each extra n split
        // re-packs the A block) into at least MinTiles tiles of ≥ 8 micro-panel rows, then split n if still too few.
        int mBlocks = (m + McTarget - 1) / McTarget;
        mBlocks = Math.Max(mBlocks, Math.Min(MinTiles, m / (8 * job.Mr)));
        job.Mc = RoundUp((m + mBlocks - 1) / mBlocks, job.Mr);
        job.MBlocks = (m + job.Mc - 1) / job.Mc;
        int nBlocks = (n + NcMax - 1) / NcMax;
        while (job.MBlocks * nBlocks < MinTiles && n / (nBlocks + 1) >= 4 * job.Nr)
        {
            nBlocks++;
        }

        job.Nc = RoundUp((n + nBlocks - 1) / nBlocks, job.Nr);
        job.NBlocks = (n + job.Nc - 1) / job.Nc;

        // Pack all of op(B) into the caller's buffer; the tile tasks only read it while this call blocks.
        job.BPanels = (n + job.Nr - 1) / job.Nr;
        job.BPanelStride = ((nint)job.Nr * k) + PanelPad;
        job.PackedB = EnsureBuffer(ref t_packB, ref t_packBCapacity, job.BPanels * job.BPanelStride);
        job.BPanelsPerTask = (int)Math.Max(1, 65536 / ((long)job.Nr * k));
        int packTasks = (job.BPanels + job.BPanelsPerTask - 1) / job.BPanelsPerTask;

        // A packed B beyond half the L2 is mostly in L3: tiles then prefetch each next B micro-panel (see TileTask).
        job.PrefetchB = Sse.IsSupported && job.BPanels * job.BPanelStride * sizeof(float) > (512 << 10);
        int tileTasks = job.MBlocks * job.NBlocks;

        if ((long)m * n * k < ParallelThreshold || KernelThreads.ThreadCount == 1)
        {
            for (int t = 0; t < packTasks; t++)
            {
                PackBTask<TB>(&job, t);
            }

            for (int t = 0; t < tileTasks; t++)
            {
                TileTask(&job, t);
            }
        }
        else
        {
            KernelThreads.For(packTasks, &PackBTask<TB>, &job);
            KernelThreads.For(tileTasks, &TileTask, &job);
        }
    }

    private struct GemmJob
    {
        public bool TransA;
        public bool TransB;
        public bool Overwrite;
        public bool Stream;
        public bool PrefetchB;
        public int M;
        public int N;
        public int K;
        public float Alpha;
        public float* A;
        public int Lda;
        public void* B;
        public int Ldb;
        public float* C;
        public int Ldc;
        public int Mr;
        public int Nr;
        public delegate*<int, float*, float*, float*, nint, float, int, float*, void> Kernel;

        // With a single B panel (n ≤ NR) and op(A) row-major: the kernel that reads full MR-row panels of A where they
        // lie (no packing); null otherwise.
        public delegate*<int, float*, nint, float*, float*, nint, float, int, void> RowsKernel;
        public int Mc;
        public int Nc;
        public int MBlocks;
        public int NBlocks;
        public float* PackedB;
        public int BPanels;
        public int BPanelsPerTask;
        public nint BPanelStride;
    }

    // Packs B panels [t·BPanelsPerTask, …): panel jp holds op(B)[0..K, jp·NR .. jp·NR+NR] as K rows of NR floats
    // (B's elements are TB: float, or bf16 bits widened on the way).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackBTask<TB>(void* context, int task)
        where TB : unmanaged
    {
        ref GemmJob job = ref Unsafe.AsRef<GemmJob>(context);
        TB* b = (TB*)job.B;
        int nr = job.Nr;
        int first = task * job.BPanelsPerTask;
        int last = Math.Min(job.BPanels, first + job.BPanelsPerTask);
        if (job.TransB)
        {
            for (int jp = first; jp < last; jp++)
            {
                int j0 = jp * nr;
                PackTransposed(b + ((nint)j0 * job.Ldb), job.Ldb, job.K, Math.Min(nr, job.N - j0), nr, job.PackedB + (jp * job.BPanelStride));
            }
        }
        else
        {
            int j0 = first * nr;
            PackContiguous(b + j0, job.Ldb, job.K, Math.Min(job.N, last * nr) - j0, nr, job.PackedB + (first * job.BPanelStride), job.BPanelStride);
        }
    }

    // Computes one MC×NC output tile over all of k, slice by slice.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void TileTask(void* context, int task)
    {
        ref GemmJob job = ref Unsafe.AsRef<GemmJob>(context);
        int mr = job.Mr;
        int nr = job.Nr;
        int k = job.K;
        int i0 = task / job.NBlocks * job.Mc;
        int j0 = task % job.NBlocks * job.Nc;
        int mc = Math.Min(job.Mc, job.M - i0);
        int nc = Math.Min(job.Nc, job.N - j0);
        int aPanels = (mc + mr - 1) / mr;
        int bPanels = (nc + nr - 1) / nr;
        nint aStride = ((nint)mr * Math.Min(KC, k)) + PanelPad;
        float* packA = EnsureBuffer(ref t_packA, ref t_packACapacity, aPanels * aStride);
        var kernel = job.Kernel;
        float alpha = job.Alpha;
        nint ldc = job.Ldc;
        float* edge = stackalloc float[MaxTile];

        for (int pc = 0; pc < k; pc += KC)
        {
            int kc = Math.Min(KC, k - pc);
            if (job.TransA)
            {
                PackContiguous(job.A + ((nint)pc * job.Lda) + i0, job.Lda, kc, mc, mr, packA, aStride);
            }
            else if (job.RowsKernel != null)
            {
                // Only a partial last panel is packed; the full ones are read in place.
                int full = (job.M - i0) / mr;
                if (full < aPanels)
                {
                    int r0 = i0 + (full * mr);
                    PackTransposed(job.A + ((nint)r0 * job.Lda) + pc, job.Lda, kc, job.M - r0, mr, packA + (full * aStride));
                }
            }
            else
            {
                for (int ip = 0; ip < aPanels; ip++)
                {
                    int r0 = i0 + (ip * mr);
                    PackTransposed(job.A + ((nint)r0 * job.Lda) + pc, job.Lda, kc, Math.Min(mr, job.M - r0), mr, packA + (ip * aStride));
                }
            }

            bool overwrite = job.Overwrite && pc == 0;
            int store = !overwrite ? StoreAccumulate : job.Stream ? StoreStream : StoreOverwrite;
            for (int jp = 0; jp < bPanels; jp++)
            {
                int cj = j0 + jp * nr;
                int w = Math.Min(nr, job.N - cj);
                float* bPanel = job.PackedB + (cj / nr * job.BPanelStride) + ((nint)pc * nr);

                // The next B micro-panel (usually in L3 only) is pulled into L2 by the kernel calls on this one, a line
                // every 4 k steps, so its first use does not stall; after the last panel of this k slice comes the
                // first panel of the next slice.
                float* bNext = !job.PrefetchB ? null
                    : jp + 1 < bPanels ? bPanel + job.BPanelStride
                    : pc + KC < k ? job.PackedB + (j0 / nr * job.BPanelStride) + ((nint)(pc + KC) * nr) : null;
                int nextLines = bNext == null ? 0 : Math.Min(KC, k - pc - (jp + 1 < bPanels ? 0 : KC)) * nr / 16;
                for (int ip = 0; ip < aPanels; ip++)
                {
                    int ci = i0 + ip * mr;
                    int h = Math.Min(mr, job.M - ci);
                    float* aPanel = packA + (ip * aStride);
                    int line = ip * (kc / 4);
                    float* prefetch = line < nextLines ? bNext + (line * 16) : aPanel;
                    float* cTile = job.C + (ci * ldc) + cj;
                    float* aRows = job.RowsKernel != null && h == mr ? job.A + ((nint)ci * job.Lda) + pc : null;
                    if (h == mr && w == nr)
                    {
                        if (aRows != null)
                        {
                            job.RowsKernel(kc, aRows, job.Lda, bPanel, cTile, ldc, alpha, store);
                        }
                        else
                        {
                            kernel(kc, aPanel, bPanel, cTile, ldc, alpha, store, prefetch);
                        }
                    }
                    else
                    {
                        // Edge tile: the kernel writes the raw sums to a scratch tile, then the valid part is merged
                        // with the same alpha/FMA arithmetic the full-tile store uses.
                        if (aRows != null)
                        {
                            job.RowsKernel(kc, aRows, job.Lda, bPanel, edge, nr, 1f, StoreOverwrite);
                        }
                        else
                        {
                            kernel(kc, aPanel, bPanel, edge, nr, 1f, StoreOverwrite, prefetch);
                        }

                        MergeEdge(edge, nr, h, w, alpha, overwrite, cTile, ldc);
                    }
                }
            }
        }

        if (job.Stream)
        {
            // Non-temporal stores are weakly ordered: make them visible before the task reports completion.
            Sse.StoreFence();
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MergeEdge(float* tile, int nr, int h, int w, float alpha, bool overwrite, float* c, nint ldc)
    {
        for (int i = 0; i < h; i++)
        {
            float* src = tile + (i * nr);
            float* dst = c + (i * ldc);
            if (overwrite)
            {
                for (int j = 0; j < w; j++)
                {
                    dst[j] = src[j] * alpha;
                }
            }
            else
            {
                for (int j = 0; j < w; j++)
                {
                    dst[j] = MathF.FusedMultiplyAdd(src[j], alpha, dst[j]);
                }
            }
        }
    }

    private static void ScaleC(int m, int n, float beta, float* c, int ldc)
    {
        if (beta == 1f)
        {
            return;
        }

        for (int i = 0; i < m; i++)
        {
            Span<float> row = new(c + ((nint)i * ldc), n);
            if (beta == 0f)
            {
                row.Clear();
            }
            else
            {
                for (int j = 0; j < row.Length; j++)
                {
                    row[j] *= beta;
                }
            }
        }
    }

    private static float* EnsureBuffer(ref float* buffer, ref nint capacity, nint floats)
    {
        if (floats > capacity)
        {
            // Grow to exactly what is asked: the largest request is bounded (KSuper) and repeats every step, so the
            // buffer settles after the first step and its size is predictable (MemoryPlanner counts it).
            nint size = floats;
            if (buffer != null)
            {
                NativeMemory.AlignedFree(buffer);
            }

            buffer = (float*)NativeMemory.AlignedAlloc((nuint)size * sizeof(float), 64);
            capacity = size;
        }

        return buffer;
    }

    private static int RoundUp(int x, int multiple) => (x + multiple - 1) / multiple * multiple;
}
