// GEMM packing: copies a slice of op(A) or op(B) into a k-major micro-panel (kc rows of W floats, zero-padded past
// the w valid lanes) so the micro-kernel reads both operands contiguously. The two source layouts are "contiguous"
// (the W lanes are adjacent in memory: A transposed, B plain) and "transposed" (each lane is a row running along k:
// A plain, B transposed), the latter done with 8×8 AVX transposes. The source is fp32, or bf16 (a frozen weight as B)
// widened exactly while copying (bits << 16), so the packed panel holds the same floats as packing the widened matrix.
// Deliberately not: scaling by alpha (applied when C is stored) or any other arithmetic.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace MiniSeq.Kernels;

public static unsafe partial class MatMul
{
    /// <summary>
    /// Packs <paramref name="cols"/> adjacent lanes into ⌈cols/W⌉ panels: panel q gets dst[q·panelStride + p·W + j] =
    /// src[p·ld + q·W + j] for p &lt; kc, zero past the last valid lane. Walks 16 source rows at a time across all
    /// panels: the rows stay in L1 and each panel receives one contiguous run (a row-by-row walk would store to every
    /// panel at a power-of-two stride, thrashing one L1 set; a panel-by-panel walk would re-read each row many times).
    /// <typeparamref name="T"/> is float or ushort (bf16 bits, widened).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackContiguous<T>(T* src, nint ld, int kc, int cols, int width, float* dst, nint panelStride)
        where T : unmanaged
    {
        const int RowBlock = 16;
        int fullPanels = cols / width;
        int tail = cols - (fullPanels * width);
        for (int p0 = 0; p0 < kc; p0 += RowBlock)
        {
            int rows = Math.Min(RowBlock, kc - p0);
            if (Sse.IsSupported && p0 + RowBlock < kc)
            {
                // The next block's rows are short strided runs the hardware prefetcher does not catch well.
                int next = Math.Min(RowBlock, kc - p0 - RowBlock);
                for (int p = 0; p < next; p++)
                {
                    byte* row = (byte*)(src + ((p0 + RowBlock + p) * ld));
                    for (int offset = 0; offset < cols * sizeof(T); offset += 64)
                    {
                        Sse.Prefetch0(row + offset);
                    }
                }
            }

            for (int q = 0; q < fullPanels; q++)
            {
                T* s = src + (p0 * ld) + (q * width);
                float* d = dst + (q * panelStride) + (p0 * width);
                CopyRows(s, ld, rows, width, d);
            }

            if (tail > 0)
            {
                T* s = src + (p0 * ld) + (fullPanels * width);
                float* d = dst + (fullPanels * panelStride) + (p0 * width);
                for (int p = 0; p < rows; p++)
                {
                    int j = 0;
                    for (; j < tail; j++)
                    {
                        d[j] = Widen(s + j);
                    }

                    for (; j < width; j++)
                    {
                        d[j] = 0f;
                    }

                    s += ld;
                    d += width;
                }
            }
        }
    }

    // d[p·W .. p·W+W) = s[p·ld .. p·ld+W) for p < rows.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void CopyRows<T>(T* s, nint ld, int rows, int width, float* d)
        where T : unmanaged
    {
        if (width == 32 && Vector512.IsHardwareAccelerated)
        {
            for (int p = 0; p < rows; p++)
            {
                Vector512.Store(Load16(s), d);
                Vector512.Store(Load16(s + 16), d + 16);
                s += ld;
                d += 32;
            }
        }
        else if (width == 6 && typeof(T) == typeof(float) && Vector128.IsHardwareAccelerated)
        {
            // The V256 and V128 A panels (MR = 6): 4 lanes by vector, 2 by scalar moves.
            for (int p = 0; p < rows; p++)
            {
                Vector128.Store(Vector128.Load((float*)s), d);
                d[4] = *(float*)(s + 4);
                d[5] = *(float*)(s + 5);
                s += ld;
                d += 6;
            }
        }
        else if (width % 8 == 0 && Vector256.IsHardwareAccelerated)
        {
            for (int p = 0; p < rows; p++)
            {
                for (int j = 0; j < width; j += 8)
                {
                    Vector256.Store(Load8(s + j), d + j);
                }

                s += ld;
                d += width;
            }
        }
        else
        {
            for (int p = 0; p < rows; p++)
            {
                for (int j = 0; j < width; j++)
                {
                    d[j] = Widen(s + j);
                }

                s += ld;
                d += width;
            }
        }
    }

    /// <summary>dst[p·W + r] = src[r·ld + p] for p &lt; kc, r &lt; w; zero for w ≤ r &lt; W (<typeparamref name="T"/>: float or bf16 bits).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackTransposed<T>(T* src, nint ld, int kc, int w, int width, float* dst)
        where T : unmanaged
    {
        int r0 = 0;
        if (Avx.IsSupported)
        {
            // Groups of 8 lanes: 8×8 register transposes along k, scalar for the k tail. An A panel of the V256/V128
            // kernels (MR = 6, W = 6) is one group of 6 lanes, transposed with 2 zero rows and stored at a stride of 6
            // in increasing k: each store's last 2 lanes (from the zero rows) land on the next k step's first 2 and are
            // overwritten by it; the last store's spill lands in the panel's padding (PanelPad).
            int kc8 = kc & ~7;
            for (int lanes; (lanes = w - r0 >= 8 ? 8 : w - r0 == 6 && width == 6 ? 6 : 0) > 0; r0 += lanes)
            {
                T* s = src + (r0 * ld);
                for (int p = 0; p < kc8; p += 8)
                {
                    if ((p & 15) == 0 && Sse.IsSupported)
                    {
                        // Rows a page or more apart defeat the hardware prefetcher: fetch 64 elements ahead.
                        T* ahead = s + p + 64;
                        for (int r = 0; r < lanes; r++)
                        {
                            Sse.Prefetch0(ahead + (r * ld));
                        }
                    }

                    Transpose8x8(s + p, ld, dst + (p * width) + r0, width, lanes);
                }

                for (int p = kc8; p < kc; p++)
                {
                    for (int r = 0; r < lanes; r++)
                    {
                        dst[(p * width) + r0 + r] = Widen(s + (r * ld) + p);
                    }
                }
            }
        }

        // Remaining lanes one row at a time (each row is contiguous along k), then zero padding.
        for (int r = r0; r < w; r++)
        {
            T* s = src + (r * ld);
            for (int p = 0; p < kc; p++)
            {
                dst[(p * width) + r] = Widen(s + p);
            }
        }

        if (w < width)
        {
            for (int p = 0; p < kc; p++)
            {
                new Span<float>(dst + (p * width) + w, width - w).Clear();
            }
        }
    }

    // Reads rows s[r·ld .. r·ld+8) for r < rows (8, or 6 with zeros for rows 6 and 7) and writes column q of that
    // block to d[q·dstStride .. +8), q in increasing order. Needs AVX. Also the block transpose of flash attention's
    // query-major ↔ lane-major copies.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Transpose8x8<T>(T* s, nint ld, float* d, nint dstStride, int rows = 8)
        where T : unmanaged
    {
        Vector256<float> r0 = Load8(s);
        Vector256<float> r1 = Load8(s + ld);
        Vector256<float> r2 = Load8(s + (2 * ld));
        Vector256<float> r3 = Load8(s + (3 * ld));
        Vector256<float> r4 = Load8(s + (4 * ld));
        Vector256<float> r5 = Load8(s + (5 * ld));
        Vector256<float> r6 = rows == 8 ? Load8(s + (6 * ld)) : Vector256<float>.Zero;
        Vector256<float> r7 = rows == 8 ? Load8(s + (7 * ld)) : Vector256<float>.Zero;

        Vector256<float> t0 = Avx.UnpackLow(r0, r1);
        Vector256<float> t1 = Avx.UnpackHigh(r0, r1);
        Vector256<float> t2 = Avx.UnpackLow(r2, r3);
        Vector256<float> t3 = Avx.UnpackHigh(r2, r3);
        Vector256<float> t4 = Avx.UnpackLow(r4, r5);
        Vector256<float> t5 = Avx.UnpackHigh(r4, r5);
        Vector256<float> t6 = Avx.UnpackLow(r6, r7);
        Vector256<float> t7 = Avx.UnpackHigh(r6, r7);

        Vector256<float> u0 = Avx.Shuffle(t0, t2, 0x44);
        Vector256<float> u1 = Avx.Shuffle(t0, t2, 0xEE);
        Vector256<float> u2 = Avx.Shuffle(t1, t3, 0x44);
        Vector256<float> u3 = Avx.Shuffle(t1, t3, 0xEE);
        Vector256<float> u4 = Avx.Shuffle(t4, t6, 0x44);
        Vector256<float> u5 = Avx.Shuffle(t4, t6, 0xEE);
        Vector256<float> u6 = Avx.Shuffle(t5, t7, 0x44);
        Vector256<float> u7 = Avx.Shuffle(t5, t7, 0xEE);

        Avx.Store(d, Avx.Permute2x128(u0, u4, 0x20));
        Avx.Store(d + dstStride, Avx.Permute2x128(u1, u5, 0x20));
        Avx.Store(d + (2 * dstStride), Avx.Permute2x128(u2, u6, 0x20));
        Avx.Store(d + (3 * dstStride), Avx.Permute2x128(u3, u7, 0x20));
        Avx.Store(d + (4 * dstStride), Avx.Permute2x128(u0, u4, 0x31));
        Avx.Store(d + (5 * dstStride), Avx.Permute2x128(u1, u5, 0x31));
        Avx.Store(d + (6 * dstStride), Avx.Permute2x128(u2, u6, 0x31));
        Avx.Store(d + (7 * dstStride), Avx.Permute2x128(u3, u7, 0x31));
    }

    // Source elements as floats: float as is; ushort is bf16 bits, widened exactly (bits << 16). The type tests are
    // JIT-time constants, so each instantiation compiles to its own plain load.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Widen<T>(T* p)
        where T : unmanaged
        => typeof(T) == typeof(float) ? *(float*)p : BitConverter.UInt32BitsToSingle((uint)*(ushort*)p << 16);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Load8<T>(T* p)
        where T : unmanaged
        => typeof(T) == typeof(float) ? Vector256.Load((float*)p)
            : Vector256.ShiftLeft(Vector256.WidenLower(Vector128.Load((ushort*)p).ToVector256Unsafe()), 16).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Load16<T>(T* p)
        where T : unmanaged
        => typeof(T) == typeof(float) ? Vector512.Load((float*)p)
            : Vector512.ShiftLeft(Vector512.WidenLower(Vector256.Load((ushort*)p).ToVector512Unsafe()), 16).AsSingle();
}
