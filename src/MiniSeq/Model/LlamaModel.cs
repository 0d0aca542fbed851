// A Llama model's parameters in one native arena, with HF-style initialisation and HF directory load/save.
// Deliberately not: the compute. Forward/backward live in LlamaPass; training state (gradients, optimizer) in Trainer.
using MiniSeq.IO;
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

    /// <summary>Hugging Face initialisation: N(0, initializer_range) for matrices and embeddings, 1 for norm weights.</summary>
    public void InitializeRandom(ulong seed)
    {
        var rng = new DeterministicRandom(seed);
        float std = (float)Config.InitializerRange;
        foreach (ParameterInfo info in Layout.Tensors)
        {
            Span<float> data = Parameters[info.Slot].Span;
            if (info.IsMatrix)
            {
                rng.FillNormal(data, std);
            }
            else
            {
                data.Fill(1f);
            }
        }
    }

    /// <summary>Loads a Hugging Face model directory (config.json + model.safetensors or a sharded index).</summary>
    public static LlamaModel Load(string directory, MemoryLedger? ledger = null, Action<string>? warn = null)
    {
        LlamaConfig config = ModelDirectory.ReadConfig(directory);
        var model = new LlamaModel(config, ledger);
        try
        {
            ModelDirectory.ReadWeights(directory, model.Layout, model.Parameters.All, warn);
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>Writes config.json and model.safetensors (F32, HF names) atomically.</summary>
    public void Save(string directory, bool overwrite = false) => ModelDirectory.Save(directory, Config, Layout, Parameters.All, overwrite);

    /// <summary>Frees the parameters.</summary>
    public void Dispose() => Parameters.Dispose();
}

/// <summary>SplitMix64-based generator: the same stream on every platform and runtime.</summary>
public sealed class DeterministicRandom
{
    private ulong _state;

    /// <summary>Seeds the generator.</summary>
    public DeterministicRandom(ulong seed) => _state = seed;

    /// <summary>Next 64 random bits.</summary>
    public ulong NextUInt64()
    {
        ulong z = _state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>Uniform in [0, 1).</summary>
    public double NextDouble() => (NextUInt64() >> 11) * (1.0 / (1UL << 53));

    /// <summary>Uniform integer in [0, maxExclusive).</summary>
    public int NextInt(int maxExclusive) => (int)(NextDouble() * maxExclusive);

    /// <summary>Fills with N(0, std²) samples (Box–Muller).</summary>
    public void FillNormal(Span<float> destination, float std)
    {
        for (int i = 0; i < destination.Length; i += 2)
        {
            double u1 = 1.0 - NextDouble(), u2 = NextDouble();
            double r = Math.Sqrt(-2.0 * Math.Log(u1));
            destination[i] = (float)(std * r * Math.Cos(2 * Math.PI * u2));
            if (i + 1 < destination.Length)
            {
                destination[i + 1] = (float)(std * r * Math.Sin(2 * Math.PI * u2));
            }
        }
    }
}
