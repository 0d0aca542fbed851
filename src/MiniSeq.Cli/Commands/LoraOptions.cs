// The LoRA options shared by train, plan and bench: --lora-rank turns a full fine-tune into a LoRA one.
using System.CommandLine;
using System.Globalization;
using MiniSeq.Model;
using MiniSeq.Model.Lora;

namespace MiniSeq.Cli.Commands;

internal static class LoraOptions
{
    public static readonly Option<int?> Rank = new("--lora-rank") { Description = "LoRA: train rank-r adapters (PEFT format) on a frozen base instead of every weight" };
    public static readonly Option<float?> Alpha = new("--lora-alpha") { Description = "LoRA α: the update is scaled by α/r (default 8, as PEFT)" };
    public static readonly Option<float> Dropout = new("--lora-dropout") { DefaultValueFactory = _ => 0f, Description = "LoRA dropout on the adapters' input (PEFT's lora_dropout)" };
    public static readonly Option<string> Targets = new("--lora-targets") { DefaultValueFactory = _ => "q,k,v,o,gate,up,down", Description = "Projections that get adapters: q,k,v,o,gate,up,down[,lm_head] (or all)" };

    public static readonly Option<string> BaseDType = new("--lora-base-dtype") { DefaultValueFactory = _ => "f32", Description = "Storage of the frozen base's projection weights: f32 | bf16 (half their memory; computed exactly as fp32 on the rounded weights)" };

    public static IEnumerable<Option> All => [Rank, Alpha, Dropout, Targets, BaseDType];

    /// <summary>Whether --lora-base-dtype asks for a bf16 base (only with --lora-rank).</summary>
    public static bool Bf16Base(ParseResult p) => p.GetValue(BaseDType)!.ToLowerInvariant() switch
    {
        "f32" or "fp32" => false,
        "bf16" when p.GetValue(Rank) is not null => true,
        "bf16" => throw new ArgumentException("--lora-base-dtype bf16 applies to a LoRA run: give --lora-rank too (a bf16 base is frozen)."),
        string other => throw new ArgumentException($"--lora-base-dtype must be f32 or bf16 (got '{other}')."),
    };

    /// <summary>The LoRA configuration the options describe, or null without --lora-rank.</summary>
    public static LoraConfig? Parse(ParseResult p)
    {
        if (p.GetValue(Rank) is not int rank)
        {
            if (p.IsGiven(Alpha) || p.IsGiven(Dropout) || p.IsGiven(Targets) || p.IsGiven(BaseDType))
            {
                throw new ArgumentException("--lora-alpha, --lora-dropout and --lora-targets apply to a LoRA run: give --lora-rank too.");
            }

            return null;
        }

        var config = new LoraConfig { Rank = rank, Alpha = p.GetValue(Alpha) ?? 8f, Dropout = p.GetValue(Dropout), Targets = LoraConfig.ParseTargets(p.GetValue(Targets)!) };
        config.Validate();
        return config;
    }

    /// <summary>"LoRA r=8 α=16 on q_proj, …: 1.2M trainable parameters (0.8 % of 150M)".</summary>
    public static string Describe(LoraConfig lora, ParameterLayout layout)
    {
        long trainable = new LoraLayout(layout, lora).ParameterCount;
        return string.Create(CultureInfo.InvariantCulture,
            $"LoRA r={lora.Rank} α={lora.Alpha:G} dropout={lora.Dropout:G} on {string.Join(", ", lora.TargetModules)}: {trainable:N0} trainable parameters ({100.0 * trainable / layout.ParameterCount:F2} % of {layout.ParameterCount:N0})");
    }
}
