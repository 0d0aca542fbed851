// Where every parameter lives in the parameter arena (and, with the same offsets, in the gradient and optimizer
// arenas): HF name, shape, slot, and whether weight decay applies. Computed from the config; allocates nothing.
using MiniSeq.Tensors;

namespace MiniSeq.Model;

/// <summary>What a parameter tensor is: decides its initialisation and its default optimizer group.</summary>
public enum ParameterKind
{
    /// <summary>Token embedding (V, C).</summary>
    Embedding,

    /// <summary>A projection weight (out, in) of attention or MLP.</summary>
    Projection,

    /// <summary>An RMSNorm weight (C, or D for Qwen3's per-head q/k norms).</summary>
    Norm,

    /// <summary>A projection bias (out), e.g. Qwen2's q/k/v biases; initialised to zero as in Hugging Face.</summary>
    Bias,

    /// <summary>The untied LM head (V, C).</summary>
    LmHead,

    /// <summary>A LoRA adapter matrix (A: r × in, B: out × r); initialised by <see cref="Lora.LoraAdapters"/>.</summary>
    Adapter,
}

/// <summary>One parameter tensor: Hugging Face name, shape, kind, and its slot in the parameter arena.</summary>
public sealed record ParameterInfo(string Name, int[] Shape, ArenaSlot Slot, ParameterKind Kind)
{
    /// <summary>HF initialisation: N(0, initializer_range) for every kind but norms (ones) and biases (zeros).</summary>
    public bool NormalInit => Kind is not (ParameterKind.Norm or ParameterKind.Bias);

    /// <summary>Element count.</summary>
    public long ElementCount => Slot.Length;

    /// <summary>Shape as "[a, b]".</summary>
    public string ShapeText => "[" + string.Join(", ", Shape) + "]";
}

/// <summary>Slots of one decoder layer's weights.</summary>
public sealed record LayerSlots(
    ArenaSlot AttentionNorm, // (C)
    ArenaSlot Query,         // (H·D, C)
    ArenaSlot Key,           // (KvH·D, C)
    ArenaSlot Value,         // (KvH·D, C)
    ArenaSlot Output,        // (C, H·D)
    ArenaSlot MlpNorm,       // (C)
    ArenaSlot Gate,          // (F, C)
    ArenaSlot Up,            // (F, C)
    ArenaSlot Down,          // (C, F)
    ArenaSlot? QueryBias = null, // (H·D), Qwen2
    ArenaSlot? KeyBias = null,   // (KvH·D), Qwen2
    ArenaSlot? ValueBias = null, // (KvH·D), Qwen2
    ArenaSlot? QueryNorm = null, // (D), Qwen3: per-head RMSNorm of q before RoPE
    ArenaSlot? KeyNorm = null);  // (D), Qwen3: per-head RMSNorm of k before RoPE

/// <summary>The parameter plan of a model (Llama, Qwen2 with q/k/v biases, Qwen3 with q/k norms).</summary>
public sealed class ParameterLayout
{
    private readonly Dictionary<string, ParameterInfo> _byName = new(StringComparer.Ordinal);
    private readonly List<ParameterInfo> _tensors = [];

    /// <summary>Builds the layout for <paramref name="config"/>; with <paramref name="bf16Projections"/> the attention
    /// and MLP projection weights are stored as bf16 (a frozen base under LoRA adapters: half their memory).</summary>
    public ParameterLayout(LlamaConfig config, MemoryCategory category = MemoryCategory.Parameters, bool bf16Projections = false)
    {
        Config = config;
        Bf16Projections = bf16Projections;
        Plan = new ArenaPlan(category.ToString(), category);
        int c = config.HiddenSize, f = config.IntermediateSize, v = config.VocabSize;
        Embedding = AddTensor(HfTensorNames.Embedding, [v, c], ParameterKind.Embedding);
        var layers = new LayerSlots[config.NumHiddenLayers];
        for (int l = 0; l < layers.Length; l++)
        {
            // Storage order: HF module order within the attention block (q_proj.weight, q_proj.bias, …, q_norm, k_norm).
            bool bias = config.QkvBias, qkNorm = config.QkNorm;
            ArenaSlot attentionNorm = AddTensor(HfTensorNames.AttentionNorm(l), [c], ParameterKind.Norm);
            ArenaSlot query = AddTensor(HfTensorNames.QueryProjection(l), [config.QueryDim, c], ParameterKind.Projection);
            ArenaSlot? queryBias = bias ? AddTensor(HfTensorNames.QueryBias(l), [config.QueryDim], ParameterKind.Bias) : null;
            ArenaSlot key = AddTensor(HfTensorNames.KeyProjection(l), [config.KeyValueDim, c], ParameterKind.Projection);
            ArenaSlot? keyBias = bias ? AddTensor(HfTensorNames.KeyBias(l), [config.KeyValueDim], ParameterKind.Bias) : null;
            ArenaSlot value = AddTensor(HfTensorNames.ValueProjection(l), [config.KeyValueDim, c], ParameterKind.Projection);
            ArenaSlot? valueBias = bias ? AddTensor(HfTensorNames.ValueBias(l), [config.KeyValueDim], ParameterKind.Bias) : null;
            ArenaSlot output = AddTensor(HfTensorNames.OutputProjection(l), [c, config.QueryDim], ParameterKind.Projection);
            ArenaSlot? queryNorm = qkNorm ? AddTensor(HfTensorNames.QueryNorm(l), [config.HeadDim], ParameterKind.Norm) : null;
            ArenaSlot? keyNorm = qkNorm ? AddTensor(HfTensorNames.KeyNorm(l), [config.HeadDim], ParameterKind.Norm) : null;
            layers[l] = new LayerSlots(
                attentionNorm, query, key, value, output,
                AddTensor(HfTensorNames.MlpNorm(l), [c], ParameterKind.Norm),
                AddTensor(HfTensorNames.GateProjection(l), [f, c], ParameterKind.Projection),
                AddTensor(HfTensorNames.UpProjection(l), [f, c], ParameterKind.Projection),
                AddTensor(HfTensorNames.DownProjection(l), [c, f], ParameterKind.Projection),
                queryBias, keyBias, valueBias, queryNorm, keyNorm);
        }

        Layers = layers;
        FinalNorm = AddTensor(HfTensorNames.FinalNorm, [c], ParameterKind.Norm);
        LmHead = config.TieWordEmbeddings ? Embedding : AddTensor(HfTensorNames.LmHead, [v, c], ParameterKind.LmHead);
    }

    /// <summary>Whether the projection weights are stored as bf16.</summary>
    public bool Bf16Projections { get; }

    /// <summary>The config this layout was built from.</summary>
    public LlamaConfig Config { get; }

    /// <summary>The arena plan (total size and slots).</summary>
    public ArenaPlan Plan { get; }

    /// <summary>Token embedding (V, C).</summary>
    public ArenaSlot Embedding { get; }

    /// <summary>Per-layer slots.</summary>
    public IReadOnlyList<LayerSlots> Layers { get; }

    /// <summary>Final norm (C).</summary>
    public ArenaSlot FinalNorm { get; }

    /// <summary>LM head (V, C); the embedding slot when tied.</summary>
    public ArenaSlot LmHead { get; }

    /// <summary>All tensors in storage order (the tied LM head is not listed twice).</summary>
    public IReadOnlyList<ParameterInfo> Tensors => _tensors;

    /// <summary>Number of trainable scalars.</summary>
    public long ParameterCount => _tensors.Sum(t => t.ElementCount);

    /// <summary>The slot of the tensor called <paramref name="name"/>.</summary>
    public ArenaSlot SlotOf(string name) => _byName.TryGetValue(name, out ParameterInfo? info) ? info.Slot : throw new KeyNotFoundException($"No parameter named '{name}'.");

    /// <summary>Looks up a tensor by HF name.</summary>
    public bool TryGet(string name, out ParameterInfo info) => _byName.TryGetValue(name, out info!);

    private ArenaSlot AddTensor(string name, int[] shape, ParameterKind kind)
    {
        long count = 1;
        foreach (int d in shape)
        {
            count *= d;
        }

        ArenaSlot slot = Plan.Add(name, count, Bf16Projections && kind == ParameterKind.Projection ? ElementType.BF16 : ElementType.F32);
        var info = new ParameterInfo(name, shape, slot, kind);
        _tensors.Add(info);
        _byName.Add(name, info);
        return slot;
    }
}
