// A Llama model's parameters in one native arena, with HF-style initialisation.
// Deliberately not: the compute (LlamaPass), files (IO/ModelDirectory: Load, Save), training state (Trainer).
using MiniSeq.Model.Lora;
using MiniSeq.Tensors;

namespace MiniSeq.Model;

/// <summary>The parameters of a Hugging Face <c>LlamaForCausalLM</c>, fp32, in one native arena.</summary>
public sealed class LlamaModel : IDisposable
{
    /// <summary>Allocates zeroed parameters for <paramref name="config"/>; with <paramref name="bf16Projections"/> the
    /// projection weights are stored as bf16 and the model trains only through LoRA adapters (the base is frozen).</summary>
    public LlamaModel(LlamaConfig config, MemoryLedger? ledger = null, bool bf16Projections = false)
    {
        config.Validate();
        Config = config;
        Ledger = ledger ?? new MemoryLedger();
        Layout = new ParameterLayout(config, bf16Projections: bf16Projections);
        Parameters = new Arena(Layout.Plan, Ledger);
        _base = new TrainableTensors(Layout.Tensors, Parameters, category => new ParameterLayout(config, category).Plan, Layout.TryGet);
    }

    private readonly TrainableTensors _base;

    /// <summary>The architecture.</summary>
    public LlamaConfig Config { get; }

    /// <summary>Where each tensor lives.</summary>
    public ParameterLayout Layout { get; }

    /// <summary>The parameter arena.</summary>
    public Arena Parameters { get; }

    /// <summary>The ledger all of this model's (and its trainers') memory is accounted to.</summary>
    public MemoryLedger Ledger { get; }

    /// <summary>The LoRA adapters attached by <see cref="AttachAdapters"/>, or null (a full fine-tune).</summary>
    public LoraAdapters? Adapters { get; private set; }

    /// <summary>What training updates: the adapters when attached (the base is then frozen), else every parameter.</summary>
    /// <exception cref="InvalidOperationException">A bf16 base without adapters: it cannot be trained.</exception>
    public TrainableTensors Trainable => Adapters?.Trainable ?? (Layout.Bf16Projections
        ? throw new InvalidOperationException("The projection weights are stored as bf16 (a frozen base): attach LoRA adapters to train, or load the model in fp32.")
        : _base);

    /// <summary>Attaches zero-initialised adapters (see <see cref="LoraAdapters.InitializePeft"/>); from now on every
    /// pass adds them and training updates only them. Owned by the model.</summary>
    public LoraAdapters AttachAdapters(LoraConfig lora)
    {
        ArgumentNullException.ThrowIfNull(lora);
        if (Adapters is not null)
        {
            throw new InvalidOperationException("The model already has adapters attached.");
        }

        Adapters = new LoraAdapters(Layout, lora, Ledger);
        return Adapters;
    }

    /// <summary>Folds the attached adapters into the base weights (W += (α/r)·B·A) and detaches them.</summary>
    /// <exception cref="InvalidOperationException">No adapters, or an lm_head adapter on tied embeddings (merging it
    /// would change the embedding too).</exception>
    public void MergeAdapters()
    {
        LoraAdapters adapters = Adapters ?? throw new InvalidOperationException("The model has no adapters to merge.");
        if (Layout.Bf16Projections)
        {
            throw new InvalidOperationException("The base's projections are stored as bf16: load the base in fp32 to merge adapters into it (miniseq merge does).");
        }

        if (Config.TieWordEmbeddings && adapters.Config.Targets.HasFlag(LoraTargets.LmHead))
        {
            throw new InvalidOperationException("An lm_head adapter cannot be merged into a model with tied embeddings: the head's weight is the embedding table, which the merge would change too.");
        }

        adapters.MergeInto(this);
        adapters.Dispose();
        Adapters = null;
    }

    /// <summary>A parameter by Hugging Face name.</summary>
    public TensorView Parameter(string name)
        => Layout.TryGet(name, out ParameterInfo info) ? Parameters[info.Slot] : throw new KeyNotFoundException($"No parameter named '{name}'.");

    /// <summary>Hugging Face initialisation: N(0, initializer_range) for matrices and embeddings, 1 for norm weights, 0 for biases.</summary>
    public void InitializeRandom(ulong seed)
    {
        var rng = new DeterministicRandom(seed);
        float std = (float)Config.InitializerRange;
        foreach (ParameterInfo info in Layout.Tensors)
        {
            if (info.Slot.Type == ElementType.BF16)
            {
                // Drawn in fp32 as for an fp32 model, then rounded: the same model up to bf16 rounding. Native staging,
                // freed at once, so that the managed heap does not keep it.
                using var staging = new NativeBuffer(info.ElementCount, MemoryCategory.Scratch, null, "bf16 init staging");
                rng.FillNormal(staging.View.Span, std);
                unsafe
                {
                    Kernels.BFloat16.FromFloat(staging.Pointer, Parameters.Bf16(info.Slot), info.ElementCount);
                }

                continue;
            }

            Span<float> data = Parameters[info.Slot].Span;
            if (info.NormalInit)
            {
                rng.FillNormal(data, std);
            }
            else
            {
                data.Fill(info.Kind == ParameterKind.Bias ? 0f : 1f);
            }
        }
    }

    /// <summary>Frees the parameters.</summary>
    public void Dispose()
    {
        Adapters?.Dispose();
        Parameters.Dispose();
    }
}
