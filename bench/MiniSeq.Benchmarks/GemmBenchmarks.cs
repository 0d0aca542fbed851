// BenchmarkDotNet view of MatMul.Gemm on the GEMM shapes of one training step (N = 4096 tokens, C = 256, F = 896,
// V = 8192) for each micro-kernel variant, with OpenBLAS cblas_sgemm as the yardstick where it loads.
// Deliberately not: the table in docs/benchmarks/gemm.md (that comes from GemmBenchmark.Run, which also reports
// GFLOP/s and % of peak); run with `env -u OPENBLAS_CORETYPE OPENBLAS_NUM_THREADS=2` for a fair OpenBLAS.
using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using MiniSeq.Kernels;

namespace MiniSeq.Benchmarks.Gemm;

[MemoryDiagnoser]
public unsafe class GemmBenchmarks
{
    private float* _a;
    private float* _b;
    private float* _c;
    private GemmShape _shape = GemmBenchmark.TrainingShapes[0];

    public static IEnumerable<string> ShapeNames => GemmBenchmark.TrainingShapes.Select(s => s.Name);

    [ParamsSource(nameof(ShapeNames))]
    public string Shape { get; set; } = "";

    [GlobalSetup]
    public void Setup()
    {
        _shape = GemmBenchmark.TrainingShapes.First(s => s.Name == Shape);
        _a = Allocate((long)_shape.M * _shape.K);
        _b = Allocate((long)_shape.K * _shape.N);
        _c = Allocate((long)_shape.M * _shape.N);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        NativeMemory.AlignedFree(_a);
        NativeMemory.AlignedFree(_b);
        NativeMemory.AlignedFree(_c);
    }

    [Benchmark(Baseline = true)]
    public void MiniSeqV512() => Run(IsaWidth.V512);

    [Benchmark]
    public void MiniSeqV256() => Run(IsaWidth.V256);

    [Benchmark]
    public void MiniSeqV128() => Run(IsaWidth.V128);

    [Benchmark]
    public void OpenBlasSgemm()
    {
        if (!OpenBlas.IsAvailable)
        {
            return;
        }

        GemmShape s = _shape;
        OpenBlas.Sgemm(s.TransA, s.TransB, s.M, s.N, s.K, 1f, _a, s.TransA ? s.M : s.K, _b, s.TransB ? s.K : s.N, 0f, _c, s.N);
    }

    private void Run(IsaWidth variant)
    {
        GemmShape s = _shape;
        MatMul.Gemm(variant, s.TransA, s.TransB, s.M, s.N, s.K, 1f, _a, s.TransA ? s.M : s.K, _b, s.TransB ? s.K : s.N, 0f, _c, s.N);
    }

    private static float* Allocate(long count)
    {
        float* p = (float*)NativeMemory.AlignedAlloc((nuint)count * sizeof(float), 64);
        var random = new Random(42);
        for (long i = 0; i < count; i++)
        {
            p[i] = (float)(random.NextDouble() - 0.5);
        }

        return p;
    }
}
