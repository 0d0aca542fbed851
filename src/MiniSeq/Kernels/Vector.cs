// Flat-array helpers: element-wise add and scale, and a deterministic double-precision sum of squares (gradient norm).
// Deliberately not: a general BLAS-1 library.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using MiniSeq.Kernels.Simd;
using MiniSeq.Threading;

namespace MiniSeq.Kernels;

/// <summary>Element-wise helpers and deterministic reductions over flat float arrays.</summary>
public static unsafe class VectorOps
{
    /// <summary>Elements per block of <see cref="SumOfSquares"/>: each block is summed on its own, then blocks in order.</summary>
    internal const int SumBlock = 16 * 1024;

    /// <summary>destination[i] = a[i] + b[i]; destination may alias a or b.</summary>
    public static void Add(float* a, float* b, long count, float* destination)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        var op = new AddOperator { A = a, B = b, Destination = destination };
        SimdLoops.Elementwise(ref op, count);
    }

    /// <summary>x[i] *= factor.</summary>
    public static void Scale(float* x, long count, float factor)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        var op = new ScaleOperator { X = x, Factor = factor };
        SimdLoops.Elementwise(ref op, count);
    }

    /// <summary>Σ x[i]² in double with a fixed blocking (independent of thread count).</summary>
    /// <remarks>
    /// The array is cut into blocks of 16384 elements; each block is summed in double (widened lanes, fixed lane order
    /// for the selected SIMD width), and the block sums are added in block order. The result therefore depends only on
    /// the data and the SIMD width, never on the thread count.
    /// </remarks>
    [SkipLocalsInit]
    public static double SumOfSquares(float* x, long count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        const int Group = 1024; // blocks per parallel round (partials live on the stack)
        IsaWidth width = KernelSelector.Width;
        long blocks = (count + SumBlock - 1) / SumBlock;
        double* partial = stackalloc double[Group];
        double total = 0;
        for (long first = 0; first < blocks; first += Group)
        {
            int n = (int)Math.Min(Group, blocks - first);
            var body = new SumOfSquaresBody { X = x, Count = count, FirstBlock = first, Partial = partial, Width = width };
            if (n == 1 || (long)n * SumBlock < 2 * SimdLoops.ParallelGrain)
            {
                for (int i = 0; i < n; i++)
                {
                    body.Execute(i);
                }
            }
            else
            {
                KernelThreads.For(n, ref body);
            }

            for (int i = 0; i < n; i++)
            {
                total += partial[i];
            }
        }

        return total;
    }

    /// <summary>Σ x[i]² over [0, n) in double at the given width (one block).</summary>
    internal static double BlockSumOfSquares(float* x, int n, IsaWidth width)
    {
        int i = 0;
        double sum = 0;
        if (width == IsaWidth.V512)
        {
            Vector512<double> a0 = Vector512<double>.Zero, a1 = Vector512<double>.Zero;
            for (; i <= n - 16; i += 16)
            {
                (Vector512<double> lo, Vector512<double> hi) = Vector512.Widen(Vector512.Load(x + i));
                a0 = Vector512.FusedMultiplyAdd(lo, lo, a0);
                a1 = Vector512.FusedMultiplyAdd(hi, hi, a1);
            }

            sum = Vector512.Sum(a0 + a1);
        }
        else if (width == IsaWidth.V256)
        {
            Vector256<double> a0 = Vector256<double>.Zero, a1 = Vector256<double>.Zero;
            for (; i <= n - 8; i += 8)
            {
                (Vector256<double> lo, Vector256<double> hi) = Vector256.Widen(Vector256.Load(x + i));
                a0 = Vector256.FusedMultiplyAdd(lo, lo, a0);
                a1 = Vector256.FusedMultiplyAdd(hi, hi, a1);
            }

            sum = Vector256.Sum(a0 + a1);
        }
        else if (width == IsaWidth.V128)
        {
            Vector128<double> a0 = Vector128<double>.Zero, a1 = Vector128<double>.Zero;
            for (; i <= n - 4; i += 4)
            {
                (Vector128<double> lo, Vector128<double> hi) = Vector128.Widen(Vector128.Load(x + i));
                a0 = Vector128.FusedMultiplyAdd(lo, lo, a0);
                a1 = Vector128.FusedMultiplyAdd(hi, hi, a1);
            }

            sum = Vector128.Sum(a0 + a1);
        }

        for (; i < n; i++)
        {
            double v = x[i];
            sum = Math.FusedMultiplyAdd(v, v, sum);
        }

        return sum;
    }

    private struct SumOfSquaresBody : IParallelBody
    {
        public float* X;
        public long Count;
        public long FirstBlock;
        public double* Partial;
        public IsaWidth Width;

        public readonly void Execute(int index)
        {
            long start = (FirstBlock + index) * SumBlock;
            int n = (int)Math.Min(SumBlock, Count - start);
            Partial[index] = BlockSumOfSquares(X + start, n, Width);
        }
    }

    private struct AddOperator : IElementwiseOperator
    {
        public float* A;
        public float* B;
        public float* Destination;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public readonly void Invoke<TW, TV>(long offset)
            where TW : IVectorWidth<TV>
            where TV : struct
            => TW.Store(TW.Add(TW.Load(A + offset), TW.Load(B + offset)), Destination + offset);
    }

    private struct ScaleOperator : IElementwiseOperator
    {
        public float* X;
        public float Factor;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public readonly void Invoke<TW, TV>(long offset)
            where TW : IVectorWidth<TV>
            where TV : struct
            => TW.Store(TW.Multiply(TW.Load(X + offset), TW.Create(Factor)), X + offset);
    }
}
