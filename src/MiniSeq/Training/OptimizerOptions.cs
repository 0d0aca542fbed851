// Optimizer and schedule settings (PyTorch names and defaults), and parameter groups as data.
using MiniSeq.Model;
using MiniSeq.Training.Optimizers;

namespace MiniSeq.Training;

/// <summary>Which parameters are decayed and which are frozen (not updated).</summary>
public sealed record ParameterGroups
{
    /// <summary>The Hugging Face Trainer's default: decay everything but norm weights and biases; nothing frozen.</summary>
    public static ParameterGroups Default { get; } = new();

    /// <summary>Kinds of parameters that get no weight decay.</summary>
    public IReadOnlySet<ParameterKind> NoDecay { get; init; } = new HashSet<ParameterKind> { ParameterKind.Norm, ParameterKind.Bias };

    /// <summary>Names of tensors the optimizer never updates.</summary>
    public IReadOnlySet<string> Frozen { get; init; } = new HashSet<string>(StringComparer.Ordinal);

    /// <summary>Whether <paramref name="parameter"/> is decayed.</summary>
    public bool Decays(ParameterInfo parameter) => !NoDecay.Contains(parameter.Kind);

    /// <summary>Whether <paramref name="parameter"/> is frozen.</summary>
    public bool IsFrozen(ParameterInfo parameter) => Frozen.Contains(parameter.Name);
}

/// <summary>Learning-rate schedule shape after warm-up.</summary>
public enum ScheduleKind
{
    /// <summary>Constant after warm-up.</summary>
    Constant,

    /// <summary>Cosine decay from the peak to <see cref="OptimizerOptions.MinLearningRate"/> at the last step.</summary>
    Cosine,
}

/// <summary>Optimizer hyper-parameters.</summary>
public sealed record OptimizerOptions
{
    /// <summary>Update rule, by registry name (<see cref="OptimizerRegistry.Names"/>).</summary>
    public string Name { get; init; } = "adamw";

    /// <summary>The rule <see cref="Name"/> names.</summary>
    public IOptimizerRule Rule => OptimizerRegistry.Get(Name);

    /// <summary>Weight decay and frozen tensors per parameter.</summary>
    public ParameterGroups Groups { get; init; } = ParameterGroups.Default;

    /// <summary>Peak learning rate.</summary>
    public float LearningRate { get; init; } = 1e-3f;

    /// <summary>Final learning rate of the cosine schedule.</summary>
    public float MinLearningRate { get; init; }

    /// <summary>Decoupled (AdamW) or coupled (SGD) weight decay, on the parameters <see cref="Groups"/> decays.</summary>
    public float WeightDecay { get; init; }

    /// <summary>Adam β1.</summary>
    public float Beta1 { get; init; } = 0.9f;

    /// <summary>Adam β2.</summary>
    public float Beta2 { get; init; } = 0.999f;

    /// <summary>Adam ε.</summary>
    public float Epsilon { get; init; } = 1e-8f;

    /// <summary>SGD momentum (0 = none).</summary>
    public float Momentum { get; init; }

    /// <summary>Global-norm gradient clipping threshold (0 = off), torch.nn.utils.clip_grad_norm_ semantics.</summary>
    public float GradClip { get; init; }

    /// <summary>Linear warm-up steps: lr·s/warmup at step s ≤ warmup.</summary>
    public int WarmupSteps { get; init; }

    /// <summary>Schedule after warm-up.</summary>
    public ScheduleKind Schedule { get; init; } = ScheduleKind.Constant;

    /// <summary>Throws <see cref="ArgumentException"/> naming the first setting outside its valid range (CLI option
    /// names, since that is where users meet them); NaN and infinities are refused everywhere.</summary>
    public void Validate()
    {
        static void Require(bool ok, string message)
        {
            if (!ok)
            {
                throw new ArgumentException(message);
            }
        }

        static string F(float x) => x.ToString("G", System.Globalization.CultureInfo.InvariantCulture);
        Require(float.IsFinite(LearningRate) && LearningRate >= 0, $"--lr must be a finite number ≥ 0 (got {F(LearningRate)}).");
        Require(float.IsFinite(MinLearningRate) && MinLearningRate >= 0 && MinLearningRate <= LearningRate,
            $"the minimum learning rate must be finite, ≥ 0 and ≤ --lr (got {F(MinLearningRate)}).");
        Require(float.IsFinite(WeightDecay) && WeightDecay >= 0, $"--weight-decay must be a finite number ≥ 0 (got {F(WeightDecay)}).");
        Require(Beta1 is >= 0 and < 1, $"--beta1 must be in [0, 1) (got {F(Beta1)}).");
        Require(Beta2 is >= 0 and < 1, $"--beta2 must be in [0, 1) (got {F(Beta2)}).");
        Require(float.IsFinite(Epsilon) && Epsilon > 0, $"--eps must be a finite number > 0 (got {F(Epsilon)}).");
        Require(Momentum is >= 0 and < 1, $"--momentum must be in [0, 1) (got {F(Momentum)}).");
        Require(float.IsFinite(GradClip) && GradClip >= 0, $"--grad-clip must be a finite number ≥ 0, 0 = off (got {F(GradClip)}).");
        Require(WarmupSteps >= 0, $"--warmup must be ≥ 0 steps (got {WarmupSteps}).");
        Require(Enum.IsDefined(Schedule), "unknown schedule.");
        Rule.Validate(this);
    }

    /// <summary>Learning rate at optimizer step <paramref name="step"/> (1-based) of <paramref name="totalSteps"/>.</summary>
    public float LearningRateAt(int step, int totalSteps)
    {
        if (WarmupSteps > 0 && step <= WarmupSteps)
        {
            return LearningRate * step / WarmupSteps;
        }

        if (Schedule == ScheduleKind.Constant || totalSteps <= WarmupSteps)
        {
            return LearningRate;
        }

        double progress = Math.Clamp((double)(step - WarmupSteps) / Math.Max(1, totalSteps - WarmupSteps), 0, 1);
        return (float)(MinLearningRate + ((LearningRate - MinLearningRate) * 0.5 * (1 + Math.Cos(Math.PI * progress))));
    }
}
