// The fp32 peak the benchmarks divide by, at the SIMD width the GEMM and attention kernels actually run at: a nominal
// figure (FLOP/cycle/core for that width × cores × the /proc/cpuinfo clock) and a measured one (register-only FMA
// bursts with that width's vectors, which see the real, boosted clock). Benchmarks use the larger of the two, so a
// kernel can never show more than 100 %.
// Deliberately not: CPU model detection. The table assumes two FMA pipes at the full width (Zen 5 server AVX-512;
// AVX2 on Zen 2–4 and Intel client cores); where a core runs 512-bit FMAs at half that rate (Zen 4 splits them into
// two 256-bit halves; Intel parts with one 512-bit FMA unit) the measurement says so: 512-bit bursts then reach less
// than 1.5× the 256-bit ones, and the V512 entry becomes 32 FLOP/cycle/core. (Before, such a core kept the 64 entry,
// and its nominal peak — 332 GFLOP/s on a Zen 4 that measures 236 — was the larger figure: every % of peak was ≈ 0.7×
// what the core can reach.)
using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;
using MiniSeq.Kernels;
using MiniSeq.Kernels.Simd;

namespace MiniSeq.Benchmarks;

/// <summary>The fp32 peak at one SIMD width, nominal and measured.</summary>
/// <param name="Width">The width both figures are for.</param>
/// <param name="Fma">Whether that width has hardware fused multiply-add.</param>
/// <param name="Threads">Cores (threads) both figures cover.</param>
/// <param name="ClockGHz">The clock the nominal figure uses (/proc/cpuinfo, 2.6 GHz if unreadable).</param>
/// <param name="FlopsPerCycle">fp32 FLOP/cycle/core at <paramref name="Width"/> (<see cref="CpuPeak.FlopsPerCycle"/>); null without FMA (no table entry).</param>
/// <param name="MeasuredGFlops">Best FMA burst (multiply + add bursts without FMA) at <paramref name="Width"/>.</param>
/// <param name="HalfRate512">Whether 512-bit FMAs were measured to run at half the two-pipe rate (<see cref="CpuPeak.HalfRate512"/>).</param>
public sealed record PeakEstimate(IsaWidth Width, bool Fma, int Threads, double ClockGHz, int? FlopsPerCycle, double MeasuredGFlops, bool HalfRate512 = false)
{
    /// <summary>Threads × <see cref="FlopsPerCycle"/> × clock; null without FMA.</summary>
    public double? NominalGFlops => FlopsPerCycle * Threads * ClockGHz;

    /// <summary>The peak to divide by: the larger of nominal and measured, so no kernel exceeds 100 %.</summary>
    public double GFlops => Math.Max(NominalGFlops ?? 0, MeasuredGFlops);

    /// <summary>The clock the measured figure implies (measured / (FLOP/cycle × threads)); null without FMA.</summary>
    public double? EffectiveGHz => FlopsPerCycle is int f ? MeasuredGFlops / (f * Threads) : null;
}

/// <summary>Nominal and measured fp32 peak per SIMD width.</summary>
public static class CpuPeak
{
    /// <summary>fp32 lanes per vector of <paramref name="width"/>.</summary>
    public static int Lanes(IsaWidth width) => width switch
    {
        IsaWidth.V512 => 16,
        IsaWidth.V256 => 8,
        IsaWidth.V128 => 4,
        _ => 1,
    };

    /// <summary>
    /// fp32 FLOP per cycle per core with FMAs at <paramref name="width"/>: 2 FMA pipes × lanes × 2 (V512 64, V256 32,
    /// V128 16, scalar 4), V512 32 where <paramref name="halfRate512"/>; null without FMA, where the table has no entry.
    /// </summary>
    public static int? FlopsPerCycle(IsaWidth width, bool fma, bool halfRate512 = false)
        => !fma ? null : width == IsaWidth.V512 && halfRate512 ? 2 * Lanes(IsaWidth.V256) * 2 : 2 * Lanes(width) * 2;

    /// <summary>Nominal peak in GFLOP/s: <paramref name="cores"/> × <see cref="FlopsPerCycle"/> × <paramref name="ghz"/>; null without FMA.</summary>
    public static double? NominalGFlops(IsaWidth width, bool fma, int cores, double ghz, bool halfRate512 = false)
        => FlopsPerCycle(width, fma, halfRate512) * cores * ghz;

    /// <summary>
    /// Whether this core runs 512-bit FMAs at half the rate of two full-width pipes (Zen 4, which splits each into two
    /// 256-bit halves; Intel parts with one 512-bit FMA unit): one core's 512-bit bursts reach less than 1.5× its
    /// 256-bit bursts (≈ 1.0× on a Zen 4, ≈ 2× on a Zen 5). Measured once per process (≈ 0.2 s); false without AVX-512.
    /// </summary>
    public static bool HalfRate512 => s_halfRate512.Value;

    private static readonly Lazy<bool> s_halfRate512 = new(() => HasFma(IsaWidth.V512) && HasFma(IsaWidth.V256)
        && IsHalfRate512(MeasureGFlops(IsaWidth.V512, true, 1, 50), MeasureGFlops(IsaWidth.V256, true, 1, 50)));

    /// <summary>The rule behind <see cref="HalfRate512"/>: 512-bit bursts below 1.5× the 256-bit ones on the same core.</summary>
    public static bool IsHalfRate512(double v512GFlops, double v256GFlops) => v512GFlops < 1.5 * v256GFlops;

    /// <summary>The FMA datapath behind <paramref name="width"/>'s table entry, e.g. "2 × 512-bit FMA".</summary>
    public static string DescribeFmaPipes(IsaWidth width, bool halfRate512)
        => width == IsaWidth.V512 && halfRate512
            ? "512-bit FMAs at half rate: this core's 512-bit bursts measured < 1.5× its 256-bit ones"
            : $"2 × {Lanes(width) * 32}-bit FMA";

    /// <summary>Whether <paramref name="width"/> has hardware fused multiply-add on this machine.</summary>
    public static bool HasFma(IsaWidth width) => width switch
    {
        IsaWidth.V512 => Vector512.IsHardwareAccelerated && Avx512F.IsSupported,
        IsaWidth.V256 => Vector256.IsHardwareAccelerated && Fma.IsSupported,
        IsaWidth.V128 => Vector128.IsHardwareAccelerated && (Fma.IsSupported || AdvSimd.IsSupported),
        _ => Fma.IsSupported || AdvSimd.IsSupported,
    };

    /// <summary>The instruction set behind <paramref name="width"/> on this machine, e.g. "AVX2+FMA".</summary>
    public static string Describe(IsaWidth width) => width switch
    {
        IsaWidth.V512 => Avx512F.IsSupported ? "AVX-512F" : "software-emulated",
        IsaWidth.V256 => Fma.IsSupported ? "AVX2+FMA" : Vector256.IsHardwareAccelerated ? "AVX2, no FMA" : "software-emulated",
        IsaWidth.V128 => Fma.IsSupported ? "128-bit FMA" : AdvSimd.IsSupported ? "AdvSimd FMA" : Vector128.IsHardwareAccelerated ? "SSE, no FMA" : "software-emulated",
        _ => HasFma(IsaWidth.Scalar) ? "scalar FMA" : "scalar, no FMA",
    };

    /// <summary>
    /// The bench machine-line fragment for the GEMM/attention width, e.g. "ISA path V256 (AVX2+FMA; forced by
    /// MINISEQ_FORCE_ISA)"; says when a forced width was wider than the hardware and the kernels fell back.
    /// </summary>
    public static string DescribePath(IsaWidth requested, bool forced, IsaWidth used)
        => DescribePath(requested, forced, used, Avx512F.IsSupported, CpuListsAvx512());

    /// <summary>
    /// <see cref="DescribePath(IsaWidth, bool, IsaWidth)"/> given whether the JIT emits AVX-512 and whether the CPU has
    /// it. Below 512 bits the register count matters: with AVX-512 the JIT encodes Vector256 code with EVEX and 32
    /// registers, which an AVX2 CPU does not have (16), so a forced V256 there is not an AVX2 machine; the line says so,
    /// and says when AVX-512 was turned off in the JIT (DOTNET_EnableAVX512=0), which makes it one.
    /// </summary>
    public static string DescribePath(IsaWidth requested, bool forced, IsaWidth used, bool jitUsesAvx512, bool? cpuHasAvx512)
    {
        string why = !forced ? "widest with FMA"
            : requested == used ? $"forced by {KernelSelector.ForceIsaVariable}"
            : $"{KernelSelector.ForceIsaVariable}={requested} is wider than this machine's FMA: fell back to the widest supported";
        string registers = used is IsaWidth.V256 or IsaWidth.V128 && (jitUsesAvx512 || cpuHasAvx512 == true)
            ? jitUsesAvx512
                ? "; 32 vector registers, AVX-512's: an AVX2 CPU has 16 (DOTNET_EnableAVX512=0 runs as one)"
                : "; AVX-512 turned off in the JIT (DOTNET_EnableAVX512=0): 16 vector registers, as on an AVX2 CPU"
            : "";
        return $"ISA path {used} ({Describe(used)}; {why}{registers})";
    }

    /// <summary>Whether /proc/cpuinfo lists avx512f (the CPU has AVX-512, used by the JIT or not); null where unreadable.</summary>
    public static bool? CpuListsAvx512() => GemmBenchmark.ReadCpuInfo("flags")?.Split(' ').Contains("avx512f");

    /// <summary>Nominal and measured peak of <paramref name="threads"/> cores at <paramref name="width"/>.</summary>
    public static PeakEstimate Measure(IsaWidth width, int threads, int bursts = 200)
    {
        bool fma = HasFma(width);
        double ghz = (GemmBenchmark.ReadCpuMHz() ?? 2600) / 1000;
        bool halfRate = width == IsaWidth.V512 && HalfRate512;
        return new PeakEstimate(width, fma, threads, ghz, FlopsPerCycle(width, fma, halfRate), MeasureGFlops(width, fma, threads, bursts), halfRate);
    }

    /// <summary>
    /// Median over runs of achieved ÷ peak, each run divided by the peak measured right next to it (see
    /// <see cref="Measure"/>): the host's clock moves by 5–10 % within the hour, so a kernel timed minutes after the one
    /// peak measurement of a process can land above or below it; a run and its own peak see the same clock.
    /// </summary>
    public static double MedianShare(IReadOnlyList<double> gflops, IReadOnlyList<double> peakGFlops)
    {
        ArgumentNullException.ThrowIfNull(gflops);
        ArgumentNullException.ThrowIfNull(peakGFlops);
        if (gflops.Count == 0 || gflops.Count != peakGFlops.Count)
        {
            throw new ArgumentException($"Need one peak per run ({gflops.Count} runs, {peakGFlops.Count} peaks).", nameof(peakGFlops));
        }

        return Median(gflops.Select((g, i) => g / peakGFlops[i]).ToList());
    }

    /// <summary>The median of <paramref name="values"/> (the mean of the middle two for an even count).</summary>
    public static double Median(IReadOnlyList<double> values)
    {
        ArgumentNullException.ThrowIfNull(values);
        ArgumentOutOfRangeException.ThrowIfZero(values.Count);
        List<double> sorted = values.Order().ToList();
        int mid = sorted.Count / 2;
        return sorted.Count % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
    }

    /// <summary>
    /// Measured fp32 peak in GFLOP/s: <paramref name="threads"/> threads run register-only bursts of 12 independent
    /// accumulator chains of <paramref name="width"/> vectors (FMAs, or multiply then add without FMA; ≈1–2 ms each),
    /// started together; the best burst over <paramref name="bursts"/> tries. This captures the real (boost) clock,
    /// which /proc/cpuinfo under a hypervisor does not report.
    /// </summary>
    public static double MeasureGFlops(IsaWidth width, bool fma, int threads, int bursts = 200)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(bursts, 1);
        const long Iterations = 1 << 19;
        double flopsPerThread = Iterations * BurstChains * 2.0 * Lanes(width);
        double best = double.MaxValue;
        using var barrier = new Barrier(threads);
        var workers = new Thread[threads];
        float sink = 0;
        for (int t = 0; t < threads; t++)
        {
            bool timer = t == 0;
            workers[t] = new Thread(() =>
            {
                float local = 0;
                for (int burst = 0; burst < bursts; burst++)
                {
                    barrier.SignalAndWait();
                    long start = Stopwatch.GetTimestamp();
                    local += Burst(width, fma, Iterations);
                    barrier.SignalAndWait();
                    if (timer)
                    {
                        best = Math.Min(best, Stopwatch.GetElapsedTime(start).TotalSeconds);
                    }
                }

                sink += local;
            });
            workers[t].Start();
        }

        foreach (Thread worker in workers)
        {
            worker.Join();
        }

        GC.KeepAlive(sink);
        return threads * flopsPerThread / best / 1e9;
    }

    // Independent chains per burst: enough to cover FMA latency (4–5 cycles) × 2 pipes, few enough for 16 registers.
    private const int BurstChains = 12;

    private static float Burst(IsaWidth width, bool fma, long iterations) => (width, fma) switch
    {
        (IsaWidth.V512, true) => Burst<Width512, Vector512<float>, Fused>(iterations),
        (IsaWidth.V512, false) => Burst<Width512, Vector512<float>, Unfused>(iterations),
        (IsaWidth.V256, true) => Burst<Width256, Vector256<float>, Fused>(iterations),
        (IsaWidth.V256, false) => Burst<Width256, Vector256<float>, Unfused>(iterations),
        (IsaWidth.V128, true) => Burst<Width128, Vector128<float>, Fused>(iterations),
        (IsaWidth.V128, false) => Burst<Width128, Vector128<float>, Unfused>(iterations),
        (_, true) => Burst<ScalarWidth, float, Fused>(iterations),
        _ => Burst<ScalarWidth, float, Unfused>(iterations),
    };

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static float Burst<TW, TV, TOp>(long iterations)
        where TW : struct, IVectorWidth<TV>
        where TV : struct
        where TOp : struct, IMultiplyAdd
    {
        TV m = TW.Create(0.999999f);
        TV add = TW.Create(1e-3f);
        TV a0 = add, a1 = add, a2 = add, a3 = add, a4 = add, a5 = add;
        TV a6 = add, a7 = add, a8 = add, a9 = add, a10 = add, a11 = add;
        for (long i = 0; i < iterations; i++)
        {
            a0 = TOp.Invoke<TW, TV>(a0, m, add);
            a1 = TOp.Invoke<TW, TV>(a1, m, add);
            a2 = TOp.Invoke<TW, TV>(a2, m, add);
            a3 = TOp.Invoke<TW, TV>(a3, m, add);
            a4 = TOp.Invoke<TW, TV>(a4, m, add);
            a5 = TOp.Invoke<TW, TV>(a5, m, add);
            a6 = TOp.Invoke<TW, TV>(a6, m, add);
            a7 = TOp.Invoke<TW, TV>(a7, m, add);
            a8 = TOp.Invoke<TW, TV>(a8, m, add);
            a9 = TOp.Invoke<TW, TV>(a9, m, add);
            a10 = TOp.Invoke<TW, TV>(a10, m, add);
            a11 = TOp.Invoke<TW, TV>(a11, m, add);
        }

        TV sum = TW.Add(TW.Add(TW.Add(a0, a1), TW.Add(a2, a3)), TW.Add(TW.Add(a4, a5), TW.Add(a6, a7)));
        return TW.Sum(TW.Add(sum, TW.Add(TW.Add(a8, a9), TW.Add(a10, a11))));
    }

    // a·b + c, fused or as a multiply then an add (2 FLOP per lane either way).
    private interface IMultiplyAdd
    {
        static abstract TV Invoke<TW, TV>(TV a, TV b, TV c)
            where TW : struct, IVectorWidth<TV>
            where TV : struct;
    }

    private readonly struct Fused : IMultiplyAdd
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static TV Invoke<TW, TV>(TV a, TV b, TV c)
            where TW : struct, IVectorWidth<TV>
            where TV : struct
            => TW.FusedMultiplyAdd(a, b, c);
    }

    private readonly struct Unfused : IMultiplyAdd
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static TV Invoke<TW, TV>(TV a, TV b, TV c)
            where TW : struct, IVectorWidth<TV>
            where TV : struct
            => TW.Add(TW.Multiply(a, b), c);
    }
}
