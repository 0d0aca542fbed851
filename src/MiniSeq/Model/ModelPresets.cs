// The named model configs (tiny for tests, small for the benchmarks, demo for `miniseq train`), in one place.
namespace MiniSeq.Model;

/// <summary>Named model configs.</summary>
public static class ModelPresets
{
    /// <summary>The names <see cref="Resolve"/> accepts besides a config file path.</summary>
    public static IReadOnlyList<string> Names { get; } = ["tiny", "small", "demo"];

    /// <summary>The default config of the benchmarks: d=256, L=4, 8/2 heads, I=896, V=8192.</summary>
    public static LlamaConfig Small => new();

    /// <summary>A tiny config for tests: d=64, L=2, 4/2 heads, I=160, V=256.</summary>
    public static LlamaConfig Tiny => new()
    {
        HiddenSize = 64,
        IntermediateSize = 160,
        NumHiddenLayers = 2,
        NumAttentionHeads = 4,
        NumKeyValueHeads = 2,
        VocabSize = 256,
        MaxPositionEmbeddings = 4096,
    };

    /// <summary>The demo model: small enough to learn the recall task in well under 3 minutes on 2 cores.</summary>
    public static LlamaConfig Demo => new()
    {
        HiddenSize = 128,
        IntermediateSize = 384,
        NumHiddenLayers = 2,
        NumAttentionHeads = 4,
        NumKeyValueHeads = 2,
        VocabSize = 256,
        MaxPositionEmbeddings = 8192,
    };

    /// <summary>A preset by name, or a config.json file, or a directory holding one.</summary>
    /// <exception cref="FileNotFoundException">Neither a preset nor an existing file or directory.</exception>
    public static LlamaConfig Resolve(string nameOrPath)
    {
        ArgumentNullException.ThrowIfNull(nameOrPath);
        return nameOrPath.ToLowerInvariant() switch
        {
            "tiny" => Tiny,
            "small" => Small,
            "demo" => Demo,
            _ when File.Exists(nameOrPath) => LlamaConfig.Load(nameOrPath),
            _ when Directory.Exists(nameOrPath) => LlamaConfig.Load(Path.Combine(nameOrPath, "config.json")),
            _ => throw new FileNotFoundException($"--config {nameOrPath}: not {string.Join(", ", Names)}, and no such config file."),
        };
    }
}
