// config.json of the model families MiniSeq computes (Llama with linear / llama3 RoPE scaling, Qwen2, Qwen3, Mistral): what is
// read, what ToJson writes back (a config transformers reads as the same model), which tensors the layout expects,
// and the one-line refusals of everything else.
using System.Text.Json.Nodes;
using MiniSeq.Kernels;
using MiniSeq.Model;
using MiniSeq.Tests.Helpers;

namespace MiniSeq.Tests.Model;

public class ModelFamilyConfigTests
{
    private const string Llama31 = """
        {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64, "intermediate_size": 96,
         "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 32, "rope_theta": 500000.0,
         "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192, "rope_type": "llama3"}}
        """;

    private const string Qwen25 = """
        {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 64, "intermediate_size": 96,
         "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 32, "rope_theta": 1000000.0,
         "use_sliding_window": false, "sliding_window": 32768, "max_window_layers": 21, "tie_word_embeddings": true, "rope_scaling": null}
        """;

    private const string Qwen3 = """
        {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": 64, "intermediate_size": 96, "attention_bias": false,
         "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 32, "rope_theta": 1000000.0,
         "use_sliding_window": false, "sliding_window": null, "layer_types": ["full_attention", "full_attention"]}
        """;

    private const string Mistral = """
        {"architectures": ["MistralForCausalLM"], "model_type": "mistral", "hidden_size": 64, "intermediate_size": 96,
         "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 32, "rope_theta": 10000.0,
         "sliding_window": 4096}
        """;

    private static LlamaConfig LoadText(string json)
    {
        using var tmp = new TempDir();
        File.WriteAllText(tmp["config.json"], json);
        return LlamaConfig.Load(tmp["config.json"]);
    }

    private static JsonObject With(string json, string field, string value)
    {
        JsonObject node = JsonNode.Parse(json)!.AsObject();
        node[field] = JsonNode.Parse(value);
        return node;
    }

    [Fact]
    public void Load_Llama31RopeScaling_ReadsAllFields_AndRoundTrips()
    {
        LlamaConfig config = LoadText(Llama31);
        Assert.Equal(new RopeScaling(RopeScaling.Llama3, 8.0, 1.0, 4.0, 8192), config.RopeScaling);
        LlamaConfig again = LoadText(config.ToJson());
        Assert.Equal(config.RopeScaling, again.RopeScaling);
        Assert.Equal(config, again);
    }

    [Fact]
    public void Load_Transformers5RopeParameters_ReadsThetaAndScaling()
    {
        LlamaConfig config = LoadText("""
            {"model_type": "llama", "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 1, "num_attention_heads": 4,
             "num_key_value_heads": 2, "vocab_size": 32,
             "rope_parameters": {"rope_type": "linear", "factor": 4.0, "rope_theta": 250000.0}}
            """);
        Assert.Equal(250000.0, config.RopeTheta);
        Assert.Equal(new RopeScaling(RopeScaling.Linear, 4.0), config.RopeScaling);
    }

    [Fact]
    public void Load_LegacyTypeKey_IsTheRopeType()
        => Assert.Equal(RopeScaling.Linear, LoadText(With(Llama31, "rope_scaling", """{"type": "linear", "factor": 2.0}""").ToJsonString()).RopeScaling!.RopeType);

    [Fact]
    public void Load_Qwen2_HasQkvBiases_AndWritesQwen2Back()
    {
        LlamaConfig config = LoadText(Qwen25);
        Assert.True(config.QkvBias);
        Assert.False(config.QkNorm);
        var layout = new ParameterLayout(config);
        Assert.True(layout.TryGet("model.layers.1.self_attn.q_proj.bias", out ParameterInfo q));
        Assert.Equal([64], q.Shape);
        Assert.Equal(ParameterKind.Bias, q.Kind);
        Assert.True(layout.TryGet("model.layers.1.self_attn.k_proj.bias", out ParameterInfo k));
        Assert.Equal([32], k.Shape);
        Assert.True(layout.TryGet("model.layers.1.self_attn.v_proj.bias", out _));
        Assert.False(layout.TryGet("model.layers.1.self_attn.o_proj.bias", out _));

        JsonObject written = JsonNode.Parse(config.ToJson())!.AsObject();
        Assert.Equal("qwen2", written["model_type"]!.GetValue<string>());
        Assert.Equal("Qwen2ForCausalLM", written["architectures"]![0]!.GetValue<string>());
        Assert.False(written["use_sliding_window"]!.GetValue<bool>());
        Assert.Equal(config with { HeadDimOverride = config.HeadDim }, LoadText(config.ToJson())); // head_dim written explicitly
    }

    [Fact]
    public void Load_Qwen3_HasQkNorms_DefaultHeadDim128()
    {
        LlamaConfig config = LoadText(Qwen3);
        Assert.True(config.QkNorm);
        Assert.False(config.QkvBias);
        Assert.Equal(128, config.HeadDim); // Qwen3Config's default, not hidden_size / heads
        var layout = new ParameterLayout(config);
        Assert.True(layout.TryGet("model.layers.0.self_attn.q_norm.weight", out ParameterInfo qn));
        Assert.Equal([128], qn.Shape);
        Assert.Equal(ParameterKind.Norm, qn.Kind);
        Assert.True(layout.TryGet("model.layers.0.self_attn.k_norm.weight", out _));
        Assert.True(layout.TryGet("model.layers.0.self_attn.q_proj.weight", out ParameterInfo qp));
        Assert.Equal([512, 64], qp.Shape);

        JsonObject written = JsonNode.Parse(config.ToJson())!.AsObject();
        Assert.Equal("Qwen3ForCausalLM", written["architectures"]![0]!.GetValue<string>());
        Assert.Equal(128, written["head_dim"]!.GetValue<int>());
        Assert.Equal(config with { HeadDimOverride = config.HeadDim }, LoadText(config.ToJson())); // head_dim written explicitly
    }

    [Fact]
    public void Load_Mistral_SlidingWindow_ReadWrittenAndDefaulted()
    {
        LlamaConfig config = LoadText(Mistral);
        Assert.Equal(4096, config.SlidingWindow);
        Assert.Equal("MistralForCausalLM", config.Architecture);
        Assert.Equal(config, LoadText(config.ToJson()));

        // MistralConfig's default window is 4096; an explicit null is full causal attention.
        JsonObject absent = JsonNode.Parse(Mistral)!.AsObject();
        absent.Remove("sliding_window");
        Assert.Equal(4096, LoadText(absent.ToJsonString()).SlidingWindow);
        LlamaConfig none = LoadText(With(Mistral, "sliding_window", "null").ToJsonString());
        Assert.Null(none.SlidingWindow);
        Assert.Null(LoadText(none.ToJson()).SlidingWindow);
    }

    [Fact]
    public void Load_QwenSlidingWindowDisabled_IsNotApplied()
        => Assert.Null(LoadText(Qwen25).SlidingWindow);

    public static TheoryData<string, string, string, string> Refused => new()
    {
        { Mistral, "sliding_window", "0", "sliding_window" },
        { Mistral, "sliding_window", "\"4096\"", "sliding_window" },
        { Llama31, "sliding_window", "4096", "sliding_window" },
        { Mistral, "model_type", "\"mixtral\"", "model_type" },
        { Llama31, "rope_scaling", """{"rope_type": "yarn", "factor": 4.0}""", "rope_scaling.rope_type" },
        { Llama31, "rope_scaling", """{"rope_type": "dynamic", "factor": 2.0}""", "rope_scaling.rope_type" },
        { Llama31, "rope_scaling", """{"rope_type": "llama3", "factor": 8.0}""", "low_freq_factor" },
        { Llama31, "rope_scaling", """{"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 4.0, "high_freq_factor": 1.0, "original_max_position_embeddings": 8192}""", "high_freq_factor" },
        { Llama31, "model_type", "\"gemma2\"", "model_type" },
        { Llama31, "architectures", """["Qwen2ForCausalLM"]""", "architectures" },
        { Llama31, "partial_rotary_factor", "0.5", "partial_rotary_factor" },
        { Qwen25, "use_sliding_window", "true", "use_sliding_window" },
        { Qwen25, "mlp_bias", "true", "mlp_bias" },
        { Qwen25, "model_type", "\"qwen2_moe\"", "model_type" },
        { Qwen3, "model_type", "\"qwen3_moe\"", "model_type" },
        { Qwen3, "attention_bias", "true", "attention_bias" },
        { Qwen3, "layer_types", """["full_attention", "sliding_attention"]""", "layer_types" },
        { Qwen3, "num_experts", "8", "num_experts" },
    };

    [Theory]
    [MemberData(nameof(Refused))]
    public void Load_UnsupportedField_RefusedWithOneLineNamingIt(string baseConfig, string field, string value, string mention)
    {
        var e = Assert.Throws<InvalidDataException>(() => LoadText(With(baseConfig, field, value).ToJsonString()));
        Assert.Contains(mention, e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', e.Message);
    }
}
