// LoRA (Hu et al. 2021) as PEFT configures it: y = x·Wᵀ + (α/r)·(dropout(x)·Aᵀ)·Bᵀ with A (r × in) and B (out × r)
// on the chosen projections; PEFT's names for the targets (q_proj … lm_head) and its defaults.
namespace MiniSeq.Model.Lora;

/// <summary>The projections an adapter can be placed on (PEFT's <c>target_modules</c>).</summary>
[Flags]
public enum LoraTargets
{
    /// <summary>None.</summary>
    None = 0,

    /// <summary>q_proj.</summary>
    Query = 1,

    /// <summary>k_proj.</summary>
    Key = 2,

    /// <summary>v_proj.</summary>
    Value = 4,

    /// <summary>o_proj.</summary>
    Output = 8,

    /// <summary>gate_proj.</summary>
    Gate = 16,

    /// <summary>up_proj.</summary>
    Up = 32,

    /// <summary>down_proj.</summary>
    Down = 64,

    /// <summary>lm_head.</summary>
    LmHead = 128,
}

/// <summary>Rank, scaling, dropout and targets of a LoRA fine-tune.</summary>
public sealed record LoraConfig
{
    private static readonly (string Short, string Module, LoraTargets Target)[] s_targets =
    [
        ("q", "q_proj", LoraTargets.Query), ("k", "k_proj", LoraTargets.Key), ("v", "v_proj", LoraTargets.Value),
        ("o", "o_proj", LoraTargets.Output), ("gate", "gate_proj", LoraTargets.Gate), ("up", "up_proj", LoraTargets.Up),
        ("down", "down_proj", LoraTargets.Down), ("lm_head", "lm_head", LoraTargets.LmHead),
    ];

    /// <summary>Rank r of A (r × in) and B (out × r).</summary>
    public int Rank { get; init; } = 8;

    /// <summary>α: the update is scaled by α/r (PEFT's <c>lora_alpha</c>, default 8).</summary>
    public float Alpha { get; init; } = 8;

    /// <summary>Dropout probability on the adapter's input (PEFT's <c>lora_dropout</c>).</summary>
    public float Dropout { get; init; }

    /// <summary>The projections that get an adapter.</summary>
    public LoraTargets Targets { get; init; } = LoraTargets.Query | LoraTargets.Value;

    /// <summary>α / r, the factor applied to B·A (PEFT's <c>scaling</c> without rsLoRA).</summary>
    public float Scale => Alpha / Rank;

    /// <summary>PEFT module names of <see cref="Targets"/>, in model order (q_proj, k_proj, …).</summary>
    public IReadOnlyList<string> TargetModules => s_targets.Where(t => Targets.HasFlag(t.Target)).Select(t => t.Module).ToArray();

    /// <summary>The PEFT module name of one target.</summary>
    public static string ModuleName(LoraTargets target) => s_targets.First(t => t.Target == target).Module;

    /// <summary>Parses "q,k,v,o,gate,up,down,lm_head" (PEFT module names such as q_proj are accepted too; "all" = every
    /// projection of the layers, without lm_head).</summary>
    /// <exception cref="ArgumentException">An unknown name, or none.</exception>
    public static LoraTargets ParseTargets(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        LoraTargets targets = LoraTargets.None;
        foreach (string raw in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            string name = raw.ToLowerInvariant();
            if (name == "all")
            {
                targets |= LoraTargets.Query | LoraTargets.Key | LoraTargets.Value | LoraTargets.Output | LoraTargets.Gate | LoraTargets.Up | LoraTargets.Down;
                continue;
            }

            var match = s_targets.FirstOrDefault(t => t.Short == name || t.Module == name);
            targets |= match.Module is not null ? match.Target
                : throw new ArgumentException($"--lora-targets: unknown projection '{raw}'; use q, k, v, o, gate, up, down, lm_head or all.");
        }

        return targets != LoraTargets.None ? targets : throw new ArgumentException("--lora-targets names no projection.");
    }

    /// <summary>Parses PEFT's <c>target_modules</c> (module names; unknown ones are an error naming them).</summary>
    public static LoraTargets FromModules(IEnumerable<string> modules)
    {
        ArgumentNullException.ThrowIfNull(modules);
        return ParseTargets(string.Join(',', modules));
    }

    /// <summary>Throws <see cref="ArgumentException"/> naming the first setting outside its range (CLI option names).</summary>
    public void Validate()
    {
        if (Rank < 1)
        {
            throw new ArgumentException($"--lora-rank must be ≥ 1 (got {Rank}).");
        }

        if (!float.IsFinite(Alpha) || Alpha <= 0)
        {
            throw new ArgumentException(FormattableString.Invariant($"--lora-alpha must be a finite number > 0 (got {Alpha})."));
        }

        if (!(Dropout >= 0 && Dropout < 1))
        {
            throw new ArgumentException(FormattableString.Invariant($"--lora-dropout must be in [0, 1) (got {Dropout})."));
        }

        if (Targets == LoraTargets.None || (Targets & ~(LoraTargets)255) != 0)
        {
            throw new ArgumentException("--lora-targets names no projection.");
        }
    }
}
