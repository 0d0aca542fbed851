// Finds parameters that no longer describe a usable model: non-finite values, or a norm so large that the next
// forward pass overflows fp32. Used after every optimizer step, before every save, and to explain a non-finite loss.
using MiniSeq.Kernels;
using MiniSeq.Tensors;

namespace MiniSeq.Model;

/// <summary>One tensor that holds unusable values.</summary>
/// <param name="Name">Hugging Face tensor name.</param>
/// <param name="NonFinite">Number of NaN or ±Inf elements.</param>
/// <param name="MaxAbs">Largest finite magnitude in the tensor.</param>
public readonly record struct UnhealthyTensor(string Name, long NonFinite, float MaxAbs)
{
    /// <summary>"model.norm.weight (3 NaN/Inf values)" or "lm_head.weight (max |w| 1e+30)".</summary>
    public override string ToString() => NonFinite > 0
        ? FormattableString.Invariant($"{Name} ({NonFinite} NaN/Inf value{(NonFinite == 1 ? "" : "s")})")
        : FormattableString.Invariant($"{Name} (max |w| {MaxAbs:G3})");
}

/// <summary>Checks parameter tensors for values a model cannot be used with.</summary>
public static unsafe class ParameterHealth
{
    /// <summary>Magnitude above which a weight is treated as diverged: its square overflows fp32 (√3.4e38).</summary>
    public const float MaxMagnitude = 1.8e19f;

    /// <summary>The first tensor (in storage order) with a NaN/Inf element or an element above <see cref="MaxMagnitude"/>; null if all are usable.</summary>
    public static UnhealthyTensor? FindUnhealthy(ParameterLayout layout, TensorView parameters)
    {
        ArgumentNullException.ThrowIfNull(layout);
        return FindUnhealthy(layout.Tensors, parameters);
    }

    /// <summary>The first of <paramref name="tensors"/> (laid out in <paramref name="parameters"/>) with a NaN/Inf element
    /// or an element above <see cref="MaxMagnitude"/>; null if all are usable.</summary>
    public static UnhealthyTensor? FindUnhealthy(IReadOnlyList<ParameterInfo> tensors, TensorView parameters)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        foreach (ParameterInfo tensor in tensors)
        {
            if (tensor.Slot.Type != ElementType.F32)
            {
                continue; // a frozen bf16 base: rounded from checked fp32 values at load, never updated
            }

            TensorView view = parameters.Slice(tensor.Slot.Offset, tensor.Slot.Length);

            // One vectorised pass decides the common case; only a bad tensor is scanned element by element.
            double sumOfSquares = VectorOps.SumOfSquares(view.Pointer, view.Length);
            if (double.IsFinite(sumOfSquares) && sumOfSquares < (double)MaxMagnitude * MaxMagnitude)
            {
                continue;
            }

            long nonFinite = 0;
            float maxAbs = 0;
            for (long i = 0; i < view.Length; i++)
            {
                float x = view.Pointer[i];
                if (!float.IsFinite(x))
                {
                    nonFinite++;
                }
                else
                {
                    maxAbs = Math.Max(maxAbs, Math.Abs(x));
                }
            }

            if (nonFinite > 0 || maxAbs > MaxMagnitude)
            {
                return new UnhealthyTensor(tensor.Name, nonFinite, maxAbs);
            }
        }

        return null;
    }
}
