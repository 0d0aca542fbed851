// BenchmarkDotNet benchmarks of FlashAttention at the model's default attention shape (H=8, KvH=2, D=32, B=1).
// Deliberately few iterations: one forward+backward at T=16K takes seconds. For GFLOP/s use
// MiniSeq.Benchmarks.AttentionBenchmark (see docs/kernels/attention.md).
using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using MiniSeq.Kernels;

namespace MiniSeq.Benchmarks;

[MemoryDiagnoser]
[SimpleJob(launchCount: 1, warmupCount: 1, iterationCount: 5)]
public unsafe class AttentionBenchmarks
{
    private const int BatchSize = 1, HeadCount = 8, KvHeadCount = 2, HeadDim = 32;
    private float* _q, _k, _v, _dOutput, _output, _lse, _dq, _dk, _dv;

#if DEBUG
    [Params(256)]
#else
    [Params(4096, 8192, 16384)]
#endif
    public int SeqLen { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        long qCount = (long)BatchSize * SeqLen * HeadCount * HeadDim;
        long kvCount = (long)BatchSize * SeqLen * KvHeadCount * HeadDim;
        var rng = new Random(1234);
        _q = Allocate(rng, qCount);
        _k = Allocate(rng, kvCount);
        _v = Allocate(rng, kvCount);
        _dOutput = Allocate(rng, qCount);
        _output = Allocate(rng, qCount);
        _lse = Allocate(rng, (long)BatchSize * HeadCount * SeqLen);
        _dq = Allocate(rng, qCount);
        _dk = Allocate(rng, kvCount);
        _dv = Allocate(rng, kvCount);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        foreach (nint p in new[] { (nint)_q, (nint)_k, (nint)_v, (nint)_dOutput, (nint)_output, (nint)_lse, (nint)_dq, (nint)_dk, (nint)_dv })
        {
            NativeMemory.AlignedFree((void*)p);
        }
    }

    [Benchmark]
    public void Forward()
        => FlashAttention.Forward(_q, _k, _v, BatchSize, SeqLen, HeadCount, KvHeadCount, HeadDim, _output, _lse);

    [Benchmark]
    public void ForwardBackward()
    {
        // Gradients keep accumulating across iterations; harmless for timing.
        FlashAttention.Forward(_q, _k, _v, BatchSize, SeqLen, HeadCount, KvHeadCount, HeadDim, _output, _lse);
        FlashAttention.Backward(_dOutput, _q, _k, _v, _output, _lse, BatchSize, SeqLen, HeadCount, KvHeadCount, HeadDim, _dq, _dk, _dv);
    }

    private static float* Allocate(Random rng, long count)
    {
        float* x = (float*)NativeMemory.AlignedAlloc((nuint)(count * sizeof(float)), 64);
        for (long i = 0; i < count; i++)
        {
            x[i] = (2 * rng.NextSingle()) - 1;
        }

        return x;
    }
}
