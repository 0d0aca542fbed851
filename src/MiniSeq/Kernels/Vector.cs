// STUB: replaced by the SIMD kernels.
namespace MiniSeq.Kernels;

/// <summary>Element-wise helpers and deterministic reductions over flat float arrays.</summary>
public static unsafe class VectorOps
{
    /// <summary>destination[i] = a[i] + b[i]; destination may alias a or b.</summary>
    public static void Add(float* a, float* b, long count, float* destination) => throw new NotImplementedException();

    /// <summary>x[i] *= factor.</summary>
    public static void Scale(float* x, long count, float factor) => throw new NotImplementedException();

    /// <summary>Σ x[i]² in double with a fixed blocking (independent of thread count).</summary>
    public static double SumOfSquares(float* x, long count) => throw new NotImplementedException();
}
