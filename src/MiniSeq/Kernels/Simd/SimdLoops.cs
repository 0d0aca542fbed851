// Generic loops over the SIMD widths. Element-wise kernels are operator structs (IElementwiseOperator: pointers and
// scalars as fields, one generic Invoke per vector of lanes) run by SimdLoops.Elementwise: widest vector first, then
// the remainder one element at a time through the same generic code at ScalarWidth. Every operation the operators use
// is either IEEE-exact or (exp) the same algorithm at every width, so a lane's result does not depend on where the
// vector boundaries or the thread chunks fall: results are identical for any thread count. Row and block kernels
// are IWidthBody structs, written once over the width and run through WidthBody, the one switch from IsaWidth to
// a width type for pool bodies.
// Deliberately not: reductions across elements (row kernels do those themselves with a fixed order).
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using MiniSeq.Threading;

namespace MiniSeq.Kernels.Simd;

/// <summary>An element-wise kernel: processes the TW.Count elements starting at an offset.</summary>
internal interface IElementwiseOperator
{
    /// <summary>Processes elements [offset, offset + TW.Count).</summary>
    void Invoke<TW, TV>(long offset)
        where TW : IVectorWidth<TV>
        where TV : struct;
}

/// <summary>A parallel body written once for every width; <see cref="WidthBody{TBody}"/> runs it at a chosen one.</summary>
internal interface IWidthBody
{
    /// <summary>Runs iteration <paramref name="index"/> at width TW; must write only outputs owned by that index.</summary>
    void Execute<TW, TV>(int index)
        where TW : IVectorWidth<TV>
        where TV : struct;
}

/// <summary>
/// Runs an <see cref="IWidthBody"/> at <see cref="Width"/> as an <see cref="IParallelBody"/>. Both are structs, so the
/// JIT compiles each width of the body separately and calls it directly: no virtual call, no copy of the body.
/// </summary>
internal struct WidthBody<TBody> : IParallelBody
    where TBody : struct, IWidthBody
{
    public TBody Body;
    public IsaWidth Width;

    public WidthBody(TBody body, IsaWidth width)
    {
        Body = body;
        Width = width;
    }

    public void Execute(int index)
    {
        switch (Width)
        {
            case IsaWidth.V512:
                Body.Execute<Width512, Vector512<float>>(index);
                break;
            case IsaWidth.V256:
                Body.Execute<Width256, Vector256<float>>(index);
                break;
            case IsaWidth.V128:
                Body.Execute<Width128, Vector128<float>>(index);
                break;
            default:
                Body.Execute<ScalarWidth, float>(index);
                break;
        }
    }
}

/// <summary>Loops that run operators at the selected width, in parallel over fixed chunks when large.</summary>
internal static class SimdLoops
{
    /// <summary>Below this many elements a loop runs on the calling thread (PyTorch's GRAIN_SIZE).</summary>
    public const long ParallelGrain = 32 * 1024;

    /// <summary>Elements per parallel task (a multiple of every vector width).</summary>
    public const long ChunkSize = 32 * 1024;

    /// <summary>Runs <paramref name="op"/> over [0, count) at the selected width; parallel over fixed chunks when large.</summary>
    public static void Elementwise<TOp>(ref TOp op, long count)
        where TOp : struct, IElementwiseOperator
    {
        IsaWidth width = KernelSelector.Width;
        if (count < 2 * ParallelGrain || KernelThreads.ThreadCount == 1)
        {
            Run(ref op, 0, count, width);
            return;
        }

        var body = new ElementwiseBody<TOp> { Op = op, Count = count, Width = width };
        KernelThreads.For(checked((int)((count + ChunkSize - 1) / ChunkSize)), ref body);
    }

    /// <summary>Runs <paramref name="op"/> over [start, end) at <paramref name="width"/> on this thread.</summary>
    public static void Run<TOp>(ref TOp op, long start, long end, IsaWidth width)
        where TOp : struct, IElementwiseOperator
    {
        switch (width)
        {
            case IsaWidth.V512:
                Run<TOp, Width512, Vector512<float>>(ref op, start, end);
                break;
            case IsaWidth.V256:
                Run<TOp, Width256, Vector256<float>>(ref op, start, end);
                break;
            case IsaWidth.V128:
                Run<TOp, Width128, Vector128<float>>(ref op, start, end);
                break;
            default:
                Run<TOp, ScalarWidth, float>(ref op, start, end);
                break;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Run<TOp, TW, TV>(ref TOp op, long start, long end)
        where TOp : struct, IElementwiseOperator
        where TW : IVectorWidth<TV>
        where TV : struct
    {
        long i = start;
        long lastFull = end - TW.Count;
        for (; i <= lastFull; i += TW.Count)
        {
            op.Invoke<TW, TV>(i);
        }

        for (; i < end; i++)
        {
            op.Invoke<ScalarWidth, float>(i);
        }
    }

    private struct ElementwiseBody<TOp> : IParallelBody
        where TOp : struct, IElementwiseOperator
    {
        public TOp Op;
        public long Count;
        public IsaWidth Width;

        public void Execute(int index)
        {
            long start = index * ChunkSize;
            long end = Math.Min(Count, start + ChunkSize);
            TOp op = Op;
            Run(ref op, start, end, Width);
        }
    }

    /// <summary>Σ x[i]² over [0, n) in float at width TW: four vector accumulators, then one, then scalar; fixed order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe float SumOfSquares<TW, TV>(float* x, int n)
        where TW : IVectorWidth<TV>
        where TV : struct
    {
        int c = TW.Count;
        int i = 0;
        TV a0 = TW.Create(0f), a1 = TW.Create(0f), a2 = TW.Create(0f), a3 = TW.Create(0f);
        for (; i <= n - 4 * c; i += 4 * c)
        {
            TV v0 = TW.Load(x + i);
            TV v1 = TW.Load(x + i + c);
            TV v2 = TW.Load(x + i + 2 * c);
            TV v3 = TW.Load(x + i + 3 * c);
            a0 = TW.FusedMultiplyAdd(v0, v0, a0);
            a1 = TW.FusedMultiplyAdd(v1, v1, a1);
            a2 = TW.FusedMultiplyAdd(v2, v2, a2);
            a3 = TW.FusedMultiplyAdd(v3, v3, a3);
        }

        for (; i <= n - c; i += c)
        {
            TV v = TW.Load(x + i);
            a0 = TW.FusedMultiplyAdd(v, v, a0);
        }

        float sum = TW.Sum(TW.Add(TW.Add(a0, a1), TW.Add(a2, a3)));
        for (; i < n; i++)
        {
            sum = MathF.FusedMultiplyAdd(x[i], x[i], sum);
        }

        return sum;
    }

    /// <summary>Σ a[i]·b[i]·c[i] over [0, n) in float at width TW (fixed order, as <see cref="SumOfSquares{TW, TV}"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe float SumOfTripleProducts<TW, TV>(float* a, float* b, float* c3, int n)
        where TW : IVectorWidth<TV>
        where TV : struct
    {
        int c = TW.Count;
        int i = 0;
        TV a0 = TW.Create(0f), a1 = TW.Create(0f);
        for (; i <= n - 2 * c; i += 2 * c)
        {
            a0 = TW.FusedMultiplyAdd(TW.Multiply(TW.Load(a + i), TW.Load(b + i)), TW.Load(c3 + i), a0);
            a1 = TW.FusedMultiplyAdd(TW.Multiply(TW.Load(a + i + c), TW.Load(b + i + c)), TW.Load(c3 + i + c), a1);
        }

        for (; i <= n - c; i += c)
        {
            a0 = TW.FusedMultiplyAdd(TW.Multiply(TW.Load(a + i), TW.Load(b + i)), TW.Load(c3 + i), a0);
        }

        float sum = TW.Sum(TW.Add(a0, a1));
        for (; i < n; i++)
        {
            sum = MathF.FusedMultiplyAdd(a[i] * b[i], c3[i], sum);
        }

        return sum;
    }
}
