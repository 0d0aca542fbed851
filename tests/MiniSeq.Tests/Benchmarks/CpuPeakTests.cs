// CpuPeak: the FLOP/cycle/core table per ISA width, the nominal formula, the "larger of nominal and measured" rule,
// the ISA-path line, and one short measurement at the width GEMM runs at.
// Deliberately not: checking the measured figure against a number (it depends on the machine and its load).
using MiniSeq.Benchmarks;
using MiniSeq.Kernels;

namespace MiniSeq.Tests.Benchmarks;

public class CpuPeakTests
{
    [Theory]
    [InlineData(IsaWidth.V512, 64)]   // 2 × 512-bit FMA (Zen 5 server, AVX-512)
    [InlineData(IsaWidth.V256, 32)]   // 2 × 256-bit FMA (AVX2+FMA: Zen 2/3/4-class, Intel client)
    [InlineData(IsaWidth.V128, 16)]
    [InlineData(IsaWidth.Scalar, 4)]
    public void FlopsPerCycle_WithFma_TwoPipesTimesLanesTimesTwo(IsaWidth width, int expected)
        => Assert.Equal(expected, CpuPeak.FlopsPerCycle(width, fma: true));

    [Theory]
    [InlineData(IsaWidth.V512)]
    [InlineData(IsaWidth.V256)]
    [InlineData(IsaWidth.V128)]
    [InlineData(IsaWidth.Scalar)]
    public void FlopsPerCycle_WithoutFma_HasNoEntry(IsaWidth width)
    {
        Assert.Null(CpuPeak.FlopsPerCycle(width, fma: false));
        Assert.Null(CpuPeak.NominalGFlops(width, fma: false, cores: 2, ghz: 3));
    }

    [Fact]
    public void NominalGFlops_Zen3TwoCores_Is32FlopPerCycle()
    {
        // The case this fixes: an AVX2 machine at 2.45 GHz was credited with 64 FLOP/cycle/core (313 GFLOP/s).
        Assert.Equal(2 * 32 * 2.45, CpuPeak.NominalGFlops(IsaWidth.V256, fma: true, cores: 2, ghz: 2.45)!.Value, 9);
        Assert.Equal(2 * 64 * 2.6, CpuPeak.NominalGFlops(IsaWidth.V512, fma: true, cores: 2, ghz: 2.6)!.Value, 9);
    }

    [Fact]
    public void PeakEstimate_UsesTheLargerFigure()
    {
        var boosted = new PeakEstimate(IsaWidth.V256, true, 2, 2.45, 32, 200);
        Assert.Equal(156.8, boosted.NominalGFlops!.Value, 9);
        Assert.Equal(200, boosted.GFlops);
        Assert.Equal(200 / (32.0 * 2), boosted.EffectiveGHz!.Value, 9);
        var underclocked = new PeakEstimate(IsaWidth.V512, true, 2, 2.6, 64, 250);
        Assert.Equal(332.8, underclocked.GFlops, 9);
        var noFma = new PeakEstimate(IsaWidth.V128, false, 1, 2, null, 10);
        Assert.Equal(10, noFma.GFlops);
        Assert.Null(noFma.EffectiveGHz);
    }

    [Fact]
    public void HalfRate512_Zen4_V512EntryIs32FlopPerCycle()
    {
        // The case this fixes: a Zen 4 (512-bit FMAs as two 256-bit halves) measured 236 GFLOP/s with 512-bit bursts
        // and with 256-bit ones, but the V512 entry of 64 FLOP/cycle made its nominal 332 the peak every % divided by.
        Assert.True(CpuPeak.IsHalfRate512(236, 236));
        Assert.True(CpuPeak.IsHalfRate512(300, 236));
        Assert.False(CpuPeak.IsHalfRate512(470, 236)); // Zen 5: two full 512-bit pipes
        Assert.Equal(32, CpuPeak.FlopsPerCycle(IsaWidth.V512, fma: true, halfRate512: true));
        Assert.Equal(32, CpuPeak.FlopsPerCycle(IsaWidth.V256, fma: true, halfRate512: true)); // only V512 changes
        Assert.Null(CpuPeak.FlopsPerCycle(IsaWidth.V512, fma: false, halfRate512: true));
        var zen4 = new PeakEstimate(IsaWidth.V512, true, 2, 2.6, CpuPeak.FlopsPerCycle(IsaWidth.V512, true, true), 236, HalfRate512: true);
        Assert.Equal(2 * 32 * 2.6, zen4.NominalGFlops!.Value, 9);
        Assert.Equal(236, zen4.GFlops);
        Assert.Equal(236 / 64.0, zen4.EffectiveGHz!.Value, 9);
        Assert.StartsWith("512-bit FMAs at half rate", CpuPeak.DescribeFmaPipes(IsaWidth.V512, halfRate512: true), StringComparison.Ordinal);
        Assert.Equal("2 × 512-bit FMA", CpuPeak.DescribeFmaPipes(IsaWidth.V512, halfRate512: false));
    }

    [Fact]
    public void Measure_V512_UsesTheMeasuredDatapath()
    {
        if (!CpuPeak.HasFma(IsaWidth.V512))
        {
            Assert.False(CpuPeak.HalfRate512);
            return;
        }

        PeakEstimate peak = CpuPeak.Measure(IsaWidth.V512, threads: 1, bursts: 3);
        Assert.Equal(CpuPeak.HalfRate512, peak.HalfRate512);
        Assert.Equal(CpuPeak.HalfRate512 ? 32 : 64, peak.FlopsPerCycle);
    }

    [Fact]
    public void DescribePath_ForcedAndFallBack_SaySo()
    {
        Assert.StartsWith("ISA path V128 (", CpuPeak.DescribePath(IsaWidth.V128, forced: true, IsaWidth.V128), StringComparison.Ordinal);
        Assert.EndsWith("; forced by MINISEQ_FORCE_ISA)", CpuPeak.DescribePath(IsaWidth.V128, forced: true, IsaWidth.V128, jitUsesAvx512: false, cpuHasAvx512: false), StringComparison.Ordinal);
        Assert.Contains("MINISEQ_FORCE_ISA=V512 is wider", CpuPeak.DescribePath(IsaWidth.V512, forced: true, IsaWidth.V256), StringComparison.Ordinal);
        Assert.EndsWith("; widest with FMA)", CpuPeak.DescribePath(IsaWidth.V512, forced: false, IsaWidth.V512), StringComparison.Ordinal);
    }

    [Fact]
    public void DescribePath_NarrowWidthOnAvx512_SaysWhichRegisterFile()
    {
        // Forced V256 with AVX-512 in the JIT: 32 registers, not an AVX2 CPU (the attention tiles spilled only on one).
        Assert.Contains("32 vector registers, AVX-512's", CpuPeak.DescribePath(IsaWidth.V256, true, IsaWidth.V256, jitUsesAvx512: true, cpuHasAvx512: true), StringComparison.Ordinal);
        Assert.Contains("AVX-512 turned off in the JIT", CpuPeak.DescribePath(IsaWidth.V256, false, IsaWidth.V256, jitUsesAvx512: false, cpuHasAvx512: true), StringComparison.Ordinal);
        Assert.EndsWith("; widest with FMA)", CpuPeak.DescribePath(IsaWidth.V256, false, IsaWidth.V256, jitUsesAvx512: false, cpuHasAvx512: false), StringComparison.Ordinal);
        Assert.EndsWith("; widest with FMA)", CpuPeak.DescribePath(IsaWidth.V512, false, IsaWidth.V512, jitUsesAvx512: true, cpuHasAvx512: true), StringComparison.Ordinal);
    }

    [Fact]
    public void Measure_GemmWidth_PositiveAndAtThatWidth()
    {
        IsaWidth width = KernelSelector.TiledWidth;
        PeakEstimate peak = CpuPeak.Measure(width, threads: 1, bursts: 3);
        Assert.Equal(width, peak.Width);
        Assert.True(peak.MeasuredGFlops > 0);
        Assert.True(peak.GFlops >= peak.MeasuredGFlops);
        Assert.Equal(CpuPeak.HasFma(width), peak.NominalGFlops is not null);
    }

    [Fact]
    public void MedianShare_EachRunAgainstItsOwnPeak()
    {
        // A run on a slow-clock minute and its own low peak count as the same share as a fast run and a high peak.
        Assert.Equal(0.55, CpuPeak.MedianShare([100, 220, 150], [200, 400, 250]), 12); // 0.5, 0.55, 0.6
        Assert.Equal(0.525, CpuPeak.MedianShare([100, 220], [200, 400]), 12);
        Assert.Throws<ArgumentException>(() => CpuPeak.MedianShare([100, 200], [200]));
        Assert.Throws<ArgumentException>(() => CpuPeak.MedianShare([], []));
        Assert.Equal(2.5, CpuPeak.Median([4, 1, 3, 2]));
        Assert.Equal(3, CpuPeak.Median([5, 1, 3]));
    }

    [Fact]
    public void AttentionBenchmark_WithProbe_MeasuresAPeakBeforeEachRun()
    {
        int calls = 0;
        AttentionTiming t = AttentionBenchmark.Run(1, 64, 2, 1, 16, repetitions: 3, peakProbe: () => 1000 + (100 * calls++));
        Assert.Equal(3, calls); // one per timed forward + backward run, none for the warm-up
        Assert.Equal(1100, t.PairedPeakGFlops);
        Assert.InRange(t.PairedPeakShare!.Value, 0, t.ForwardBackwardGflops / 1000);
        Assert.Null(AttentionBenchmark.Run(1, 64, 2, 1, 16, repetitions: 1).PairedPeakShare);
    }

    [Fact]
    public void StepBenchmarkResult_PairedPeakShare_MedianOfStepsOverTheirPeaks()
    {
        var result = new StepBenchmarkResult("vanilla", 64, 1, 4, 1.0, 64, 1, 1, [], 0, 0, 0, 0, [],
            TimedStepSeconds: [1.0, 2.0, 1.0], StepPeakGFlops: [200, 50, 400]);
        Assert.Equal(0.5, result.PairedPeakShare(1e11)!.Value, 12); // 100, 50, 100 GFLOP/s: shares 0.5, 1.0, 0.25
        Assert.Null((result with { StepPeakGFlops = null }).PairedPeakShare(1e11));
    }
}
