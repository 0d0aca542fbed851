// SwiGLU activation of the Llama MLP: output = silu(gate)·up, element-wise over flat (N, F) arrays, and its backward.
// Vectorised through SimdLoops (all widths), parallel over fixed 32K-element chunks when large.
// Deliberately not: the gate/up/down projections (GEMMs) around it.
using System.Runtime.CompilerServices;
using MiniSeq.Kernels.Simd;

namespace MiniSeq.Kernels;

/// <summary>SwiGLU: silu(gate)·up.</summary>
public static unsafe class SwiGlu
{
    /// <summary>output[i] = silu(gate[i])·up[i]; output may alias gate or up.</summary>
    /// <remarks>silu(g) = g / (1 + e^−g) as in PyTorch's CPU kernel; safe for large |g|. Error ≲ 4 ulp (see <see cref="SimdMath"/>).</remarks>
    public static void Forward(float* gate, float* up, long count, float* output)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        var op = new ForwardOperator { Gate = gate, Up = up, Output = output };
        SimdLoops.Elementwise(ref op, count);
    }

    /// <summary>
    /// OVERWRITES dGate[i] = dOutput[i]·up[i]·silu'(gate[i]) and dUp[i] = dOutput[i]·silu(gate[i]).
    /// dGate may alias gate and dUp may alias up (in-place backward).
    /// </summary>
    public static void Backward(float* dOutput, float* gate, float* up, long count, float* dGate, float* dUp)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        var op = new BackwardOperator { DOutput = dOutput, Gate = gate, Up = up, DGate = dGate, DUp = dUp };
        SimdLoops.Elementwise(ref op, count);
    }

    private struct ForwardOperator : IElementwiseOperator
    {
        public float* Gate;
        public float* Up;
        public float* Output;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public readonly void Invoke<TW, TV>(long offset)
            where TW : IVectorWidth<TV>
            where TV : struct
        {
            TV g = TW.Load(Gate + offset);
            TV u = TW.Load(Up + offset);
            TW.Store(TW.Multiply(SiluOperator.Invoke<TW, TV>(g), u), Output + offset);
        }
    }

    private struct BackwardOperator : IElementwiseOperator
    {
        public float* DOutput;
        public float* Gate;
        public float* Up;
        public float* DGate;
        public float* DUp;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public readonly void Invoke<TW, TV>(long offset)
            where TW : IVectorWidth<TV>
            where TV : struct
        {
            // forward: out = silu(g)·u, silu(g) = g·s, s = sigmoid(g)
            // silu'(g) = s + g·s·(1 − s) = s·(1 + g·(1 − s))
            // All loads happen before the stores, so dGate may alias gate and dUp may alias up.
            TV dout = TW.Load(DOutput + offset);
            TV g = TW.Load(Gate + offset);
            TV u = TW.Load(Up + offset);
            TV one = TW.Create(1f);
            TV s = SimdMath.Sigmoid<TW, TV>(g);
            TV silu = TW.Multiply(g, s);
            TV dSilu = TW.Multiply(s, TW.FusedMultiplyAdd(g, TW.Subtract(one, s), one));
            TW.Store(TW.Multiply(TW.Multiply(dout, u), dSilu), DGate + offset);
            TW.Store(TW.Multiply(dout, silu), DUp + offset);
        }
    }
}
