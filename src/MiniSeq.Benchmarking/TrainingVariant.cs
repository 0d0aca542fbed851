// What is trained and how, for the toolbox benchmarks: every weight or LoRA adapters, and which optimizer.
// Named "full-adamw", "full-lion", "lora16-adamw" … on the command line; a "-bf16" suffix trains in bf16 mixed
// precision ("full-adamw-bf16").
using MiniSeq.Model;
using MiniSeq.Model.Lora;
using MiniSeq.Training;
using MiniSeq.Training.Optimizers;

namespace MiniSeq.Benchmarks;

/// <summary>A full fine-tune or a LoRA one, with an optimizer.</summary>
public sealed record TrainingVariant(string Name, OptimizerOptions Optimizer, LoraConfig? Lora, bool Bf16Base = false, Precision Precision = Precision.Float32)
{
    /// <summary>Full fine-tuning with AdamW (the benchmarks' default).</summary>
    public static TrainingVariant Default { get; } = Parse("full-adamw");

    /// <summary>Parses "full[-OPTIMIZER][-bf16]" or "loraR[bf16][-OPTIMIZER]" (LoRA of rank R, α = 2R, on every projection
    /// of the layers; "loraRbf16": the frozen base's projections stored as bf16; a "-bf16" suffix: --precision bf16).</summary>
    /// <exception cref="ArgumentException">Another form, or an unknown optimizer.</exception>
    public static TrainingVariant Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        string t = text.Trim().ToLowerInvariant();
        Precision precision = t.EndsWith("-bf16", StringComparison.Ordinal) ? Precision.BFloat16 : Precision.Float32;
        string[] parts = (precision == Precision.BFloat16 ? t[..^5] : t).Split('-', 2);
        string optimizer = OptimizerRegistry.Get(parts.Length > 1 ? parts[1] : "adamw").Name;
        bool bf16Base = parts[0].StartsWith("lora", StringComparison.Ordinal) && parts[0].EndsWith("bf16", StringComparison.Ordinal);
        string rankText = bf16Base ? parts[0][4..^4] : parts[0].StartsWith("lora", StringComparison.Ordinal) ? parts[0][4..] : "";
        LoraConfig? lora = parts[0] == "full" ? null
            : int.TryParse(rankText, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int rank) && rank > 0
                ? new LoraConfig { Rank = rank, Alpha = 2 * rank, Targets = LoraConfig.ParseTargets("all") }
                : throw new ArgumentException($"variant '{text}': use full[-OPTIMIZER] or loraR[-OPTIMIZER], e.g. full-adamw, lora16-lion.");
        return new TrainingVariant($"{parts[0]}-{optimizer}{(precision == Precision.BFloat16 ? "-bf16" : "")}", new OptimizerOptions { Name = optimizer, LearningRate = 1e-4f }, lora, bf16Base, precision);
    }
}
