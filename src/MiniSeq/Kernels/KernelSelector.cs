// Picks the SIMD width every kernel runs at: the widest accelerated one (Vector512 → Vector256 → Vector128 → scalar),
// or the one forced by MINISEQ_FORCE_ISA=Scalar|V128|V256|V512 (read once; this is its only parser), or a per-thread
// override that tests set and restore. Kernels read the width once at entry, on the calling thread, and hand it to
// their pool bodies, so a thread-local override also covers work done by pool workers. The FMA-bound GEMM and
// attention kernels cap that width at the widest one with hardware FMA (TiledWidth): a wider one would be emulated.
// An invalid MINISEQ_FORCE_ISA throws on first use, not in the type initializer, so the CLI reports one clear line.
// Deliberately not: a dispatcher (each kernel switches on the width itself).
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;

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
    private static readonly IsaWidth s_widestFma = DetectWidestFma();
    private static readonly string? s_forced = Environment.GetEnvironmentVariable(ForceIsaVariable);
    private static readonly IsaWidth? s_selected = TryParseForced(s_forced, s_widest);

    [ThreadStatic] private static IsaWidth? t_override;

    /// <summary>The widest width the hardware accelerates.</summary>
    public static IsaWidth Widest => s_widest;

    /// <summary>
    /// The widest width whose fused multiply-add runs in hardware (AVX-512F, AVX2+FMA, 128-bit FMA or AdvSimd; scalar
    /// otherwise). The GEMM and attention kernels never run wider than this.
    /// </summary>
    public static IsaWidth WidestFma => s_widestFma;

    /// <summary>Whether MINISEQ_FORCE_ISA is set (to anything but blank).</summary>
    public static bool IsForced => !string.IsNullOrWhiteSpace(s_forced);

    /// <summary>The process-wide width: MINISEQ_FORCE_ISA, else <see cref="Widest"/> (throws if MINISEQ_FORCE_ISA is invalid).</summary>
    public static IsaWidth Selected => s_selected ?? ParseForced(s_forced, s_widest);

    /// <summary>The width kernels started on this thread use: the thread override, else MINISEQ_FORCE_ISA, else <see cref="Widest"/>.</summary>
    public static IsaWidth Width => t_override ?? Selected;

    /// <summary>The width the GEMM and attention kernels started on this thread use: <see cref="Width"/> capped at <see cref="WidestFma"/>.</summary>
    public static IsaWidth TiledWidth => CapToFma(Width);

    /// <summary>
    /// Per-thread override for tests (null = none). Kernels started on this thread use it, including the work they hand
    /// to pool workers. A width wider than the hardware accelerates still runs in the row kernels (software-emulated by
    /// the JIT), only slower; GEMM and attention cap it at <see cref="WidestFma"/>.
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

    /// <summary><paramref name="requested"/>, or <see cref="WidestFma"/> if that is narrower (what GEMM and attention run at).</summary>
    internal static IsaWidth CapToFma(IsaWidth requested) => requested > s_widestFma ? s_widestFma : requested;

    private static IsaWidth DetectWidestFma()
    {
        bool fma = Fma.IsSupported || AdvSimd.IsSupported;
        return Vector512.IsHardwareAccelerated && Avx512F.IsSupported ? IsaWidth.V512
            : Vector256.IsHardwareAccelerated && Avx2.IsSupported && Fma.IsSupported ? IsaWidth.V256
            : Vector128.IsHardwareAccelerated && fma ? IsaWidth.V128
            : IsaWidth.Scalar;
    }

    // The parse for the static field: null (rethrown by ParseForced on first use of Selected) for an invalid value.
    private static IsaWidth? TryParseForced(string? forced, IsaWidth widest)
    {
        try
        {
            return ParseForced(forced, widest);
        }
        catch (InvalidOperationException)
        {
            return null;
        }
    }

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
