// LAMB (You et al. 2020, "Large Batch Optimization for Deep Learning: Training BERT in 76 minutes"): Adam's moments
// with bias correction, weight decay in the update, and a per-tensor trust ratio ‖p‖/‖r‖; kernel: OptimizerKernels.Lamb.
using MiniSeq.Kernels;

namespace MiniSeq.Training.Optimizers;

/// <summary>LAMB with the paper's convention (Algorithm 2, trust ratio on every tensor) and Adam's bias correction.</summary>
/// <remarks>
/// <para>State: <c>exp_avg</c>, <c>exp_avg_sq</c> (8 bytes per parameter, as AdamW); the two-pass kernel needs no
/// further buffer. Per tensor ("layer"): m̂ = m/(1−β1^t), v̂ = v/(1−β2^t), r = m̂/(√v̂ + ε) + wd·p,
/// trust = ‖p‖/‖r‖ if both norms are &gt; 0 else 1, p −= lr·trust·r.</para>
/// <para>Convention, stated because implementations differ: the trust ratio applies to every tensor, including those
/// <see cref="ParameterGroups"/> does not decay (the paper; apex FusedLAMB <c>use_nvlamb=True</c>, timm
/// <c>always_adapt=True</c> — both default to plain Adam-with-decay where wd = 0); no trust clipping; no global gradient
/// clipping inside the optimizer (apex and timm clip to <c>max_grad_norm=1.0</c> before the moments; use the trainer's
/// --grad-clip). ε is added to √v̂ (apex's and timm's place). The SGD options are refused.</para>
/// </remarks>
public sealed class LambRule : IOptimizerRule
{
    private static readonly string[] s_state = ["exp_avg", "exp_avg_sq"];

    /// <inheritdoc/>
    public string Name => "lamb";

    /// <inheritdoc/>
    public bool IsElementwise => false;

    /// <inheritdoc/>
    public IReadOnlyList<string> StateNames(OptimizerOptions options) => s_state;

    /// <inheritdoc/>
    public void Validate(OptimizerOptions options) => SgdRule.RefuseSgdOptions(options, "LAMB's first moment is --beta1");

    /// <inheritdoc/>
    public unsafe void Step(float* param, float* grad, ReadOnlySpan<nint> state, long count, float learningRate, float weightDecay, int step, OptimizerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        OptimizerKernels.Lamb(param, grad, (float*)state[0], (float*)state[1], count, learningRate, options.Beta1, options.Beta2, options.Epsilon, weightDecay, step);
    }
}
