// torch.optim.SGD: coupled weight decay, optional momentum (one momentum_buffer); kernel: OptimizerKernels.Sgd.
using MiniSeq.Kernels;

namespace MiniSeq.Training.Optimizers;

/// <summary>SGD with optional momentum (PyTorch semantics, no dampening, no Nesterov).</summary>
public sealed class SgdRule : IOptimizerRule
{
    private static readonly string[] s_momentum = ["momentum_buffer"];

    /// <inheritdoc/>
    public string Name => "sgd";

    /// <inheritdoc/>
    public IReadOnlyList<string> StateNames(OptimizerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return options.Momentum > 0 ? s_momentum : [];
    }

    /// <inheritdoc/>
    public void Validate(OptimizerOptions options)
    {
    }

    /// <inheritdoc/>
    public unsafe void Step(float* param, float* grad, ReadOnlySpan<nint> state, long count, float learningRate, float weightDecay, int step, OptimizerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        float* momentum = state.Length > 0 ? (float*)state[0] : null;
        OptimizerKernels.Sgd(param, grad, momentum, count, learningRate, options.Momentum, weightDecay, step);
    }
}
