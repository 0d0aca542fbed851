// Bulk fp32 ↔ bfloat16 conversion: the vector form of SafeTensors.FloatToBFloat16 / BFloat16ToFloat, bit for bit.
// Narrowing rounds to nearest, ties to even (add 0x7FFF plus the lowest kept bit, keep the top half; overflow rounds to
// infinity); a NaN keeps its sign and top payload bits and is made quiet (bit 6 of the bf16 set) so it cannot collapse
// to infinity. Widening puts the 16 bits on top of a binary32 (exact). Each vector step converts two float vectors
// (narrowed into one ushort vector, or widened from one); the tail runs the scalar SafeTensors functions. Large arrays
// run on the kernel pool over fixed chunks; every element's result is independent of width, chunking and thread count.
// Deliberately not: other rounding modes (truncation, stochastic rounding).
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using MiniSeq.IO;
using MiniSeq.Kernels.Simd;
using MiniSeq.Threading;

namespace MiniSeq.Kernels;

/// <summary>Converts arrays between fp32 and bfloat16 bits (round to nearest even; NaN stays a quiet NaN).</summary>
public static unsafe class BFloat16
{
    /// <summary>dst[i] = bf16(src[i]), identical to <see cref="SafeTensors.FloatToBFloat16"/> for every input.</summary>
    public static void FromFloat(float* src, ushort* dst, long count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        IsaWidth width = KernelSelector.Width;
        if (count < 2 * SimdLoops.ParallelGrain || KernelThreads.ThreadCount == 1)
        {
            FromFloat(src, dst, count, width);
            return;
        }

        var body = new Body { Float = src, Bits = dst, Count = count, Width = width, Narrow = true };
        KernelThreads.For(checked((int)((count + SimdLoops.ChunkSize - 1) / SimdLoops.ChunkSize)), ref body);
    }

    /// <summary>dst[i] = the float whose top 16 bits are src[i] (exact), as <see cref="SafeTensors.BFloat16ToFloat"/>.</summary>
    public static void ToFloat(ushort* src, float* dst, long count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        IsaWidth width = KernelSelector.Width;
        if (count < 2 * SimdLoops.ParallelGrain || KernelThreads.ThreadCount == 1)
        {
            ToFloat(src, dst, count, width);
            return;
        }

        var body = new Body { Float = dst, Bits = src, Count = count, Width = width, Narrow = false };
        KernelThreads.For(checked((int)((count + SimdLoops.ChunkSize - 1) / SimdLoops.ChunkSize)), ref body);
    }

    /// <summary>x[i] = widen(bf16(x[i])) in place: the values a bf16 store and reload would give.</summary>
    public static void RoundInPlace(float* x, long count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        const int Block = 4096;
        ushort* bits = stackalloc ushort[Block];
        for (long i = 0; i < count; i += Block)
        {
            int n = (int)Math.Min(Block, count - i);
            FromFloat(x + i, bits, n, KernelSelector.Width);
            ToFloat(bits, x + i, n, KernelSelector.Width);
        }
    }

    /// <summary><see cref="FromFloat(float*, ushort*, long)"/> on this thread at <paramref name="width"/>.</summary>
    internal static void FromFloat(float* src, ushort* dst, long count, IsaWidth width)
    {
        long i = 0;
        switch (width)
        {
            case IsaWidth.V512:
                for (; i <= count - 32; i += 32)
                {
                    Vector512<uint> lo = Round(Vector512.Load(src + i).AsUInt32());
                    Vector512<uint> hi = Round(Vector512.Load(src + i + 16).AsUInt32());
                    Vector512.Narrow(lo, hi).Store(dst + i);
                }

                break;
            case IsaWidth.V256:
                for (; i <= count - 16; i += 16)
                {
                    Vector256<uint> lo = Round(Vector256.Load(src + i).AsUInt32());
                    Vector256<uint> hi = Round(Vector256.Load(src + i + 8).AsUInt32());
                    Vector256.Narrow(lo, hi).Store(dst + i);
                }

                break;
            case IsaWidth.V128:
                for (; i <= count - 8; i += 8)
                {
                    Vector128<uint> lo = Round(Vector128.Load(src + i).AsUInt32());
                    Vector128<uint> hi = Round(Vector128.Load(src + i + 4).AsUInt32());
                    Vector128.Narrow(lo, hi).Store(dst + i);
                }

                break;
        }

        for (; i < count; i++)
        {
            dst[i] = SafeTensors.FloatToBFloat16(src[i]);
        }
    }

    /// <summary><see cref="ToFloat(ushort*, float*, long)"/> on this thread at <paramref name="width"/>.</summary>
    internal static void ToFloat(ushort* src, float* dst, long count, IsaWidth width)
    {
        long i = 0;
        switch (width)
        {
            case IsaWidth.V512:
                for (; i <= count - 32; i += 32)
                {
                    (Vector512<uint> lo, Vector512<uint> hi) = Vector512.Widen(Vector512.Load(src + i));
                    Vector512.ShiftLeft(lo, 16).AsSingle().Store(dst + i);
                    Vector512.ShiftLeft(hi, 16).AsSingle().Store(dst + i + 16);
                }

                break;
            case IsaWidth.V256:
                for (; i <= count - 16; i += 16)
                {
                    (Vector256<uint> lo, Vector256<uint> hi) = Vector256.Widen(Vector256.Load(src + i));
                    Vector256.ShiftLeft(lo, 16).AsSingle().Store(dst + i);
                    Vector256.ShiftLeft(hi, 16).AsSingle().Store(dst + i + 8);
                }

                break;
            case IsaWidth.V128:
                for (; i <= count - 8; i += 8)
                {
                    (Vector128<uint> lo, Vector128<uint> hi) = Vector128.Widen(Vector128.Load(src + i));
                    Vector128.ShiftLeft(lo, 16).AsSingle().Store(dst + i);
                    Vector128.ShiftLeft(hi, 16).AsSingle().Store(dst + i + 4);
                }

                break;
        }

        for (; i < count; i++)
        {
            dst[i] = SafeTensors.BFloat16ToFloat(src[i]);
        }
    }

    // The bf16 bits of each lane in the low half of a uint (the high half is zero, so narrowing keeps them exactly).
    // NaN: |bits| > 0x7F800000 (compared as int: both sides are below 2^31) → (bits >> 16) | 0x40.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<uint> Round(Vector512<uint> bits)
    {
        Vector512<uint> rounded = (bits + Vector512.Create(0x7FFFu) + ((bits >> 16) & Vector512<uint>.One)) >> 16;
        Vector512<uint> nan = Vector512.GreaterThan((bits & Vector512.Create(0x7FFFFFFFu)).AsInt32(), Vector512.Create(0x7F800000)).AsUInt32();
        return Vector512.ConditionalSelect(nan, (bits >> 16) | Vector512.Create(0x40u), rounded);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<uint> Round(Vector256<uint> bits)
    {
        Vector256<uint> rounded = (bits + Vector256.Create(0x7FFFu) + ((bits >> 16) & Vector256<uint>.One)) >> 16;
        Vector256<uint> nan = Vector256.GreaterThan((bits & Vector256.Create(0x7FFFFFFFu)).AsInt32(), Vector256.Create(0x7F800000)).AsUInt32();
        return Vector256.ConditionalSelect(nan, (bits >> 16) | Vector256.Create(0x40u), rounded);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<uint> Round(Vector128<uint> bits)
    {
        Vector128<uint> rounded = (bits + Vector128.Create(0x7FFFu) + ((bits >> 16) & Vector128<uint>.One)) >> 16;
        Vector128<uint> nan = Vector128.GreaterThan((bits & Vector128.Create(0x7FFFFFFFu)).AsInt32(), Vector128.Create(0x7F800000)).AsUInt32();
        return Vector128.ConditionalSelect(nan, (bits >> 16) | Vector128.Create(0x40u), rounded);
    }

    private struct Body : IParallelBody
    {
        public float* Float;
        public ushort* Bits;
        public long Count;
        public IsaWidth Width;
        public bool Narrow;

        public readonly void Execute(int index)
        {
            long start = index * SimdLoops.ChunkSize;
            long n = Math.Min(Count, start + SimdLoops.ChunkSize) - start;
            if (Narrow)
            {
                FromFloat(Float + start, Bits + start, n, Width);
            }
            else
            {
                ToFloat(Bits + start, Float + start, n, Width);
            }
        }
    }
}
