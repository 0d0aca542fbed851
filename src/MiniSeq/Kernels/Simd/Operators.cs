// Pure per-lane functions shared by the kernels (TensorPrimitives-style operator structs): each is one generic static
// Invoke over a width TW, so the scalar fallback and every vector width run the same formula.
// Deliberately not: operators with state (those are the IElementwiseOperator structs next to each kernel).
using System.Runtime.CompilerServices;

namespace MiniSeq.Kernels.Simd;

/// <summary>A pure per-lane function of one value.</summary>
internal interface IUnaryOperator
{
    static abstract TV Invoke<TW, TV>(TV x)
        where TW : IVectorWidth<TV>
        where TV : struct;
}

/// <summary>silu(x) = x·sigmoid(x), computed as x / (1 + e^−x) like PyTorch's CPU kernel.</summary>
/// <remarks>Large |x| is safe: x → −∞ gives −0 (e^−x = +∞), x → +∞ gives x. Error: that of the sigmoid, ≲ 3.2 ulp (see <see cref="SimdMath.Sigmoid"/>).</remarks>
internal readonly struct SiluOperator : IUnaryOperator
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TV Invoke<TW, TV>(TV x)
        where TW : IVectorWidth<TV>
        where TV : struct
        => TW.Divide(x, TW.Add(TW.Create(1f), TW.Exp(TW.Subtract(TW.Create(0f), x))));
}

/// <summary>sigmoid(x) = 1 / (1 + e^−x).</summary>
internal readonly struct SigmoidOperator : IUnaryOperator
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TV Invoke<TW, TV>(TV x)
        where TW : IVectorWidth<TV>
        where TV : struct
        => SimdMath.Sigmoid<TW, TV>(x);
}

/// <summary>e^x.</summary>
internal readonly struct ExpOperator : IUnaryOperator
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TV Invoke<TW, TV>(TV x)
        where TW : IVectorWidth<TV>
        where TV : struct
        => TW.Exp(x);
}

/// <summary>tanh(x).</summary>
internal readonly struct TanhOperator : IUnaryOperator
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TV Invoke<TW, TV>(TV x)
        where TW : IVectorWidth<TV>
        where TV : struct
        => SimdMath.Tanh<TW, TV>(x);
}

/// <summary>destination[i] = TOp(source[i]) as an element-wise operator (used by tests and by kernels that map a row).</summary>
internal unsafe struct MapOperator<TOp> : IElementwiseOperator
    where TOp : IUnaryOperator
{
    public float* Source;
    public float* Destination;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public readonly void Invoke<TW, TV>(long offset)
        where TW : IVectorWidth<TV>
        where TV : struct
        => TW.Store(TOp.Invoke<TW, TV>(TW.Load(Source + offset)), Destination + offset);
}
