// A Llama model's parameters in one native arena, with HF-style initialisation.
// Deliberately not: the compute (LlamaPass), files (IO/ModelDirectory: Load, Save), training state (Trainer).
using MiniSeq.Tensors;

namespace MiniSeq.Model;

/// <summary>The parameters of a Hugging Face <c>LlamaForCausalLM</c>, fp32, in one native arena.</summary>
public sealed class LlamaModel : IDisposable
{
    /// <summary>Allocates zeroed parameters for <paramref name="config"/>.</summary>
    public LlamaModel(LlamaConfig config, MemoryLedger? ledger = null)
    {
        config.Validate();
        Config = config;
        Ledger = ledger ?? new MemoryLedger();
        Layout = new ParameterLayout(config);
        Parameters = new Arena(Layout.Plan, Ledger);
    }

    /// <summary>The architecture.</summary>
    public LlamaConfig Config { get; }

    /// <summary>Where each tensor lives.</summary>
    public ParameterLayout Layout { get; }

    /// <summary>The parameter arena.</summary>
    public Arena Parameters { get; }

    /// <summary>The ledger all of this model's (and its trainers') memory is accounted to.</summary>
    public MemoryLedger Ledger { get; }

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
    public void Dispose() => Parameters.Dispose();
}
