// Library timing routine for FlashAttention: best-of-N wall time of the forward and of forward+backward for one
// shape, with the FLOP counts used in docs/kernels/attention.md, and optionally each run's share of a peak measured
// right before it. Deliberately no Console output and no statistics
// beyond the minimum: callers (CLI, scripts, BenchmarkDotNet) print and aggregate.
using System.Diagnostics;
using System.Runtime.InteropServices;
using MiniSeq.Kernels;

namespace MiniSeq.Benchmarks;

/// <summary>Best timings of one attention shape.</summary>
/// <param name="ForwardSeconds">Best forward time.</param>
/// <param name="ForwardBackwardSeconds">Best forward + backward time (gradient zeroing excluded).</param>
/// <param name="ForwardGflops">Forward GFLOP/s, counting 4·T²·D·H/2 FLOPs per batch (causal).</param>
/// <param name="ForwardBackwardGflops">Forward + backward GFLOP/s, counting 3.5× the forward FLOPs.</param>
/// <param name="PairedPeakGFlops">With a peak probe: the median of the peaks measured right before each forward + backward
/// run; else null.</param>
/// <param name="PairedPeakShare">With a peak probe: the median over the forward + backward runs of each run's GFLOP/s ÷
/// the peak measured right before it (<see cref="CpuPeak.MedianShare"/>); else null.</param>
public readonly record struct AttentionTiming(double ForwardSeconds, double ForwardBackwardSeconds, double ForwardGflops, double ForwardBackwardGflops, double? PairedPeakGFlops = null, double? PairedPeakShare = null);

/// <summary>Times <see cref="FlashAttention"/> on random inputs.</summary>
public static unsafe class AttentionBenchmark
{
    /// <summary>Causal forward FLOPs: q·kᵀ and p·v, 2·D each per visible (query, key) pair, ≈ T²/2 pairs per head.</summary>
    public static double ForwardFlops(int batchSize, int seqLen, int headCount, int headDim)
        => 4.0 * seqLen * seqLen * headDim * headCount / 2 * batchSize;

    /// <summary>
    /// Runs forward and forward+backward <paramref name="repetitions"/> times each (after one warm-up) and keeps the best;
    /// with <paramref name="peakProbe"/> (GFLOP/s, e.g. <see cref="CpuPeak.Measure"/>), also measures the peak right
    /// before each timed forward + backward run and reports the median share of it.
    /// </summary>
    public static AttentionTiming Run(int batchSize, int seqLen, int headCount, int kvHeadCount, int headDim, int repetitions = 3, Func<double>? peakProbe = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(repetitions, 1);
        long qCount = (long)batchSize * seqLen * headCount * headDim;
        long kvCount = (long)batchSize * seqLen * kvHeadCount * headDim;
        long lseCount = (long)batchSize * headCount * seqLen;
        float* q = Allocate(qCount), k = Allocate(kvCount), v = Allocate(kvCount), dOutput = Allocate(qCount);
        float* output = Allocate(qCount), lse = Allocate(lseCount);
        float* dq = Allocate(qCount), dk = Allocate(kvCount), dv = Allocate(kvCount);
        try
        {
            var rng = new Random(1234);
            Fill(rng, q, qCount, 2f);
            Fill(rng, k, kvCount, 1f);
            Fill(rng, v, kvCount, 1f);
            Fill(rng, dOutput, qCount, 1f);
            double flops = ForwardFlops(batchSize, seqLen, headCount, headDim);
            double bestForward = double.MaxValue, bestBoth = double.MaxValue;
            var runGflops = new List<double>();
            var peaks = new List<double>();
            for (int rep = 0; rep <= repetitions; rep++)
            {
                long start = Stopwatch.GetTimestamp();
                FlashAttention.Forward(q, k, v, batchSize, seqLen, headCount, kvHeadCount, headDim, output, lse);
                double forward = Stopwatch.GetElapsedTime(start).TotalSeconds;

                NativeMemory.Clear(dq, (nuint)(qCount * sizeof(float)));
                NativeMemory.Clear(dk, (nuint)(kvCount * sizeof(float)));
                NativeMemory.Clear(dv, (nuint)(kvCount * sizeof(float)));
                if (rep > 0 && peakProbe is not null)
                {
                    peaks.Add(peakProbe());
                }

                start = Stopwatch.GetTimestamp();
                FlashAttention.Forward(q, k, v, batchSize, seqLen, headCount, kvHeadCount, headDim, output, lse);
                FlashAttention.Backward(dOutput, q, k, v, output, lse, batchSize, seqLen, headCount, kvHeadCount, headDim, dq, dk, dv);
                double both = Stopwatch.GetElapsedTime(start).TotalSeconds;
                if (rep > 0)
                {
                    bestForward = Math.Min(bestForward, forward);
                    bestBoth = Math.Min(bestBoth, both);
                    runGflops.Add(3.5 * flops / both / 1e9);
                }
            }

            return new AttentionTiming(bestForward, bestBoth, flops / bestForward / 1e9, 3.5 * flops / bestBoth / 1e9,
                peakProbe is null ? null : CpuPeak.Median(peaks), peakProbe is null ? null : CpuPeak.MedianShare(runGflops, peaks));
        }
        finally
        {
            NativeMemory.AlignedFree(q);
            NativeMemory.AlignedFree(k);
            NativeMemory.AlignedFree(v);
            NativeMemory.AlignedFree(dOutput);
            NativeMemory.AlignedFree(output);
            NativeMemory.AlignedFree(lse);
            NativeMemory.AlignedFree(dq);
            NativeMemory.AlignedFree(dk);
            NativeMemory.AlignedFree(dv);
        }
    }

    private static float* Allocate(long count) => (float*)NativeMemory.AlignedAlloc((nuint)(count * sizeof(float)), 64);

    private static void Fill(Random rng, float* x, long count, float amplitude)
    {
        for (long i = 0; i < count; i++)
        {
            x[i] = amplitude * ((2 * rng.NextSingle()) - 1);
        }
    }
}
