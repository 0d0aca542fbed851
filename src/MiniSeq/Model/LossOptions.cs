// What the loss computes (cross-entropy variants) and how the LM head forms its gradient. Unlike a MemoryPolicy,
// these change the numbers, so they are chosen by the user and never by the planner.
using MiniSeq.Kernels;

namespace MiniSeq.Model;

/// <summary>Loss options of a pass.</summary>
public sealed record LossOptions
{
    /// <summary>Plain mean cross-entropy, gradient formed in forward.</summary>
    public static LossOptions Default { get; } = new();

    /// <summary>Label smoothing, z-loss, final-logit soft-cap.</summary>
    public CrossEntropyOptions CrossEntropy { get; init; }

    /// <summary>
    /// LM head: false (default) = gradient in forward (Liger): each chunk's logit gradient is formed as soon as its
    /// loss is known, so logits are computed once. true = recompute (CCE-style): a loss-only pass over all chunks, then
    /// a second pass that recomputes each chunk's logits for the gradient. Same memory, +2·N·C·V FLOPs; kept for the
    /// measurement in docs/benchmarks.
    /// </summary>
    public bool LmHeadRecompute { get; init; }

    /// <summary>Throws <see cref="ArgumentException"/> for values outside their range.</summary>
    public void Validate()
    {
        CrossEntropyOptions ce = CrossEntropy;
        if (!(ce.LabelSmoothing is >= 0 and <= 1) || !(float.IsFinite(ce.ZLossWeight) && ce.ZLossWeight >= 0) || !(float.IsFinite(ce.SoftCap) && ce.SoftCap >= 0))
        {
            throw new ArgumentException("--label-smoothing must be in [0, 1]; --z-loss and --logit-softcap must be finite and ≥ 0.");
        }
    }
}
