// The Hugging Face LlamaConfig fields MiniSeq honours, read from and written to config.json. Fields that would make
// a checkpoint mean another computation (other families, activations, RoPE scaling, biases, …) are refused on load.
using System.Text.Json;
using System.Text.Json.Nodes;
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

    /// <summary>Largest element count of one tensor: kernels index a tensor with 32-bit row and column counts.</summary>
    public const long MaxTensorElements = int.MaxValue;

    /// <summary>Throws <see cref="InvalidDataException"/> with a clear message if the config is not a valid Llama
    /// or its sizes do not fit (every product is computed in 64 bits before it is used).</summary>
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
        Require(double.IsFinite(RmsNormEps) && RmsNormEps > 0, $"rms_norm_eps must be positive (got {RmsNormEps})");
        Require(double.IsFinite(RopeTheta) && RopeTheta > 0, $"rope_theta must be positive (got {RopeTheta})");

        // Sizes: one line naming the product, never an overflow later.
        RequireFits(source, "num_attention_heads × head_dim", NumAttentionHeads, HeadDim);
        RequireFits(source, "num_attention_heads × head_dim × hidden_size", (long)NumAttentionHeads * HeadDim, HiddenSize);
        RequireFits(source, "num_key_value_heads × head_dim × hidden_size", (long)NumKeyValueHeads * HeadDim, HiddenSize);
        RequireFits(source, "intermediate_size × hidden_size", IntermediateSize, HiddenSize);
        RequireFits(source, "vocab_size × hidden_size", VocabSize, HiddenSize);
        double parameters = ParameterCountEstimate;
        if (parameters * sizeof(float) * 4 > long.MaxValue / 2)
        {
            throw new InvalidDataException(FormattableString.Invariant(
                $"{source}: the config describes ≈2^{Math.Log2(parameters):F1} parameters; their fp32 weights, gradients and optimizer state do not fit in 64-bit memory. Check hidden_size, intermediate_size, num_hidden_layers and vocab_size."));
        }
    }

    /// <summary>Parameter count computed in floating point (never overflows; exact below 2^53).</summary>
    [JsonIgnore]
    public double ParameterCountEstimate
    {
        get
        {
            double c = HiddenSize, perLayer = (2.0 * QueryDim * c) + (2.0 * KeyValueDim * c) + (3.0 * IntermediateSize * c) + (2 * c);
            return (NumHiddenLayers * perLayer) + (VocabSize * c * (TieWordEmbeddings ? 1 : 2)) + c;
        }
    }

    private static void RequireFits(string source, string product, long a, long b)
    {
        double elements = (double)a * b;
        if (elements > MaxTensorElements)
        {
            throw new InvalidDataException(FormattableString.Invariant(
                $"{source}: {product} = {a} × {b} ≈ 2^{Math.Log2(elements):F1} elements in one tensor, more than the 2^31 − 1 a tensor can hold. Check the config's sizes."));
        }
    }

    private static readonly JsonSerializerOptions s_json = new()
    {
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        NumberHandling = JsonNumberHandling.AllowReadingFromString,
    };

    /// <summary>Reads a Hugging Face <c>config.json</c>, refuses fields that would make the checkpoint compute
    /// something other than a Llama (<see cref="RefuseUnsupported"/>), and validates it. Other unknown fields are ignored.</summary>
    public static LlamaConfig Load(string path)
    {
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"{path}: config file not found. Pass a model directory that contains config.json, or create one with `miniseq init`.", path);
        }

        LlamaConfig? config;
        try
        {
            JsonNode? root = JsonNode.Parse(File.ReadAllText(path));
            if (root is not JsonObject fields)
            {
                throw new InvalidDataException($"{path}: not a JSON object; a config.json holds one object of Hugging Face config fields.");
            }

            RefuseUnsupported(fields, path);
            config = fields.Deserialize<LlamaConfig>(s_json);
            if (config is not null && !fields.ContainsKey("rope_theta")
                && fields["rope_parameters"] is JsonObject rope && rope["rope_theta"] is JsonValue theta && theta.TryGetValue(out double t))
            {
                // Transformers 5 moved rope_theta into rope_parameters.
                config = config with { RopeTheta = t };
            }
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: not valid JSON for a Llama config ({e.Message}).", e);
        }
        catch (InvalidOperationException e)
        {
            throw new InvalidDataException($"{path}: a field has the wrong JSON type ({e.Message}).", e);
        }

        if (config is null)
        {
            throw new InvalidDataException($"{path}: empty config.");
        }

        config.Validate(path);
        return config;
    }

    /// <summary>
    /// Throws <see cref="InvalidDataException"/> naming the first config field that asks for a computation MiniSeq does not
    /// implement (another model family, activation, RoPE scaling, biases, sliding window, q/k norms, dropout), so that a
    /// checkpoint never loads into a different computation without a word.
    /// </summary>
    public static void RefuseUnsupported(JsonObject fields, string source)
    {
        ArgumentNullException.ThrowIfNull(fields);
        void Refuse(string field, JsonNode? value, string why)
            => throw new InvalidDataException($"{source}: {field} = {value?.ToJsonString() ?? "null"} is not supported: {why}.");

        static bool IsNull(JsonNode? node) => node is null || node.GetValueKind() == JsonValueKind.Null;
        static bool IsTrue(JsonNode? node) => node is JsonValue v && v.GetValueKind() == JsonValueKind.True;

        if (fields["model_type"] is JsonNode type && !IsNull(type) && type.ToString() != "llama")
        {
            Refuse("model_type", type, "MiniSeq computes the Llama architecture (model_type \"llama\")");
        }

        if (fields["architectures"] is JsonArray architectures && architectures.Any(a => a?.ToString() != "LlamaForCausalLM"))
        {
            Refuse("architectures", architectures, "MiniSeq computes LlamaForCausalLM");
        }

        foreach (string act in (string[])["hidden_act", "hidden_activation"])
        {
            if (fields[act] is JsonNode value && !IsNull(value) && value.ToString() != "silu")
            {
                Refuse(act, value, "the MLP is SwiGLU with silu");
            }
        }

        if (fields["rope_scaling"] is JsonNode scaling && !IsNull(scaling))
        {
            Refuse("rope_scaling", scaling, "RoPE scaling (llama3, linear, dynamic, yarn) is not implemented yet; only plain RoPE with rope_theta");
        }

        if (fields["rope_parameters"] is JsonObject parameters && parameters["rope_type"] is JsonNode ropeType && ropeType.ToString() != "default")
        {
            Refuse("rope_parameters.rope_type", ropeType, "only plain RoPE (\"default\") is implemented");
        }

        foreach (string bias in (string[])["attention_bias", "mlp_bias", "qkv_bias", "bias"])
        {
            if (IsTrue(fields[bias]))
            {
                Refuse(bias, fields[bias], "projections have no biases in MiniSeq's Llama");
            }
        }

        foreach (string norm in (string[])["qk_norm", "use_qk_norm"])
        {
            if (IsTrue(fields[norm]))
            {
                Refuse(norm, fields[norm], "q/k normalisation is not implemented");
            }
        }

        if (fields["sliding_window"] is JsonNode window && !IsNull(window) && !(fields["use_sliding_window"] is JsonNode use && !IsTrue(use)))
        {
            Refuse("sliding_window", window, "attention is full causal (no sliding window yet)");
        }

        foreach (string dropout in (string[])["attention_dropout", "hidden_dropout", "resid_pdrop", "embd_pdrop"])
        {
            if (fields[dropout] is JsonValue p && p.TryGetValue(out double d) && d != 0)
            {
                Refuse(dropout, p, "dropout is not implemented (MiniSeq trains deterministically without it)");
            }
        }

        foreach (string moe in (string[])["num_experts", "num_local_experts", "n_routed_experts"])
        {
            if (fields[moe] is JsonValue e && e.TryGetValue(out double n) && n > 0)
            {
                Refuse(moe, e, "mixture-of-experts layers are not implemented");
            }
        }
    }

    /// <summary>The config as Hugging Face <c>config.json</c> text (with architectures and model_type).</summary>
    public string ToJson()
    {
        var node = JsonNode.Parse(JsonSerializer.Serialize(this, s_json))!.AsObject();
        node["architectures"] = new JsonArray("LlamaForCausalLM");
        node["model_type"] = "llama";
        node["hidden_act"] = "silu";
        node["torch_dtype"] = "float32";
        node["attention_bias"] = false;
        node["mlp_bias"] = false;
        return node.ToJsonString(s_json);
    }
}
