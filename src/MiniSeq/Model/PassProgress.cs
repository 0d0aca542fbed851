// Where a forward/backward pass is, reported between layers: at long N one step takes minutes, and a user (or a
// supervisor of the run) should see it move rather than wait for the step's end.
namespace MiniSeq.Model;

/// <summary>The part of a pass that has just finished.</summary>
public enum PassPhase
{
    /// <summary>Forward through <see cref="PassProgress.LayersDone"/> of the layers.</summary>
    Forward,

    /// <summary>The LM head and loss (with their gradient).</summary>
    LmHead,

    /// <summary>Backward through <see cref="PassProgress.LayersDone"/> of the layers (from the last one down).</summary>
    Backward,
}

/// <summary>A pass's position: <paramref name="Phase"/> has finished <paramref name="LayersDone"/> of <paramref name="Layers"/> layers.</summary>
public readonly record struct PassProgress(PassPhase Phase, int LayersDone, int Layers)
{
    /// <summary>"forward 3/24", "LM head", "backward 12/24".</summary>
    public override string ToString() => Phase switch
    {
        PassPhase.Forward => FormattableString.Invariant($"forward {LayersDone}/{Layers}"),
        PassPhase.LmHead => "LM head",
        _ => FormattableString.Invariant($"backward {LayersDone}/{Layers}"),
    };
}

/// <summary>A training step's position: micro-batch <paramref name="MicroBatch"/> (1-based) of <paramref name="MicroBatches"/>, and where its pass is.</summary>
public readonly record struct StepProgress(int MicroBatch, int MicroBatches, PassProgress Pass)
{
    /// <summary>"backward 12/24", prefixed by "micro-batch 2/4: " when the step has several.</summary>
    public override string ToString() => MicroBatches > 1
        ? FormattableString.Invariant($"micro-batch {MicroBatch}/{MicroBatches}: {Pass}")
        : Pass.ToString();
}
