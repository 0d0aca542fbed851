// torch.optim.SGD: coupled weight decay, optional momentum (one momentum_buffer) with dampening or Nesterov; kernel:
// OptimizerKernels.Sgd.
using MiniSeq.Kernels;

namespace MiniSeq.Training.Optimizers;

/// <summary>SGD with optional momentum, dampening and Nesterov momentum (PyTorch semantics).</summary>
/// <remarks>
/// State: <c>momentum_buffer</c> when momentum &gt; 0 (4 bytes per parameter), none otherwise. Hyper-parameters:
/// <see cref="OptimizerOptions.Momentum"/>, <see cref="OptimizerOptions.Dampening"/>,
/// <see cref="OptimizerOptions.Nesterov"/>, <see cref="OptimizerOptions.WeightDecay"/> (coupled, added to the gradient).
/// As torch.optim.SGD, Nesterov needs momentum and zero dampening; unlike torch, dampening without momentum (where it
/// would do nothing) is refused too.
/// </remarks>
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
        ArgumentNullException.ThrowIfNull(options);
        if (options.Nesterov && (options.Momentum <= 0 || options.Dampening != 0))
        {
            throw new ArgumentException("--nesterov needs --momentum > 0 and no --dampening (as torch.optim.SGD: \"Nesterov momentum requires a momentum and zero dampening\").");
        }

        if (options.Dampening != 0 && options.Momentum <= 0)
        {
            throw new ArgumentException("--dampening damps the momentum buffer: it needs --momentum > 0.");
        }
    }

    /// <inheritdoc/>
    public unsafe void Step(float* param, float* grad, ReadOnlySpan<nint> state, long count, float learningRate, float weightDecay, int step, OptimizerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        float* momentum = state.Length > 0 ? (float*)state[0] : null;
        OptimizerKernels.Sgd(param, grad, momentum, count, learningRate, options.Momentum, options.Dampening, options.Nesterov, weightDecay, step);
    }

    /// <summary>Refuses the SGD-only options for a rule whose own momentum is set by its βs; <paramref name="why"/>
    /// says which (e.g. "AdamW's first moment is --beta1").</summary>
    internal static void RefuseSgdOptions(OptimizerOptions options, string why)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.Momentum != 0 || options.Dampening != 0 || options.Nesterov)
        {
            string option = options.Momentum != 0 ? "--momentum" : options.Dampening != 0 ? "--dampening" : "--nesterov";
            throw new ArgumentException($"{option} applies to sgd; {why}.");
        }
    }
}
