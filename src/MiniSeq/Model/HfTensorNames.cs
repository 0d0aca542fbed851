// Every Hugging Face tensor name MiniSeq reads or writes lives in this file; C# code uses idiomatic names.
namespace MiniSeq.Model;

/// <summary>Hugging Face <c>LlamaForCausalLM</c> / <c>Qwen2ForCausalLM</c> / <c>Qwen3ForCausalLM</c> state-dict names.</summary>
public static class HfTensorNames
{
    /// <summary>Token embedding (V, C).</summary>
    public const string Embedding = "model.embed_tokens.weight";

    /// <summary>Final RMSNorm weight (C).</summary>
    public const string FinalNorm = "model.norm.weight";

    /// <summary>LM head (V, C); absent when embeddings are tied.</summary>
    public const string LmHead = "lm_head.weight";

    /// <summary>Input RMSNorm of layer <paramref name="layer"/> (C).</summary>
    public static string AttentionNorm(int layer) => $"model.layers.{layer}.input_layernorm.weight";

    /// <summary>Query projection (H·D, C).</summary>
    public static string QueryProjection(int layer) => $"model.layers.{layer}.self_attn.q_proj.weight";

    /// <summary>Key projection (KvH·D, C).</summary>
    public static string KeyProjection(int layer) => $"model.layers.{layer}.self_attn.k_proj.weight";

    /// <summary>Value projection (KvH·D, C).</summary>
    public static string ValueProjection(int layer) => $"model.layers.{layer}.self_attn.v_proj.weight";

    /// <summary>Query projection bias (H·D), Qwen2.</summary>
    public static string QueryBias(int layer) => $"model.layers.{layer}.self_attn.q_proj.bias";

    /// <summary>Key projection bias (KvH·D), Qwen2.</summary>
    public static string KeyBias(int layer) => $"model.layers.{layer}.self_attn.k_proj.bias";

    /// <summary>Value projection bias (KvH·D), Qwen2.</summary>
    public static string ValueBias(int layer) => $"model.layers.{layer}.self_attn.v_proj.bias";

    /// <summary>Per-head query RMSNorm weight (D), Qwen3.</summary>
    public static string QueryNorm(int layer) => $"model.layers.{layer}.self_attn.q_norm.weight";

    /// <summary>Per-head key RMSNorm weight (D), Qwen3.</summary>
    public static string KeyNorm(int layer) => $"model.layers.{layer}.self_attn.k_norm.weight";

    /// <summary>Output projection (C, H·D).</summary>
    public static string OutputProjection(int layer) => $"model.layers.{layer}.self_attn.o_proj.weight";

    /// <summary>Post-attention RMSNorm (C).</summary>
    public static string MlpNorm(int layer) => $"model.layers.{layer}.post_attention_layernorm.weight";

    /// <summary>MLP gate projection (F, C).</summary>
    public static string GateProjection(int layer) => $"model.layers.{layer}.mlp.gate_proj.weight";

    /// <summary>MLP up projection (F, C).</summary>
    public static string UpProjection(int layer) => $"model.layers.{layer}.mlp.up_proj.weight";

    /// <summary>MLP down projection (C, F).</summary>
    public static string DownProjection(int layer) => $"model.layers.{layer}.mlp.down_proj.weight";
}
