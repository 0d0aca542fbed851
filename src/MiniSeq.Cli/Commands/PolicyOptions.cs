// Parses --mst-mlp / --mst-lm (off | auto | M) and --checkpoint (off | on) into a TrainingPolicy.
using System.Globalization;
using MiniSeq.Model;

namespace MiniSeq.Cli.Commands;

internal static class PolicyOptions
{
    public static TrainingPolicy Parse(string mlp, string lm, string checkpoint, LlamaConfig config, long rows)
        => new()
        {
            MlpChunks = Chunks("--mst-mlp", mlp, TrainingPolicy.AutoMlpChunks(config, rows)),
            LmHeadChunks = Chunks("--mst-lm", lm, TrainingPolicy.AutoLmHeadChunks(config, rows)),
            Checkpoint = checkpoint.ToLowerInvariant() switch
            {
                "on" or "true" => true,
                "off" or "false" => false,
                _ => throw new ArgumentException($"--checkpoint must be on or off (got '{checkpoint}')."),
            },
        };

    private static int? Chunks(string name, string value, int auto) => value.ToLowerInvariant() switch
    {
        "off" => null,
        "auto" => auto,
        _ when int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out int m) && m >= 1 => m,
        _ => throw new ArgumentException($"{name} must be off, auto or a chunk count ≥ 1 (got '{value}')."),
    };
}
