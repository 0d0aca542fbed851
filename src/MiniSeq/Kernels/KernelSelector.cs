// Picks the SIMD width the element-wise and row-wise kernels run at: the widest accelerated one
// (Vector512 → Vector256 → Vector128 → scalar), or the one forced by MINISEQ_FORCE_ISA=Scalar|V128|V256|V512 (read
// once), or a per-thread override that tests set and restore. Kernels read Width once at entry, on the calling
// thread, and hand it to their pool bodies, so a thread-local override also covers work done by pool workers.
// Deliberately not: a dispatcher for GEMM or attention (they have their own hand-tiled kernels).
using System.Runtime.Intrinsics;

namespace MiniSeq.Kernels;

/// <summary>A SIMD width the vector kernels can run at.</summary>
public enum IsaWidth
{
    /// <summary>One float at a time (the software fallback).</summary>
    Scalar = 0,

    /// <summary>128-bit vectors (4 floats).</summary>
    V128 = 1,

    /// <summary>256-bit vectors (8 floats).</summary>
    V256 = 2,

    /// <summary>512-bit vectors (16 floats).</summary>
    V512 = 3,
}

/// <summary>Selects the SIMD width of the vector kernels.</summary>
public static class KernelSelector
{
    /// <summary>The name of the environment variable that forces a width (Scalar, V128, V256 or V512).</summary>
    public const string ForceIsaVariable = "MINISEQ_FORCE_ISA";

    private static readonly IsaWidth s_widest = DetectWidest();
    private static readonly IsaWidth s_selected = SelectFromEnvironment();

    [ThreadStatic] private static IsaWidth? t_override;

    /// <summary>The widest width the hardware accelerates.</summary>
    public static IsaWidth Widest => s_widest;

    /// <summary>The width kernels started on this thread use: the thread override, else MINISEQ_FORCE_ISA, else <see cref="Widest"/>.</summary>
    public static IsaWidth Width => t_override ?? s_selected;

    /// <summary>
    /// Per-thread override for tests (null = none). Kernels started on this thread use it, including the work they hand
    /// to pool workers. A width wider than the hardware accelerates still runs (software-emulated by the JIT), only slower.
    /// </summary>
    internal static IsaWidth? Override
    {
        get => t_override;
        set => t_override = value;
    }

    /// <summary>Every width (for tests that sweep them all).</summary>
    internal static IsaWidth[] AllWidths => [IsaWidth.Scalar, IsaWidth.V128, IsaWidth.V256, IsaWidth.V512];

    /// <summary>Sets <see cref="Override"/> until the returned scope is disposed (then restores the previous value).</summary>
    internal static OverrideScope Force(IsaWidth width)
    {
        var scope = new OverrideScope(t_override);
        t_override = width;
        return scope;
    }

    /// <summary>Restores the previous override on dispose.</summary>
    internal readonly struct OverrideScope : IDisposable
    {
        private readonly IsaWidth? _previous;

        internal OverrideScope(IsaWidth? previous) => _previous = previous;

        public void Dispose() => t_override = _previous;
    }

    private static IsaWidth DetectWidest()
        => Vector512.IsHardwareAccelerated ? IsaWidth.V512
        : Vector256.IsHardwareAccelerated ? IsaWidth.V256
        : Vector128.IsHardwareAccelerated ? IsaWidth.V128
        : IsaWidth.Scalar;

    private static IsaWidth SelectFromEnvironment() => ParseForced(Environment.GetEnvironmentVariable(ForceIsaVariable), s_widest);

    /// <summary>The width MINISEQ_FORCE_ISA = <paramref name="forced"/> selects (null or blank: <paramref name="widest"/>).</summary>
    internal static IsaWidth ParseForced(string? forced, IsaWidth widest)
    {
        if (string.IsNullOrWhiteSpace(forced))
        {
            return widest;
        }

        if (!Enum.TryParse(forced.Trim(), ignoreCase: true, out IsaWidth width) || !Enum.IsDefined(width) || char.IsDigit(forced.Trim()[0]))
        {
            throw new InvalidOperationException($"{ForceIsaVariable}='{forced}' is not one of Scalar, V128, V256, V512. Unset it to use the widest accelerated width ({widest}).");
        }

        return width;
    }
}
