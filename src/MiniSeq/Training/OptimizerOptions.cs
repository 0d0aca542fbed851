// Optimizer and schedule settings (PyTorch names and defaults), and parameter groups as data.
using System.Globalization;
using MiniSeq.Model;
using MiniSeq.Training.Optimizers;

namespace MiniSeq.Training;

/// <summary>Which parameters are decayed and which are frozen (not updated).</summary>
public sealed record ParameterGroups
{
    /// <summary>The Hugging Face Trainer's default: decay everything but norm weights and biases; nothing frozen.</summary>
    public static ParameterGroups Default { get; } = new();

    /// <summary>The names <see cref="ParseNoDecay"/> takes, each with the kind it stands for.</summary>
    private static readonly (string Name, ParameterKind Kind)[] s_kindNames =
    [
        ("norms", ParameterKind.Norm),
        ("embeddings", ParameterKind.Embedding),
        ("biases", ParameterKind.Bias),
        ("lm_head", ParameterKind.LmHead),
    ];

    /// <summary>Kinds of parameters that get no weight decay.</summary>
    public IReadOnlySet<ParameterKind> NoDecay { get; init; } = new HashSet<ParameterKind> { ParameterKind.Norm, ParameterKind.Bias };

    /// <summary>The kinds a --no-decay list names: a comma-separated list of <c>norms</c>, <c>embeddings</c>,
    /// <c>biases</c>, <c>lm_head</c>, or <c>none</c> alone (decay everything). Projections are always decayed.</summary>
    /// <exception cref="ArgumentException">An unknown name, or <c>none</c> with others.</exception>
    public static IReadOnlySet<ParameterKind> ParseNoDecay(string list)
    {
        ArgumentNullException.ThrowIfNull(list);
        string[] names = list.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        var kinds = new HashSet<ParameterKind>();
        if (names.Length == 1 && names[0].Equals("none", StringComparison.OrdinalIgnoreCase))
        {
            return kinds;
        }

        foreach (string name in names)
        {
            int i = Array.FindIndex(s_kindNames, k => k.Name.Equals(name, StringComparison.OrdinalIgnoreCase));
            if (i < 0)
            {
                throw new ArgumentException($"--no-decay takes a comma list of {string.Join(", ", s_kindNames.Select(k => k.Name))}, or none (got '{list}').");
            }

            kinds.Add(s_kindNames[i].Kind);
        }

        return names.Length > 0 ? kinds : throw new ArgumentException($"--no-decay needs a kind or none (got '{list}').");
    }

    /// <summary><see cref="NoDecay"/> as <see cref="ParseNoDecay"/> reads it, in a fixed order (e.g. <c>norms,biases</c>;
    /// <c>none</c> when empty).</summary>
    public string DescribeNoDecay()
    {
        // Kinds without a --no-decay name (projections, set from code) by their enum name, so that no two sets read alike.
        IEnumerable<string> others = Enum.GetValues<ParameterKind>().Where(k => NoDecay.Contains(k) && !s_kindNames.Any(n => n.Kind == k))
            .Select(k => k.ToString().ToLowerInvariant());
        string[] names = s_kindNames.Where(k => NoDecay.Contains(k.Kind)).Select(k => k.Name).Concat(others).ToArray();
        return names.Length > 0 ? string.Join(',', names) : "none";
    }

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

    /// <summary>Weight decay on the parameters <see cref="Groups"/> decays: decoupled (AdamW, Lion: p *= 1 − lr·wd),
    /// coupled (SGD: g += wd·p) or in the update before the trust ratio (LAMB: r += wd·p).</summary>
    public float WeightDecay { get; init; }

    /// <summary>β1: Adam's first-moment decay (AdamW, LAMB); Lion's interpolation of momentum and gradient for the sign.</summary>
    public float Beta1 { get; init; } = 0.9f;

    /// <summary>β2: Adam's second-moment decay (AdamW, LAMB); Lion's momentum decay. When not set, the rule's default
    /// (<see cref="IOptimizerRule.DefaultBeta2"/>: 0.999, Lion 0.99 as in its paper).</summary>
    public float Beta2
    {
        get => _beta2 ?? OptimizerRegistry.Find(Name)?.DefaultBeta2 ?? 0.999f;
        init => _beta2 = value;
    }

    private readonly float? _beta2;

    /// <summary>Adam ε (AdamW, LAMB).</summary>
    public float Epsilon { get; init; } = 1e-8f;

    /// <summary>SGD momentum (0 = none).</summary>
    public float Momentum { get; init; }

    /// <summary>SGD dampening: buf = μ·buf + (1 − dampening)·g after the first step (torch.optim.SGD); needs momentum.</summary>
    public float Dampening { get; init; }

    /// <summary>SGD Nesterov momentum: the step is g + μ·buf (torch.optim.SGD nesterov=True); needs momentum and no
    /// dampening.</summary>
    public bool Nesterov { get; init; }

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

        static string F(float x) => x.ToString("G", CultureInfo.InvariantCulture);
        Require(float.IsFinite(LearningRate) && LearningRate >= 0, $"--lr must be a finite number ≥ 0 (got {F(LearningRate)}).");
        Require(float.IsFinite(MinLearningRate) && MinLearningRate >= 0 && MinLearningRate <= LearningRate,
            $"the minimum learning rate must be finite, ≥ 0 and ≤ --lr (got {F(MinLearningRate)}).");
        Require(float.IsFinite(WeightDecay) && WeightDecay >= 0, $"--weight-decay must be a finite number ≥ 0 (got {F(WeightDecay)}).");
        Require(Beta1 is >= 0 and < 1, $"--beta1 must be in [0, 1) (got {F(Beta1)}).");
        Require(Beta2 is >= 0 and < 1, $"--beta2 must be in [0, 1) (got {F(Beta2)}).");
        Require(float.IsFinite(Epsilon) && Epsilon > 0, $"--eps must be a finite number > 0 (got {F(Epsilon)}).");
        Require(Momentum is >= 0 and < 1, $"--momentum must be in [0, 1) (got {F(Momentum)}).");
        Require(Dampening is >= 0 and <= 1, $"--dampening must be in [0, 1] (got {F(Dampening)}).");
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
