// torch.optim.AdamW: decoupled weight decay, two moments (exp_avg, exp_avg_sq); kernel: OptimizerKernels.AdamW.
using MiniSeq.Kernels;

namespace MiniSeq.Training.Optimizers;

/// <summary>AdamW (PyTorch semantics).</summary>
public sealed class AdamWRule : IOptimizerRule
{
    private static readonly string[] s_state = ["exp_avg", "exp_avg_sq"];

    /// <inheritdoc/>
    public string Name => "adamw";

    /// <inheritdoc/>
    public IReadOnlyList<string> StateNames(OptimizerOptions options) => s_state;

    /// <inheritdoc/>
    public void Validate(OptimizerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.Momentum != 0)
        {
            throw new ArgumentException("--momentum applies to sgd; AdamW's first moment is --beta1.");
        }
    }

    /// <inheritdoc/>
    public unsafe void Step(float* param, float* grad, ReadOnlySpan<nint> state, long count, float learningRate, float weightDecay, int step, OptimizerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        OptimizerKernels.AdamW(param, grad, (float*)state[0], (float*)state[1], count, learningRate, options.Beta1, options.Beta2, options.Epsilon, weightDecay, step);
    }
}
