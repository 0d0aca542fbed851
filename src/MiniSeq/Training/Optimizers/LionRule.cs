// Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms"), lucidrains/lion-pytorch semantics: one
// momentum buffer (exp_avg), a sign update and decoupled weight decay; kernel: OptimizerKernels.Lion.
using MiniSeq.Kernels;

namespace MiniSeq.Training.Optimizers;

/// <summary>Lion: p *= 1 − lr·wd; p −= lr·sign(β1·m + (1−β1)·g); m = β2·m + (1−β2)·g.</summary>
/// <remarks>
/// State: <c>exp_avg</c> (4 bytes per parameter, half of AdamW's). Defaults β = (0.9, 0.99): when
/// <see cref="OptimizerOptions.Beta2"/> is not set, Lion uses 0.99 (<see cref="DefaultBeta2"/>). The update has the
/// same size lr for every parameter, so the paper suggests a learning rate 3–10× smaller than AdamW's and a weight
/// decay 3–10× larger. ε and the SGD options do not apply (the SGD ones are refused). See
/// <see cref="OptimizerKernels.Lion"/> for the exact operations.
/// </remarks>
public sealed class LionRule : IOptimizerRule
{
    private static readonly string[] s_state = ["exp_avg"];

    /// <inheritdoc/>
    public string Name => "lion";

    /// <inheritdoc/>
    public float DefaultBeta2 => 0.99f;

    /// <inheritdoc/>
    public IReadOnlyList<string> StateNames(OptimizerOptions options) => s_state;

    /// <inheritdoc/>
    public void Validate(OptimizerOptions options) => SgdRule.RefuseSgdOptions(options, "Lion's momentum decays by --beta2 and meets the gradient by --beta1");

    /// <inheritdoc/>
    public unsafe void Step(float* param, float* grad, ReadOnlySpan<nint> state, long count, float learningRate, float weightDecay, int step, OptimizerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        OptimizerKernels.Lion(param, grad, (float*)state[0], count, learningRate, options.Beta1, options.Beta2, weightDecay);
    }
}
