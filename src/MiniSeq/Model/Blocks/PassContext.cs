// What the blocks of one pass share: the model, the plan, the plan's arenas, the RoPE table, and the accessors that
// turn arena slots into pointers and parameter slots into Linear weights (with or without a gradient).
using MiniSeq.Diagnostics;
using MiniSeq.Kernels;
using MiniSeq.Tensors;

namespace MiniSeq.Model.Blocks;

/// <summary>The state one <see cref="LlamaPass"/> hands to its attention, MLP and LM-head blocks.</summary>
internal sealed unsafe class PassContext(LlamaModel model, PassPlan plan, Arena activations, Arena scratch, RopeTable rope, Arena computeWeights)
{
    // Mixed precision: master slot offset → its bf16 compute copy (empty in fp32).
    private readonly Dictionary<long, ArenaSlot> _computeCopies = PassPlan.ComputeWeightSources(model.Layout)
        .Zip(plan.ComputeWeights.Slots).ToDictionary(p => p.First.Slot.ByteOffset, p => p.Second);

    public LlamaModel Model { get; } = model;

    public LlamaConfig Config { get; } = model.Config;

    public ParameterLayout Layout { get; } = model.Layout;

    public PassPlan Plan { get; } = plan;

    public RopeTable Rope { get; set; } = rope;

    /// <summary>The position offset RoPE reads <see cref="Rope"/> with: 0 for the pass's own table (row t = position
    /// Offset + t); Ulysses with packed rows swaps in a table of every position up to the shard's end and sets the
    /// shard's offset, because a document that began in an earlier shard restarts below it.</summary>
    public int RopeOffset { get; set; }

    public Arena Scratch { get; } = scratch;

    /// <summary>Ulysses sequence parallel: the attention all-to-alls of this pass, or null.</summary>
    public Distributed.UlyssesAttention? SequenceParallel { get; init; }

    /// <summary>Where each token's document begins within its row (packed batch, B·T), or null: one document per row.</summary>
    public int* DocumentStarts { get; set; }

    /// <summary>Ulysses with packed rows: the document starts of the whole rows (B·P·T), which attention over the whole
    /// sequence needs, or null.</summary>
    public int* SequenceDocumentStarts { get; set; }

    /// <summary>Seed of this training pass's LoRA dropout masks, or null: no dropout (evaluation, generation).</summary>
    public ulong? DropoutSeed { get; set; }

    /// <summary>Which global token each pass row is, for the dropout masks (see <see cref="DropoutTokens"/>).</summary>
    public DropoutTokens DropoutTokens { get; set; }

    /// <summary>Token rows of the pass (B·T).</summary>
    public int Rows => (int)Plan.Rows;

    public float Eps => (float)Config.RmsNormEps;

    /// <summary>A parameter (weight) slot of the model.</summary>
    public float* Weight(ArenaSlot slot) => Model.Parameters[slot].Pointer;

    /// <summary>A slot of the activations saved for backward.</summary>
    public float* Saved(ArenaSlot slot) => activations[slot].Pointer;

    /// <summary>A slot of a layer's workspace (<see cref="LayerWorkspaceSlots"/>): saved activations, or scratch when
    /// one workspace serves every layer and is dead while the LM head runs (<see cref="PassPlan.WorkspaceInScratch"/>).</summary>
    public float* Work(ArenaSlot slot) => (Plan.WorkspaceInScratch ? Scratch : activations)[slot].Pointer;

    /// <summary>A bf16 slot of a layer's workspace (q, k, v under <see cref="PassPlan.AttentionInputsBf16"/>).</summary>
    public ushort* WorkBf16(ArenaSlot slot) => (Plan.WorkspaceInScratch ? Scratch : activations).Bf16(slot);

    /// <summary>Stores x (<paramref name="slot"/>'s length in floats) rounded to bf16 in <paramref name="slot"/> of the
    /// activations saved for backward; with <paramref name="roundInPlace"/> x then holds the rounded values too.</summary>
    public void StoreBf16(float* x, ArenaSlot slot, bool roundInPlace = false)
    {
        BFloat16.FromFloat(x, activations.Bf16(slot), slot.Length);
        if (roundInPlace)
        {
            BFloat16.ToFloat(activations.Bf16(slot), x, slot.Length);
        }
    }

    /// <summary>Widens a bf16 slot of the saved activations into x.</summary>
    public void LoadBf16(ArenaSlot slot, float* x) => BFloat16.ToFloat(activations.Bf16(slot), x, slot.Length);

    /// <summary>A slot of the scratch arena (temporaries of one phase).</summary>
    public float* Temp(ArenaSlot slot) => Scratch[slot].Pointer;

    /// <summary>
    /// The gradient of a base parameter in <paramref name="gradients"/> (the trainable tensors' gradient arena), or null
    /// when there are no gradients (forward only) or the base is frozen (LoRA adapters attached: the arena is theirs).
    /// </summary>
    public float* GradientOf(TensorView gradients, ArenaSlot slot) => gradients.IsEmpty || Model.Adapters is not null ? null : gradients.Pointer + slot.Offset;

    /// <summary>The Linear layer whose (out × in) weight lives in <paramref name="weight"/> (and its bias, if any, in
    /// <paramref name="bias"/>), with its LoRA adapter if the model has one there; gradients in
    /// <paramref name="gradients"/> unless empty. Under mixed precision the GEMMs read the weight's bf16 compute copy
    /// and its gradient is the fp32 master's.</summary>
    public LinearWeights Projection(ArenaSlot weight, int inFeatures, int outFeatures, TensorView gradients, ArenaSlot? bias = null)
    {
        float* biasValues = bias is { } b ? Weight(b) : null, biasGrad = bias is { } g ? GradientOf(gradients, g) : null;
        var linear = weight.Type == ElementType.BF16
            ? new LinearWeights(Model.Parameters.Bf16(weight), inFeatures, outFeatures, null, biasValues, biasGrad)
            : _computeCopies.TryGetValue(weight.ByteOffset, out ArenaSlot copy)
                ? new LinearWeights(computeWeights.Bf16(copy), inFeatures, outFeatures, GradientOf(gradients, weight), biasValues, biasGrad)
                : new LinearWeights(Weight(weight), inFeatures, outFeatures, GradientOf(gradients, weight), biasValues, biasGrad);
        if (Model.Adapters is not { } adapters || adapters.Layout.Find(weight) is not { } pair)
        {
            return linear;
        }

        if (Plan.Lora != adapters.Config)
        {
            throw new InvalidOperationException("The pass was planned without the model's LoRA adapters (or for others): plan with lora: model.Adapters.Config.");
        }

        bool train = !gradients.IsEmpty;
        bool dropout = DropoutSeed is not null && adapters.Config.Dropout > 0;
        return linear with
        {
            Adapter = new LinearAdapter(adapters.Weights[pair.A].Pointer, adapters.Weights[pair.B].Pointer, adapters.Config.Rank, adapters.Config.Scale, Temp(Plan.LoraRows),
                train ? gradients.Pointer + pair.A.Offset : null, train ? gradients.Pointer + pair.B.Offset : null)
            {
                Dropout = dropout ? adapters.Config.Dropout : 0f,
                DropoutSeed = dropout ? DeterministicRandom.Mix(DropoutSeed!.Value, (ulong)pair.A.ByteOffset) : 0,
                DropoutTokens = DropoutTokens,
                DropoutBuffer = dropout ? Temp(Plan.LoraDropoutBlock) : null,
            },
        };
    }

    public void NormForward(float* x, ArenaSlot weight, int rows, float* output, float* rstd)
    {
        using var scope = StepProfiler.Measure(ProfiledOp.Norms);
        RmsNorm.Forward(x, Weight(weight), rows, Config.HiddenSize, Eps, output, rstd);
    }

    /// <summary>Per-head RMSNorm (Qwen3 q/k norm) over rows·heads rows of width D; output may alias x.</summary>
    public void HeadNormForward(float* x, ArenaSlot weight, int rows, int heads, float* output, float* rstd)
    {
        using var scope = StepProfiler.Measure(ProfiledOp.Norms);
        RmsNorm.Forward(x, Weight(weight), rows * heads, Config.HeadDim, Eps, output, rstd);
    }

    /// <summary>Backward of <see cref="HeadNormForward"/>: dx += …, dWeight += … (dx must not alias the inputs).</summary>
    public void HeadNormBackward(float* dOutput, float* x, ArenaSlot weight, float* rstd, int rows, int heads, float* dx, TensorView gradients)
    {
        using var scope = StepProfiler.Measure(ProfiledOp.Norms);
        RmsNorm.Backward(dOutput, x, Weight(weight), rstd, rows * heads, Config.HeadDim, dx, GradientOf(gradients, weight));
    }

    public void NormBackward(float* dOutput, float* x, ArenaSlot weight, float* rstd, int rows, float* dx, TensorView gradients)
    {
        using var scope = StepProfiler.Measure(ProfiledOp.Norms);
        RmsNorm.Backward(dOutput, x, Weight(weight), rstd, rows, Config.HiddenSize, dx, GradientOf(gradients, weight));
    }
}
