// The adapter weights of a LoRA fine-tune, attached to a LlamaModel: while attached, every projection with an adapter
// computes x·Wᵀ + (α/r)·(x·Aᵀ)·Bᵀ, the base is frozen and only A and B train. PEFT's initialisation (A
// Kaiming-uniform with a = √5, B zero, so training starts from the base model) and its merge (W += (α/r)·B·A).
using MiniSeq.Kernels;
using MiniSeq.Tensors;

namespace MiniSeq.Model.Lora;

/// <summary>LoRA adapter weights in one native arena.</summary>
public sealed unsafe class LoraAdapters : IDisposable
{
    internal LoraAdapters(ParameterLayout model, LoraConfig lora, MemoryLedger ledger)
    {
        Layout = new LoraLayout(model, lora);
        Weights = new Arena(Layout.Plan, ledger);
        Trainable = new TrainableTensors(Layout.Tensors, Weights, category => new LoraLayout(model, lora, category).Plan, Layout.TryGet);
    }

    /// <summary>The LoRA configuration.</summary>
    public LoraConfig Config => Layout.Lora;

    /// <summary>Where each adapter tensor lives.</summary>
    public LoraLayout Layout { get; }

    /// <summary>The adapter arena.</summary>
    public Arena Weights { get; }

    /// <summary>The adapters as the optimizer and the trainer see them.</summary>
    public TrainableTensors Trainable { get; }

    /// <summary>PEFT's initialisation: A ~ U(−1/√in, 1/√in) (nn.init.kaiming_uniform_ with a = √5), B = 0.</summary>
    public void InitializePeft(ulong seed)
    {
        var rng = new DeterministicRandom(seed);
        foreach (LoraPair pair in Layout.Pairs)
        {
            Span<float> a = Weights[pair.A].Span;
            float bound = 1f / MathF.Sqrt(pair.InFeatures);
            for (int i = 0; i < a.Length; i++)
            {
                a[i] = (float)(((2 * rng.NextDouble()) - 1) * bound);
            }

            Weights[pair.B].Clear();
        }
    }

    /// <summary>Folds every adapter into its base weight of <paramref name="model"/>: W += (α/r)·B·A (PEFT's merge).</summary>
    public void MergeInto(LlamaModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        float scale = Config.Scale;
        foreach (LoraPair pair in Layout.Pairs)
        {
            int r = Config.Rank;
            float* w = model.Parameters.All.Pointer + model.Layout.SlotOf(pair.BaseName).Offset;
            MatMul.Gemm(false, false, pair.OutFeatures, pair.InFeatures, r, scale, Weights[pair.B].Pointer, r, Weights[pair.A].Pointer, pair.InFeatures, 1f, w, pair.InFeatures);
        }
    }

    /// <summary>Frees the adapter weights.</summary>
    public void Dispose() => Weights.Dispose();
}
