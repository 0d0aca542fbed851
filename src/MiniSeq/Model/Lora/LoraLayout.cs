// Where every adapter tensor lives in the adapter arena (and, with the same offsets, in its gradient and optimizer
// arenas), under PEFT's state-dict names, and which base projection each pair belongs to. Allocates nothing.
using MiniSeq.Tensors;

namespace MiniSeq.Model.Lora;

/// <summary>One adapter: A (r × in) and B (out × r) on the base weight called <see cref="BaseName"/>.</summary>
public sealed record LoraPair(string BaseName, LoraTargets Target, int Layer, ArenaSlot A, ArenaSlot B, int InFeatures, int OutFeatures);

/// <summary>The adapter tensors of one model and LoRA configuration.</summary>
public sealed class LoraLayout
{
    /// <summary>The prefix PEFT puts before the wrapped model's state-dict names.</summary>
    public const string PeftPrefix = "base_model.model.";

    private readonly Dictionary<string, LoraPair> _byBaseName = new(StringComparer.Ordinal);
    private readonly Dictionary<string, ParameterInfo> _byName = new(StringComparer.Ordinal);
    private readonly List<ParameterInfo> _tensors = [];
    private readonly List<LoraPair> _pairs = [];

    /// <summary>Builds the layout of <paramref name="lora"/>'s adapters on <paramref name="model"/>'s projections.</summary>
    public LoraLayout(ParameterLayout model, LoraConfig lora, MemoryCategory category = MemoryCategory.Parameters)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(lora);
        lora.Validate();
        Lora = lora;
        Plan = new ArenaPlan("lora " + category, category);
        LlamaConfig config = model.Config;
        int c = config.HiddenSize, f = config.IntermediateSize, hd = config.QueryDim, kvd = config.KeyValueDim;
        for (int l = 0; l < model.Layers.Count; l++)
        {
            LayerSlots w = model.Layers[l];
            Add(LoraTargets.Query, l, w.Query, $"model.layers.{l}.self_attn.q_proj", c, hd);
            Add(LoraTargets.Key, l, w.Key, $"model.layers.{l}.self_attn.k_proj", c, kvd);
            Add(LoraTargets.Value, l, w.Value, $"model.layers.{l}.self_attn.v_proj", c, kvd);
            Add(LoraTargets.Output, l, w.Output, $"model.layers.{l}.self_attn.o_proj", hd, c);
            Add(LoraTargets.Gate, l, w.Gate, $"model.layers.{l}.mlp.gate_proj", c, f);
            Add(LoraTargets.Up, l, w.Up, $"model.layers.{l}.mlp.up_proj", c, f);
            Add(LoraTargets.Down, l, w.Down, $"model.layers.{l}.mlp.down_proj", f, c);
        }

        // Tied embeddings: the head's slot is the embedding's, and only the head goes through a projection.
        Add(LoraTargets.LmHead, -1, model.LmHead, "lm_head", c, config.VocabSize);

        void Add(LoraTargets target, int layer, ArenaSlot weight, string module, int inFeatures, int outFeatures)
        {
            if (!lora.Targets.HasFlag(target))
            {
                return;
            }

            ArenaSlot a = AddTensor($"{PeftPrefix}{module}.lora_A.weight", [lora.Rank, inFeatures]);
            ArenaSlot b = AddTensor($"{PeftPrefix}{module}.lora_B.weight", [outFeatures, lora.Rank]);
            var pair = new LoraPair(weight.Name, target, layer, a, b, inFeatures, outFeatures);
            _pairs.Add(pair);
            _byBaseName.Add(weight.Name, pair);
        }
    }

    /// <summary>The LoRA configuration.</summary>
    public LoraConfig Lora { get; }

    /// <summary>The arena plan (total size and slots).</summary>
    public ArenaPlan Plan { get; }

    /// <summary>Every adapter tensor in storage order (A before B, layers in order, lm_head last).</summary>
    public IReadOnlyList<ParameterInfo> Tensors => _tensors;

    /// <summary>Every adapter pair in storage order.</summary>
    public IReadOnlyList<LoraPair> Pairs => _pairs;

    /// <summary>Number of adapter scalars.</summary>
    public long ParameterCount => _tensors.Sum(t => t.ElementCount);

    /// <summary>The adapter on the base weight in <paramref name="weight"/>, or null.</summary>
    public LoraPair? Find(ArenaSlot weight) => _byBaseName.GetValueOrDefault(weight.Name);

    /// <summary>Looks up a tensor by PEFT name.</summary>
    public bool TryGet(string name, out ParameterInfo info) => _byName.TryGetValue(name, out info!);

    private ArenaSlot AddTensor(string name, int[] shape)
    {
        ArenaSlot slot = Plan.Add(name, (long)shape[0] * shape[1]);
        var info = new ParameterInfo(name, shape, slot, ParameterKind.Adapter);
        _tensors.Add(info);
        _byName.Add(name, info);
        return slot;
    }
}
