// STUB: replaced by the SIMD kernels.
namespace MiniSeq.Kernels;

/// <summary>SwiGLU: silu(gate)·up.</summary>
public static unsafe class SwiGlu
{
    /// <summary>output[i] = silu(gate[i])·up[i]; output may alias gate or up.</summary>
    public static void Forward(float* gate, float* up, long count, float* output)
        => throw new NotImplementedException();

    /// <summary>
    /// OVERWRITES dGate[i] = dOutput[i]·up[i]·silu'(gate[i]) and dUp[i] = dOutput[i]·silu(gate[i]).
    /// dGate may alias gate and dUp may alias up (in-place backward).
    /// </summary>
    public static void Backward(float* dOutput, float* gate, float* up, long count, float* dGate, float* dUp)
        => throw new NotImplementedException();
}
