// The Hugging Face LlamaConfig fields MiniSeq honours, read from and written to config.json.
using System.Text.Json;
using System.Text.Json.Serialization;

namespace MiniSeq.Model;

/// <summary>Llama architecture hyper-parameters (Hugging Face <c>config.json</c> names).</summary>
public sealed record LlamaConfig
{
    /// <summary>Model width C.</summary>
    [JsonPropertyName("hidden_size")] public int HiddenSize { get; init; } = 256;

    /// <summary>MLP width F.</summary>
    [JsonPropertyName("intermediate_size")] public int IntermediateSize { get; init; } = 896;

    /// <summary>Number of decoder layers L.</summary>
    [JsonPropertyName("num_hidden_layers")] public int NumHiddenLayers { get; init; } = 4;

    /// <summary>Query heads H.</summary>
    [JsonPropertyName("num_attention_heads")] public int NumAttentionHeads { get; init; } = 8;

    /// <summary>Key/value heads KvH (divides H).</summary>
    [JsonPropertyName("num_key_value_heads")] public int NumKeyValueHeads { get; init; } = 2;

    /// <summary>Vocabulary size V.</summary>
    [JsonPropertyName("vocab_size")] public int VocabSize { get; init; } = 8192;

    /// <summary>RMSNorm epsilon.</summary>
    [JsonPropertyName("rms_norm_eps")] public double RmsNormEps { get; init; } = 1e-5;

    /// <summary>RoPE base.</summary>
    [JsonPropertyName("rope_theta")] public double RopeTheta { get; init; } = 10000.0;

    /// <summary>Whether the LM head shares the embedding matrix.</summary>
    [JsonPropertyName("tie_word_embeddings")] public bool TieWordEmbeddings { get; init; }

    /// <summary>Longest position the model was built for (informational; RoPE is computed for any position).</summary>
    [JsonPropertyName("max_position_embeddings")] public int MaxPositionEmbeddings { get; init; } = 131072;

    /// <summary>Std of the normal initialisation.</summary>
    [JsonPropertyName("initializer_range")] public double InitializerRange { get; init; } = 0.02;

    /// <summary>Head dimension D (HF <c>head_dim</c>; defaults to C / H).</summary>
    [JsonPropertyName("head_dim")] public int? HeadDimOverride { get; init; }

    /// <summary>Head dimension D.</summary>
    [JsonIgnore] public int HeadDim => HeadDimOverride ?? HiddenSize / NumAttentionHeads;

    /// <summary>Query projection width H·D.</summary>
    [JsonIgnore] public int QueryDim => NumAttentionHeads * HeadDim;

    /// <summary>Key/value projection width KvH·D.</summary>
    [JsonIgnore] public int KeyValueDim => NumKeyValueHeads * HeadDim;

    /// <summary>The default config of <c>miniseq train</c> and the issue benchmarks: d=256, L=4, 8/2 heads, I=896, V=8192.</summary>
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

    /// <summary>Throws <see cref="ArgumentException"/> with a clear message if the config is not a valid Llama.</summary>
    public void Validate(string source = "config")
    {
        void Require(bool ok, string message)
        {
            if (!ok)
            {
                throw new InvalidDataException($"{source}: {message}.");
            }
        }

        Require(HiddenSize > 0, $"hidden_size must be positive (got {HiddenSize})");
        Require(IntermediateSize > 0, $"intermediate_size must be positive (got {IntermediateSize})");
        Require(NumHiddenLayers > 0, $"num_hidden_layers must be positive (got {NumHiddenLayers})");
        Require(NumAttentionHeads > 0, $"num_attention_heads must be positive (got {NumAttentionHeads})");
        Require(NumKeyValueHeads > 0 && NumAttentionHeads % NumKeyValueHeads == 0,
            $"num_key_value_heads ({NumKeyValueHeads}) must divide num_attention_heads ({NumAttentionHeads})");
        Require(HeadDimOverride is not null || HiddenSize % NumAttentionHeads == 0,
            $"hidden_size ({HiddenSize}) must be a multiple of num_attention_heads ({NumAttentionHeads})");
        Require(HeadDim > 0 && HeadDim % 2 == 0, $"head_dim must be a positive even number (got {HeadDim})");
        Require(VocabSize > 0, $"vocab_size must be positive (got {VocabSize})");
        Require(RmsNormEps > 0, $"rms_norm_eps must be positive (got {RmsNormEps})");
        Require(RopeTheta > 0, $"rope_theta must be positive (got {RopeTheta})");
    }

    private static readonly JsonSerializerOptions s_json = new()
    {
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        NumberHandling = JsonNumberHandling.AllowReadingFromString,
    };

    /// <summary>Reads a Hugging Face <c>config.json</c> (unknown fields are ignored) and validates it.</summary>
    public static LlamaConfig Load(string path)
    {
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"{path}: config file not found. Pass a model directory that contains config.json, or create one with `miniseq init`.", path);
        }

        LlamaConfig? config;
        try
        {
            config = JsonSerializer.Deserialize<LlamaConfig>(File.ReadAllText(path), s_json);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: not valid JSON for a Llama config ({e.Message}).", e);
        }

        if (config is null)
        {
            throw new InvalidDataException($"{path}: empty config.");
        }

        config.Validate(path);
        return config;
    }

    /// <summary>The config as Hugging Face <c>config.json</c> text (with architectures and model_type).</summary>
    public string ToJson()
    {
        var node = System.Text.Json.Nodes.JsonNode.Parse(JsonSerializer.Serialize(this, s_json))!.AsObject();
        node["architectures"] = new System.Text.Json.Nodes.JsonArray("LlamaForCausalLM");
        node["model_type"] = "llama";
        node["hidden_act"] = "silu";
        node["torch_dtype"] = "float32";
        node["attention_bias"] = false;
        node["mlp_bias"] = false;
        return node.ToJsonString(s_json);
    }
}
