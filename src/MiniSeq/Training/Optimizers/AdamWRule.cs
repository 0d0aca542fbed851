// torch.optim.AdamW: decoupled weight decay, two moments (exp_avg, exp_avg_sq); kernel: OptimizerKernels.AdamW.
using MiniSeq.Kernels;

namespace MiniSeq.Training.Optimizers;

/// <summary>AdamW (PyTorch semantics).</summary>
/// <remarks>State: <c>exp_avg</c>, <c>exp_avg_sq</c> (8 bytes per parameter). Hyper-parameters: β1, β2, ε and
/// decoupled weight decay (p *= 1 − lr·wd).</remarks>
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
        SgdRule.RefuseSgdOptions(options, "AdamW's first moment is --beta1");
    }

    /// <inheritdoc/>
    public unsafe void Step(float* param, float* grad, ReadOnlySpan<nint> state, long count, float learningRate, float weightDecay, int step, OptimizerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        OptimizerKernels.AdamW(param, grad, (float*)state[0], (float*)state[1], count, learningRate, options.Beta1, options.Beta2, options.Epsilon, weightDecay, step);
    }
}
