// GEMM micro-kernels: C tile (MR×NR) = A micro-panel (kc×MR, packed k-major) · B micro-panel (kc×NR, packed k-major),
// accumulators held in registers for the whole kc loop, then stored as C = alpha·acc (overwrite) or
// C = fma(acc, alpha, C) (or non-temporal C = alpha·acc for huge outputs). One kernel per width, plus, for outputs at
// most 16 wide, a V512 16×16 tile and "Rows" variants reading a row-major A in place; the driver (MatMul.cs) handles
// edges and blocking. The V512 and V256 kernels also prefetch a caller-chosen line every 4 k steps (the next B
// panel) and, when they accumulate, the C tile before the k loop.
// Deliberately not: edge handling (edge tiles go through a scratch tile), k-loop unrolling (the JIT's loop is 16 FMAs,
// 2 loads and 8 broadcasts per k step with no spills; checked with DOTNET_JitDisasm).
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace MiniSeq.Kernels;

public static unsafe partial class MatMul
{
    internal const int MrV512 = 8;
    internal const int NrV512 = 32;
    internal const int MrV512Narrow = 16;
    internal const int NrV512Narrow = 16;
    internal const int MrV256 = 6;
    internal const int NrV256 = 16;
    internal const int MrV128 = 6;
    internal const int NrV128 = 8;
    internal const int MrScalar = 4;
    internal const int NrScalar = 4;
    private const int MaxTile = MrV512 * NrV512; // ≥ MrV512Narrow · NrV512Narrow

    // 8 rows × 32 columns: 16 zmm accumulators, 2 B loads and 8 broadcasts per k step (16 FMAs).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void KernelV512(int kc, float* a, float* b, float* c, nint ldc, float alpha, int store, float* prefetch)
    {
        if (store == StoreAccumulate)
        {
            // The C tile is read only after the k loop: start fetching its 16 lines now.
            for (int i = 0; i < MrV512; i++)
            {
                Sse.Prefetch0(c + (i * ldc));
                Sse.Prefetch0(c + (i * ldc) + 16);
            }
        }

        Vector512<float> c00 = default, c01 = default, c10 = default, c11 = default;
        Vector512<float> c20 = default, c21 = default, c30 = default, c31 = default;
        Vector512<float> c40 = default, c41 = default, c50 = default, c51 = default;
        Vector512<float> c60 = default, c61 = default, c70 = default, c71 = default;
        for (int p = 0; p < kc; p++)
        {
            if ((p & 3) == 0)
            {
                // One line of the caller's next B micro-panel per 4 steps (see MatMul.TileTask).
                Sse.Prefetch1(prefetch);
                prefetch += 16;
            }

            Vector512<float> b0 = Vector512.Load(b);
            Vector512<float> b1 = Vector512.Load(b + 16);
            Vector512<float> av = Vector512.Create(a[0]);
            c00 = Vector512.FusedMultiplyAdd(av, b0, c00);
            c01 = Vector512.FusedMultiplyAdd(av, b1, c01);
            av = Vector512.Create(a[1]);
            c10 = Vector512.FusedMultiplyAdd(av, b0, c10);
            c11 = Vector512.FusedMultiplyAdd(av, b1, c11);
            av = Vector512.Create(a[2]);
            c20 = Vector512.FusedMultiplyAdd(av, b0, c20);
            c21 = Vector512.FusedMultiplyAdd(av, b1, c21);
            av = Vector512.Create(a[3]);
            c30 = Vector512.FusedMultiplyAdd(av, b0, c30);
            c31 = Vector512.FusedMultiplyAdd(av, b1, c31);
            av = Vector512.Create(a[4]);
            c40 = Vector512.FusedMultiplyAdd(av, b0, c40);
            c41 = Vector512.FusedMultiplyAdd(av, b1, c41);
            av = Vector512.Create(a[5]);
            c50 = Vector512.FusedMultiplyAdd(av, b0, c50);
            c51 = Vector512.FusedMultiplyAdd(av, b1, c51);
            av = Vector512.Create(a[6]);
            c60 = Vector512.FusedMultiplyAdd(av, b0, c60);
            c61 = Vector512.FusedMultiplyAdd(av, b1, c61);
            av = Vector512.Create(a[7]);
            c70 = Vector512.FusedMultiplyAdd(av, b0, c70);
            c71 = Vector512.FusedMultiplyAdd(av, b1, c71);
            a += MrV512;
            b += NrV512;
        }

        Vector512<float> va = Vector512.Create(alpha);
        StoreRowV512(c, c00, c01, va, store);
        StoreRowV512(c + ldc, c10, c11, va, store);
        StoreRowV512(c + (2 * ldc), c20, c21, va, store);
        StoreRowV512(c + (3 * ldc), c30, c31, va, store);
        StoreRowV512(c + (4 * ldc), c40, c41, va, store);
        StoreRowV512(c + (5 * ldc), c50, c51, va, store);
        StoreRowV512(c + (6 * ldc), c60, c61, va, store);
        StoreRowV512(c + (7 * ldc), c70, c71, va, store);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreRowV512(float* c, Vector512<float> x0, Vector512<float> x1, Vector512<float> alpha, int store)
    {
        if (store == StoreStream)
        {
            Avx512F.StoreAlignedNonTemporal(c, x0 * alpha);
            Avx512F.StoreAlignedNonTemporal(c + 16, x1 * alpha);
        }
        else if (store == StoreOverwrite)
        {
            Vector512.Store(x0 * alpha, c);
            Vector512.Store(x1 * alpha, c + 16);
        }
        else
        {
            Vector512.Store(Vector512.FusedMultiplyAdd(x0, alpha, Vector512.Load(c)), c);
            Vector512.Store(Vector512.FusedMultiplyAdd(x1, alpha, Vector512.Load(c + 16)), c + 16);
        }
    }

    // 16 rows × 16 columns, for outputs at most 16 wide (LoRA's rank-16 intermediates x·Aᵀ, dy·B and dB): the 8 × 32 tile
    // would leave half its lanes idle and route every tile through the edge path. 16 zmm accumulators, 1 B load and 16
    // broadcasts per k step (16 FMAs). Same per-element arithmetic as every kernel, so the result does not change.
    // A from a packed panel, or ("Rows") read where it lies: 16 rows of a row-major op(A), lda apart — with only 16
    // output columns, transposing A into panels costs as much as the FMAs.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void KernelV512Narrow(int kc, float* a, float* b, float* c, nint ldc, float alpha, int store, float* prefetch)
        => KernelV512NarrowStrided(kc, a, 1, MrV512Narrow, b, c, ldc, alpha, store, prefetch);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void KernelV512NarrowRows(int kc, float* a, nint lda, float* b, float* c, nint ldc, float alpha, int store)
        => KernelV512NarrowStrided(kc, a, lda, 1, b, c, ldc, alpha, store, b);

    // A element (i, p) at a[i·rowStride + p·kStride]: six row pointers cover the 16 rows as [row], [row + rowStride],
    // [row + 2·rowStride] (x86 scaled-index addressing, or immediate offsets once inlined with rowStride = 1).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void KernelV512NarrowStrided(int kc, float* a, nint rowStride, nint kStride, float* b, float* c, nint ldc, float alpha, int store, float* prefetch)
    {
        if (store == StoreAccumulate)
        {
            for (int i = 0; i < MrV512Narrow; i++)
            {
                Sse.Prefetch0(c + (i * ldc));
            }
        }

        nint l = rowStride, l2 = 2 * rowStride;
        float* a0 = a, a3 = a + (3 * l), a6 = a + (6 * l), a9 = a + (9 * l), a12 = a + (12 * l), a15 = a + (15 * l);
        Vector512<float> c0 = default, c1 = default, c2 = default, c3 = default, c4 = default, c5 = default, c6 = default, c7 = default;
        Vector512<float> c8 = default, c9 = default, c10 = default, c11 = default, c12 = default, c13 = default, c14 = default, c15 = default;
        for (int p = 0; p < kc; p++)
        {
            if ((p & 3) == 0)
            {
                // One line of the caller's next B micro-panel per 4 steps (see MatMul.TileTask).
                Sse.Prefetch1(prefetch);
                prefetch += 16;
            }

            Vector512<float> b0 = Vector512.Load(b);
            c0 = Vector512.FusedMultiplyAdd(Vector512.Create(a0[0]), b0, c0);
            c1 = Vector512.FusedMultiplyAdd(Vector512.Create(a0[l]), b0, c1);
            c2 = Vector512.FusedMultiplyAdd(Vector512.Create(a0[l2]), b0, c2);
            c3 = Vector512.FusedMultiplyAdd(Vector512.Create(a3[0]), b0, c3);
            c4 = Vector512.FusedMultiplyAdd(Vector512.Create(a3[l]), b0, c4);
            c5 = Vector512.FusedMultiplyAdd(Vector512.Create(a3[l2]), b0, c5);
            c6 = Vector512.FusedMultiplyAdd(Vector512.Create(a6[0]), b0, c6);
            c7 = Vector512.FusedMultiplyAdd(Vector512.Create(a6[l]), b0, c7);
            c8 = Vector512.FusedMultiplyAdd(Vector512.Create(a6[l2]), b0, c8);
            c9 = Vector512.FusedMultiplyAdd(Vector512.Create(a9[0]), b0, c9);
            c10 = Vector512.FusedMultiplyAdd(Vector512.Create(a9[l]), b0, c10);
            c11 = Vector512.FusedMultiplyAdd(Vector512.Create(a9[l2]), b0, c11);
            c12 = Vector512.FusedMultiplyAdd(Vector512.Create(a12[0]), b0, c12);
            c13 = Vector512.FusedMultiplyAdd(Vector512.Create(a12[l]), b0, c13);
            c14 = Vector512.FusedMultiplyAdd(Vector512.Create(a12[l2]), b0, c14);
            c15 = Vector512.FusedMultiplyAdd(Vector512.Create(a15[0]), b0, c15);
            a0 += kStride;
            a3 += kStride;
            a6 += kStride;
            a9 += kStride;
            a12 += kStride;
            a15 += kStride;
            b += NrV512Narrow;
        }

        Vector512<float> va = Vector512.Create(alpha);
        StoreRowV512(c, c0, va, store);
        StoreRowV512(c + ldc, c1, va, store);
        StoreRowV512(c + (2 * ldc), c2, va, store);
        StoreRowV512(c + (3 * ldc), c3, va, store);
        StoreRowV512(c + (4 * ldc), c4, va, store);
        StoreRowV512(c + (5 * ldc), c5, va, store);
        StoreRowV512(c + (6 * ldc), c6, va, store);
        StoreRowV512(c + (7 * ldc), c7, va, store);
        StoreRowV512(c + (8 * ldc), c8, va, store);
        StoreRowV512(c + (9 * ldc), c9, va, store);
        StoreRowV512(c + (10 * ldc), c10, va, store);
        StoreRowV512(c + (11 * ldc), c11, va, store);
        StoreRowV512(c + (12 * ldc), c12, va, store);
        StoreRowV512(c + (13 * ldc), c13, va, store);
        StoreRowV512(c + (14 * ldc), c14, va, store);
        StoreRowV512(c + (15 * ldc), c15, va, store);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreRowV512(float* c, Vector512<float> x, Vector512<float> alpha, int store)
    {
        if (store == StoreStream)
        {
            Avx512F.StoreAlignedNonTemporal(c, x * alpha);
        }
        else if (store == StoreOverwrite)
        {
            Vector512.Store(x * alpha, c);
        }
        else
        {
            Vector512.Store(Vector512.FusedMultiplyAdd(x, alpha, Vector512.Load(c)), c);
        }
    }

    // 6 rows × 16 columns: 12 ymm accumulators, 2 B loads and 6 broadcasts per k step (12 FMAs). A from a packed panel,
    // or ("Rows", for outputs at most 16 wide: one B panel, so packing A would be pure overhead) read where it lies.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void KernelV256(int kc, float* a, float* b, float* c, nint ldc, float alpha, int store, float* prefetch)
        => KernelV256Strided(kc, a, 1, MrV256, b, c, ldc, alpha, store, prefetch);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void KernelV256Rows(int kc, float* a, nint lda, float* b, float* c, nint ldc, float alpha, int store)
        => KernelV256Strided(kc, a, lda, 1, b, c, ldc, alpha, store, b);

    // A element (i, p) at a[i·rowStride + p·kStride], from two row pointers: [row], [row + rowStride], [row + 2·rowStride].
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void KernelV256Strided(int kc, float* a, nint rowStride, nint kStride, float* b, float* c, nint ldc, float alpha, int store, float* prefetch)
    {
        if (store == StoreAccumulate)
        {
            // The C tile is read only after the k loop: start fetching its lines now (a row may straddle two).
            for (int i = 0; i < MrV256; i++)
            {
                Sse.Prefetch0(c + (i * ldc));
                Sse.Prefetch0(c + (i * ldc) + 15);
            }
        }

        nint l = rowStride, l2 = 2 * rowStride;
        float* a0 = a, a3 = a + (3 * l);
        Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default;
        Vector256<float> c20 = default, c21 = default, c30 = default, c31 = default;
        Vector256<float> c40 = default, c41 = default, c50 = default, c51 = default;
        for (int p = 0; p < kc; p++)
        {
            if ((p & 3) == 0)
            {
                // One line of the caller's next B micro-panel per 4 steps (see MatMul.TileTask).
                Sse.Prefetch1(prefetch);
                prefetch += 16;
            }

            Vector256<float> b0 = Vector256.Load(b);
            Vector256<float> b1 = Vector256.Load(b + 8);
            Vector256<float> av = Vector256.Create(a0[0]);
            c00 = Vector256.FusedMultiplyAdd(av, b0, c00);
            c01 = Vector256.FusedMultiplyAdd(av, b1, c01);
            av = Vector256.Create(a0[l]);
            c10 = Vector256.FusedMultiplyAdd(av, b0, c10);
            c11 = Vector256.FusedMultiplyAdd(av, b1, c11);
            av = Vector256.Create(a0[l2]);
            c20 = Vector256.FusedMultiplyAdd(av, b0, c20);
            c21 = Vector256.FusedMultiplyAdd(av, b1, c21);
            av = Vector256.Create(a3[0]);
            c30 = Vector256.FusedMultiplyAdd(av, b0, c30);
            c31 = Vector256.FusedMultiplyAdd(av, b1, c31);
            av = Vector256.Create(a3[l]);
            c40 = Vector256.FusedMultiplyAdd(av, b0, c40);
            c41 = Vector256.FusedMultiplyAdd(av, b1, c41);
            av = Vector256.Create(a3[l2]);
            c50 = Vector256.FusedMultiplyAdd(av, b0, c50);
            c51 = Vector256.FusedMultiplyAdd(av, b1, c51);
            a0 += kStride;
            a3 += kStride;
            b += NrV256;
        }

        Vector256<float> va = Vector256.Create(alpha);
        StoreRowV256(c, c00, c01, va, store);
        StoreRowV256(c + ldc, c10, c11, va, store);
        StoreRowV256(c + (2 * ldc), c20, c21, va, store);
        StoreRowV256(c + (3 * ldc), c30, c31, va, store);
        StoreRowV256(c + (4 * ldc), c40, c41, va, store);
        StoreRowV256(c + (5 * ldc), c50, c51, va, store);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreRowV256(float* c, Vector256<float> x0, Vector256<float> x1, Vector256<float> alpha, int store)
    {
        if (store != StoreAccumulate)
        {
            Vector256.Store(x0 * alpha, c);
            Vector256.Store(x1 * alpha, c + 8);
        }
        else
        {
            Vector256.Store(Vector256.FusedMultiplyAdd(x0, alpha, Vector256.Load(c)), c);
            Vector256.Store(Vector256.FusedMultiplyAdd(x1, alpha, Vector256.Load(c + 8)), c + 8);
        }
    }

    // 6 rows × 8 columns: the V256 tile's shape at half the width (12 xmm accumulators + 2 B loads + 1 broadcast fit
    // the 16 xmm registers of SSE/AVX, and the 32 of AdvSimd). The path for MINISEQ_FORCE_ISA=V128 and for CPUs whose
    // widest FMA is 128-bit (Arm64).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void KernelV128(int kc, float* a, float* b, float* c, nint ldc, float alpha, int store, float* prefetch)
    {
        Vector128<float> c00 = default, c01 = default, c10 = default, c11 = default;
        Vector128<float> c20 = default, c21 = default, c30 = default, c31 = default;
        Vector128<float> c40 = default, c41 = default, c50 = default, c51 = default;
        for (int p = 0; p < kc; p++)
        {
            Vector128<float> b0 = Vector128.Load(b);
            Vector128<float> b1 = Vector128.Load(b + 4);
            Vector128<float> av = Vector128.Create(a[0]);
            c00 = Vector128.FusedMultiplyAdd(av, b0, c00);
            c01 = Vector128.FusedMultiplyAdd(av, b1, c01);
            av = Vector128.Create(a[1]);
            c10 = Vector128.FusedMultiplyAdd(av, b0, c10);
            c11 = Vector128.FusedMultiplyAdd(av, b1, c11);
            av = Vector128.Create(a[2]);
            c20 = Vector128.FusedMultiplyAdd(av, b0, c20);
            c21 = Vector128.FusedMultiplyAdd(av, b1, c21);
            av = Vector128.Create(a[3]);
            c30 = Vector128.FusedMultiplyAdd(av, b0, c30);
            c31 = Vector128.FusedMultiplyAdd(av, b1, c31);
            av = Vector128.Create(a[4]);
            c40 = Vector128.FusedMultiplyAdd(av, b0, c40);
            c41 = Vector128.FusedMultiplyAdd(av, b1, c41);
            av = Vector128.Create(a[5]);
            c50 = Vector128.FusedMultiplyAdd(av, b0, c50);
            c51 = Vector128.FusedMultiplyAdd(av, b1, c51);
            a += MrV128;
            b += NrV128;
        }

        Vector128<float> va = Vector128.Create(alpha);
        StoreRowV128(c, c00, c01, va, store);
        StoreRowV128(c + ldc, c10, c11, va, store);
        StoreRowV128(c + (2 * ldc), c20, c21, va, store);
        StoreRowV128(c + (3 * ldc), c30, c31, va, store);
        StoreRowV128(c + (4 * ldc), c40, c41, va, store);
        StoreRowV128(c + (5 * ldc), c50, c51, va, store);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreRowV128(float* c, Vector128<float> x0, Vector128<float> x1, Vector128<float> alpha, int store)
    {
        if (store != StoreAccumulate)
        {
            Vector128.Store(x0 * alpha, c);
            Vector128.Store(x1 * alpha, c + 4);
        }
        else
        {
            Vector128.Store(Vector128.FusedMultiplyAdd(x0, alpha, Vector128.Load(c)), c);
            Vector128.Store(Vector128.FusedMultiplyAdd(x1, alpha, Vector128.Load(c + 4)), c + 4);
        }
    }

    // 4 rows × 4 columns of scalars; the portable fallback (and the check that the blocking logic is ISA-independent).
    private static void KernelScalar(int kc, float* a, float* b, float* c, nint ldc, float alpha, int store, float* prefetch)
    {
        float* acc = stackalloc float[MrScalar * NrScalar];
        for (int i = 0; i < MrScalar * NrScalar; i++)
        {
            acc[i] = 0f;
        }

        for (int p = 0; p < kc; p++)
        {
            for (int i = 0; i < MrScalar; i++)
            {
                float ai = a[i];
                for (int j = 0; j < NrScalar; j++)
                {
                    acc[(i * NrScalar) + j] = MathF.FusedMultiplyAdd(ai, b[j], acc[(i * NrScalar) + j]);
                }
            }

            a += MrScalar;
            b += NrScalar;
        }

        for (int i = 0; i < MrScalar; i++)
        {
            for (int j = 0; j < NrScalar; j++)
            {
                float x = acc[(i * NrScalar) + j];
                c[(i * ldc) + j] = store != StoreAccumulate ? x * alpha : MathF.FusedMultiplyAdd(x, alpha, c[(i * ldc) + j]);
            }
        }
    }
}
