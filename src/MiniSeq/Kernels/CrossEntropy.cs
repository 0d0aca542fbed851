// STUB: replaced by the SIMD kernels.
namespace MiniSeq.Kernels;

/// <summary>Loss options: label smoothing ε, z-loss weight (w·lse²), and final-logit soft-capping (0 = off).</summary>
public readonly record struct CrossEntropyOptions(float LabelSmoothing = 0f, float ZLossWeight = 0f, float SoftCap = 0f);

/// <summary>Softmax cross-entropy over a block of logit rows, with ignore_index = -100.</summary>
public static unsafe class CrossEntropy
{
    /// <summary>The label that marks a position without loss.</summary>
    public const int IgnoreIndex = -100;

    /// <summary>
    /// For each row r with labels[r] != -100: z = softcap(logits[r]) (cap·tanh(z/cap) when SoftCap &gt; 0),
    /// lse = log Σ exp z, loss_r = (1−ε)(lse − z[y]) + ε(lse − mean_j z_j) + w·lse² (PyTorch label_smoothing semantics).
    /// Writes rowLoss[r] (0 for ignored rows). If gradScale != 0, OVERWRITES logits row r with gradScale·∂loss_r/∂logits
    /// (zero rows for ignored labels); if gradScale == 0, logits are left unchanged. Returns Σ rowLoss in row order (double).
    /// </summary>
    public static double ForwardBackward(float* logits, int* labels, int rows, int vocab, CrossEntropyOptions options, float gradScale, float* rowLoss)
        => throw new NotImplementedException();
}
