// One update rule of the open optimizer set: its name (what --optimizer takes), the per-parameter state buffers it
// keeps (their count sizes the optimizer-state arena and the planner's prediction; their names are PyTorch's, for the
// training state), its hyper-parameter checks and its step over one tensor. Adding an optimizer = one file here and
// one line in OptimizerRegistry.
namespace MiniSeq.Training.Optimizers;

/// <summary>An optimizer update rule.</summary>
public interface IOptimizerRule
{
    /// <summary>Lower-case name, e.g. "adamw".</summary>
    string Name { get; }

    /// <summary>β2 when <see cref="OptimizerOptions.Beta2"/> is not set: 0.999 (Adam's); rules with another
    /// published default override it (Lion: 0.99).</summary>
    float DefaultBeta2 => 0.999f;

    /// <summary>Names of the per-parameter state buffers under <paramref name="options"/> (PyTorch's state keys:
    /// <c>exp_avg</c>, <c>exp_avg_sq</c>, <c>momentum_buffer</c>); empty when the rule keeps none.</summary>
    IReadOnlyList<string> StateNames(OptimizerOptions options);

    /// <summary>Whether <see cref="Step"/> on any sub-range of a tensor equals the same elements of a step on the
    /// whole tensor (true for AdamW, SGD, Lion): what sharding the optimizer state at arbitrary boundaries (ZeRO-1)
    /// needs. LAMB's trust ratio needs whole-tensor norms, so it is not.</summary>
    bool IsElementwise => true;

    /// <summary>Throws <see cref="ArgumentException"/> for hyper-parameters this rule cannot use.</summary>
    void Validate(OptimizerOptions options);

    /// <summary>Updates <paramref name="count"/> parameters in place from their gradient and state buffers (in
    /// <see cref="StateNames"/> order). <paramref name="step"/> is 1-based.</summary>
    unsafe void Step(float* param, float* grad, ReadOnlySpan<nint> state, long count, float learningRate, float weightDecay, int step, OptimizerOptions options);
}
