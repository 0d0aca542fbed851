// What the optimizer updates and the gradient arena mirrors: the whole model in a full fine-tune, or only the LoRA
// adapters (the base frozen). Both are a list of named tensors in one arena, whose layout can be planned again for the
// gradients and each optimizer state buffer.
using MiniSeq.Tensors;

namespace MiniSeq.Model;

/// <summary>The trainable tensors of a run, their values, and their layout for other memory categories.</summary>
public sealed class TrainableTensors(IReadOnlyList<ParameterInfo> tensors, Arena values, Func<MemoryCategory, ArenaPlan> planFor, TrainableTensors.Lookup tryGet)
{
    /// <summary>Finds a tensor by name.</summary>
    public delegate bool Lookup(string name, out ParameterInfo info);

    /// <summary>Every trainable tensor in storage order.</summary>
    public IReadOnlyList<ParameterInfo> Tensors { get; } = tensors;

    /// <summary>Their values.</summary>
    public Arena Values { get; } = values;

    /// <summary>Number of trainable scalars.</summary>
    public long ParameterCount => Tensors.Sum(t => t.ElementCount);

    /// <summary>The same layout in <paramref name="category"/> (gradients, optimizer state).</summary>
    public ArenaPlan PlanFor(MemoryCategory category) => planFor(category);

    /// <summary>Looks up a tensor by name.</summary>
    public bool TryGet(string name, out ParameterInfo info) => tryGet(name, out info);
}
