// The Hugging Face config fields MiniSeq honours, read from and written to config.json, for the decoder families it
// computes: Llama ("llama", with plain, linear or llama3 RoPE), Qwen2/Qwen2.5 ("qwen2": q/k/v biases), Qwen3
// ("qwen3": per-head RMSNorm on q and k) and Mistral ("mistral": optional sliding-window attention). Fields that would make a checkpoint mean another computation (other
// families, activations, other RoPE scalings, sliding windows, …) are refused on load.
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using MiniSeq.Kernels;

namespace MiniSeq.Model;

/// <summary>Llama architecture hyper-parameters (Hugging Face <c>config.json</c> names).</summary>
public sealed record LlamaConfig
{
    /// <summary>HF <c>model_type</c> of Llama.</summary>
    public const string Llama = "llama";

    /// <summary>HF <c>model_type</c> of Qwen2 / Qwen2.5.</summary>
    public const string Qwen2 = "qwen2";

    /// <summary>HF <c>model_type</c> of Qwen3 (dense).</summary>
    public const string Qwen3 = "qwen3";

    /// <summary>HF <c>model_type</c> of Mistral (dense).</summary>
    public const string Mistral = "mistral";

    /// <summary>Model family (HF <c>model_type</c>): <see cref="Llama"/>, <see cref="Qwen2"/>, <see cref="Qwen3"/> or <see cref="Mistral"/>.</summary>
    [JsonPropertyName("model_type")] public string ModelType { get; init; } = Llama;

    /// <summary>The HF class of the family (<c>architectures</c>), e.g. <c>Qwen2ForCausalLM</c>.</summary>
    [JsonIgnore] public string Architecture => ArchitectureOf(ModelType);

    /// <summary>Whether q, k and v projections have biases (Qwen2: always, as <c>Qwen2Attention</c> builds them).</summary>
    [JsonIgnore] public bool QkvBias => ModelType == Qwen2;

    /// <summary>Mistral's <c>sliding_window</c> W (query i sees keys i − W &lt; j ≤ i), or null for full causal attention.
    /// Read only for Mistral: Qwen2/Qwen3 configs carry a <c>sliding_window</c> that <c>use_sliding_window: false</c> disables.</summary>
    [JsonIgnore] public int? SlidingWindow { get; init; }

    /// <summary>Whether q and k get a per-head RMSNorm (weight of width head_dim) after the projection, before RoPE (Qwen3).</summary>
    [JsonIgnore] public bool QkNorm => ModelType == Qwen3;

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

    /// <summary>RoPE scaling (HF <c>rope_scaling</c>, or <c>rope_parameters</c> in Transformers 5): null for plain RoPE,
    /// else <c>"linear"</c> or <c>"llama3"</c>. Read and written by <see cref="Load"/> / <see cref="ToJson"/>.</summary>
    [JsonIgnore] public RopeScaling? RopeScaling { get; init; }

    /// <summary>Whether the LM head shares the embedding matrix.</summary>
    [JsonPropertyName("tie_word_embeddings")] public bool TieWordEmbeddings { get; init; }

    /// <summary>Longest position the model was built for (informational; RoPE is computed for any position).</summary>
    [JsonPropertyName("max_position_embeddings")] public int MaxPositionEmbeddings { get; init; } = 131072;

    /// <summary>Std of the normal initialisation.</summary>
    [JsonPropertyName("initializer_range")] public double InitializerRange { get; init; } = 0.02;

    /// <summary>Head dimension D (HF <c>head_dim</c>; defaults to C / H, or 128 for Qwen3 as <c>Qwen3Config</c>).</summary>
    [JsonPropertyName("head_dim")] public int? HeadDimOverride { get; init; }

    /// <summary>Head dimension D.</summary>
    [JsonIgnore] public int HeadDim => HeadDimOverride ?? (ModelType == Qwen3 ? 128 : HiddenSize / NumAttentionHeads);

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
        Require(ModelType is Llama or Qwen2 or Qwen3 or Mistral, $"model_type \"{ModelType}\" is not supported (llama, qwen2, qwen3, mistral are)");
        Require(SlidingWindow is null || (SlidingWindow > 0 && ModelType == Mistral), $"sliding_window must be positive and is honoured for mistral only (got {SlidingWindow})");
        Require(HeadDimOverride is not null || ModelType == Qwen3 || HiddenSize % NumAttentionHeads == 0,
            $"hidden_size ({HiddenSize}) must be a multiple of num_attention_heads ({NumAttentionHeads})");
        Require(HeadDim > 0 && HeadDim % 2 == 0, $"head_dim must be a positive even number (got {HeadDim})");
        Require(VocabSize > 0, $"vocab_size must be positive (got {VocabSize})");
        Require(double.IsFinite(RmsNormEps) && RmsNormEps > 0, $"rms_norm_eps must be positive (got {RmsNormEps})");
        Require(double.IsFinite(RopeTheta) && RopeTheta > 0, $"rope_theta must be positive (got {RopeTheta})");
        if (RopeScaling is { } scaling)
        {
            Require(scaling.RopeType is RopeScaling.Linear or RopeScaling.Llama3, $"rope_scaling.rope_type \"{scaling.RopeType}\" is not supported (linear, llama3 are)");
            Require(double.IsFinite(scaling.Factor) && scaling.Factor > 0, $"rope_scaling.factor must be positive (got {scaling.Factor})");
            if (scaling.RopeType == RopeScaling.Llama3)
            {
                Require(double.IsFinite(scaling.LowFreqFactor) && scaling.LowFreqFactor > 0, $"rope_scaling.low_freq_factor must be positive (got {scaling.LowFreqFactor})");
                Require(double.IsFinite(scaling.HighFreqFactor) && scaling.HighFreqFactor > scaling.LowFreqFactor,
                    $"rope_scaling.high_freq_factor ({scaling.HighFreqFactor}) must be larger than low_freq_factor ({scaling.LowFreqFactor})");
                Require(scaling.OriginalMaxPositionEmbeddings > 0, $"rope_scaling.original_max_position_embeddings must be positive (got {scaling.OriginalMaxPositionEmbeddings})");
            }
        }

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
            double c = HiddenSize, perLayer = (2.0 * QueryDim * c) + (2.0 * KeyValueDim * c) + (3.0 * IntermediateSize * c) + (2 * c)
                + (QkvBias ? QueryDim + (2.0 * KeyValueDim) : 0) + (QkNorm ? 2.0 * HeadDim : 0);
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

            if (config is not null)
            {
                config = config with { RopeScaling = ReadRopeScaling(fields, path) };
                if (config.ModelType == Mistral)
                {
                    // MistralConfig's default sliding_window is 4096: a config without the key has that window.
                    config = config with
                    {
                        SlidingWindow = !fields.ContainsKey("sliding_window") ? 4096
                            : fields["sliding_window"] is JsonValue window && window.GetValueKind() != JsonValueKind.Null ? window.GetValue<int>() : null,
                    };
                }
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

        string family = Llama;
        if (fields["model_type"] is JsonNode type && !IsNull(type))
        {
            family = type.ToString();
            if (family is not (Llama or Qwen2 or Qwen3 or Mistral))
            {
                Refuse("model_type", type, "MiniSeq computes the Llama (\"llama\"), Qwen2 (\"qwen2\"), Qwen3 (\"qwen3\") and Mistral (\"mistral\") architectures");
            }
        }

        if (fields["architectures"] is JsonArray architectures && architectures.Any(a => a?.ToString() != ArchitectureOf(family)))
        {
            Refuse("architectures", architectures, $"model_type \"{family}\" is computed as {ArchitectureOf(family)}");
        }

        foreach (string act in (string[])["hidden_act", "hidden_activation"])
        {
            if (fields[act] is JsonNode value && !IsNull(value) && value.ToString() != "silu")
            {
                Refuse(act, value, "the MLP is SwiGLU with silu");
            }
        }

        foreach (string key in (string[])["rope_scaling", "rope_parameters"])
        {
            if (fields[key] is JsonNode scaling && !IsNull(scaling))
            {
                if (scaling is not JsonObject scalingFields)
                {
                    Refuse(key, scaling, "expected an object with a rope_type");
                    return;
                }

                JsonNode? ropeType = scalingFields["rope_type"] ?? scalingFields["type"];
                string? name = ropeType is JsonValue rt && rt.GetValueKind() == JsonValueKind.String ? rt.GetValue<string>() : null;
                bool supported = name is RopeScaling.Linear or RopeScaling.Llama3 || (key == "rope_parameters" && (name is null or "default"));
                if (!supported)
                {
                    Refuse($"{key}.rope_type", ropeType, "MiniSeq implements plain RoPE and the \"linear\" and \"llama3\" scalings (not dynamic, yarn, longrope)");
                }
            }
        }

        if (fields["partial_rotary_factor"] is JsonValue partial && partial.TryGetValue(out double prf) && prf != 1)
        {
            Refuse("partial_rotary_factor", partial, "RoPE rotates the whole head dimension in MiniSeq");
        }

        // Qwen2Attention always has q/k/v biases and no o_proj bias (it ignores attention_bias); the other families none.
        foreach (string bias in family == Qwen2 ? (string[])["mlp_bias", "bias"] : ["attention_bias", "mlp_bias", "qkv_bias", "bias"])
        {
            if (IsTrue(fields[bias]))
            {
                Refuse(bias, fields[bias], family == Qwen2 ? "Qwen2 has biases on q, k and v only" : $"projections have no biases in MiniSeq's {ArchitectureOf(family)}");
            }
        }

        foreach (string norm in (string[])["qk_norm", "use_qk_norm"])
        {
            if (IsTrue(fields[norm]))
            {
                Refuse(norm, fields[norm], "q/k normalisation is not implemented");
            }
        }

        if (IsTrue(fields["use_sliding_window"]))
        {
            Refuse("use_sliding_window", fields["use_sliding_window"], "Qwen's per-layer sliding window (max_window_layers) is not implemented; only Mistral's sliding_window is");
        }

        if (family == Mistral && fields["sliding_window"] is JsonNode mistralWindow && !IsNull(mistralWindow)
            && !(mistralWindow is JsonValue mw && mw.TryGetValue(out int w) && w > 0))
        {
            Refuse("sliding_window", mistralWindow, "Mistral's sliding_window must be a positive integer or null");
        }

        if (family != Mistral && fields["sliding_window"] is JsonNode window && !IsNull(window) && !(fields["use_sliding_window"] is JsonNode use && !IsTrue(use)))
        {
            Refuse("sliding_window", window, "attention is full causal here (MiniSeq computes a sliding window for model_type mistral only)");
        }

        if (fields["layer_types"] is JsonArray layerTypes && layerTypes.Any(t => t?.ToString() != "full_attention"))
        {
            Refuse("layer_types", layerTypes, "every layer is full causal attention (no sliding-window layers yet)");
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

    /// <summary>The HF <c>architectures</c> entry of a <c>model_type</c>.</summary>
    public static string ArchitectureOf(string modelType) => modelType switch
    {
        Qwen2 => "Qwen2ForCausalLM",
        Qwen3 => "Qwen3ForCausalLM",
        Mistral => "MistralForCausalLM",
        _ => "LlamaForCausalLM",
    };

    /// <summary>The supported RoPE scaling of <c>rope_scaling</c> (or Transformers 5 <c>rope_parameters</c>); null for plain
    /// RoPE. The type has already been checked by <see cref="RefuseUnsupported"/>; a missing field is an error naming it.</summary>
    private static RopeScaling? ReadRopeScaling(JsonObject fields, string source)
    {
        JsonObject? scaling = fields["rope_scaling"] as JsonObject ?? fields["rope_parameters"] as JsonObject;
        string? type = (scaling?["rope_type"] ?? scaling?["type"])?.GetValue<string>();
        if (scaling is null || type is null or "default")
        {
            return null;
        }

        double Number(string name)
            => scaling[name] is JsonValue value && value.TryGetValue(out double d)
                ? d
                : throw new InvalidDataException($"{source}: rope_scaling.{name} is missing or not a number; rope_type \"{type}\" needs it.");

        return type == RopeScaling.Linear
            ? new RopeScaling(type, Number("factor"))
            : new RopeScaling(type, Number("factor"), Number("low_freq_factor"), Number("high_freq_factor"), checked((int)Number("original_max_position_embeddings")));
    }

    /// <summary>The config as Hugging Face <c>config.json</c> text (with architectures and model_type).</summary>
    /// <param name="torchDtype">The <c>torch_dtype</c> to record: the PyTorch name of the type the weights are stored
    /// in (<c>float32</c>, <c>bfloat16</c>).</param>
    public string ToJson(string torchDtype = "float32")
    {
        ArgumentException.ThrowIfNullOrEmpty(torchDtype);
        var node = JsonNode.Parse(JsonSerializer.Serialize(this, s_json))!.AsObject();
        node["architectures"] = new JsonArray(Architecture);
        node["model_type"] = ModelType;
        node["hidden_act"] = "silu";
        node["torch_dtype"] = torchDtype;
        if (ModelType == Qwen2)
        {
            node["use_sliding_window"] = false; // q/k/v biases are implied by the family
        }
        else
        {
            node["attention_bias"] = false;
        }

        if (ModelType is Qwen2 or Qwen3)
        {
            node["use_sliding_window"] = false;
            node["head_dim"] = HeadDim; // explicit: Qwen3Config's default head_dim is 128, not hidden_size / heads
        }

        if (ModelType == Mistral)
        {
            node["sliding_window"] = SlidingWindow; // null: full causal (MistralConfig's default is 4096, so write it)
        }

        node["mlp_bias"] = false;
        node["rope_scaling"] = RopeScaling switch
        {
            null => null,
            { RopeType: RopeScaling.Linear } r => new JsonObject { ["rope_type"] = r.RopeType, ["factor"] = r.Factor },
            var r => new JsonObject
            {
                ["rope_type"] = r.RopeType,
                ["factor"] = r.Factor,
                ["low_freq_factor"] = r.LowFreqFactor,
                ["high_freq_factor"] = r.HighFreqFactor,
                ["original_max_position_embeddings"] = r.OriginalMaxPositionEmbeddings,
            },
        };
        return node.ToJsonString(s_json);
    }
}
