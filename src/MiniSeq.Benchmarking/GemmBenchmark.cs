// GEMM timing harness (a library routine, used by the benchmark project and ad-hoc drivers): times MatMul.Gemm on
// given shapes (warm-up, then the best and median of several runs), optionally against OpenBLAS cblas_sgemm loaded at
// run time from libopenblas.so.0, and reports GFLOP/s and the percentage of an fp32 peak (CpuPeak, at the width the
// GEMM runs at).
// Deliberately not: console output, statistics beyond best/median, or a BLAS dependency (OpenBLAS is optional and
// reported as "not available" when it cannot be loaded).
using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using MiniSeq.Kernels;
using MiniSeq.Model;

namespace MiniSeq.Benchmarks;

/// <summary>One GEMM problem: C (m×n) = op(A) (m×k) · op(B) (k×n), row-major.</summary>
public sealed record GemmShape(string Name, bool TransA, bool TransB, int M, int N, int K)
{
    /// <summary>Floating-point operations of one call (2·m·n·k).</summary>
    public double Flops => 2.0 * M * N * K;

    /// <summary>BLAS-style description, e.g. "NT 4096×896×256".</summary>
    public string Description => $"{(TransA ? 'T' : 'N')}{(TransB ? 'T' : 'N')} {M}×{N}×{K}";
}

/// <summary>Timings of one implementation on one shape.</summary>
public sealed record GemmTiming(double BestSeconds, double MedianSeconds, double GFlops, double PercentOfPeak);

/// <summary>MiniSeq timing of one shape, and OpenBLAS's when it was available.</summary>
public sealed record GemmBenchmarkResult(GemmShape Shape, GemmTiming MiniSeq, GemmTiming? OpenBlas);

/// <summary>Options for <see cref="GemmBenchmark.Run"/>.</summary>
public sealed record GemmBenchmarkOptions
{
    /// <summary>Untimed calls before measuring (JIT tiering, page faults, pool warm-up).</summary>
    public int WarmupRuns { get; init; } = 3;

    /// <summary>Timed calls per shape and implementation in each pass.</summary>
    public int Runs { get; init; } = 10;

    /// <summary>Passes over all shapes; implementations alternate per pass and the best over passes is kept.</summary>
    public int Passes { get; init; } = 2;

    /// <summary>fp32 peak in GFLOP/s used for the percentage; default: <see cref="CpuPeak.Measure"/> at the GEMM's width and the thread count.</summary>
    public double? PeakGFlops { get; init; }

    /// <summary>Also time OpenBLAS cblas_sgemm when libopenblas.so.0 loads.</summary>
    public bool CompareOpenBlas { get; init; } = true;

    /// <summary>Pause between implementations so the other library's spinning threads go idle.</summary>
    public TimeSpan SettleTime { get; init; } = TimeSpan.FromMilliseconds(300);
}

/// <summary>Times MatMul.Gemm (and optionally OpenBLAS) on given shapes.</summary>
public static unsafe class GemmBenchmark
{
    /// <summary>The GEMMs of one training step of config <c>small</c> at N = 4096 tokens: C = 256, F = 896, V = 8192, KvH·D = 64.</summary>
    public static IReadOnlyList<GemmShape> TrainingShapes { get; } = StepShapes(ModelPresets.Small, 4096);

    /// <summary>
    /// The distinct GEMM shapes of one training step of <paramref name="config"/> at <paramref name="n"/> tokens: the
    /// forward projections, the backward dX of the down projection and the LM head (the widest K), and the weight
    /// gradients of gate/up and the LM head (K = N, the TN shapes).
    /// </summary>
    public static IReadOnlyList<GemmShape> StepShapes(LlamaConfig config, int n)
    {
        int c = config.HiddenSize, f = config.IntermediateSize, v = config.VocabSize, q = config.QueryDim, kv = config.KeyValueDim;
        return
        [
            new("fwd gate/up X·Wᵀ", false, true, n, f, c),
            new("fwd down X·Wᵀ", false, true, n, c, f),
            new("fwd lm-head X·Wᵀ", false, true, n, v, c),
            new("fwd q/o X·Wᵀ", false, true, n, q, c),
            new("fwd k/v X·Wᵀ", false, true, n, kv, c),
            new("bwd dX (down) dY·W", false, false, n, c, f),
            new("bwd dX (lm-head) dY·W", false, false, n, c, v),
            new("bwd dW (gate/up) dYᵀ·X", true, false, f, c, n),
            new("bwd dW (lm-head) dYᵀ·X", true, false, v, c, n),
        ];
    }

    /// <summary>The first "cpu MHz" in /proc/cpuinfo, or null where it cannot be read.</summary>
    public static double? ReadCpuMHz()
        => ReadCpuInfo("cpu MHz") is string value ? double.Parse(value, CultureInfo.InvariantCulture) : null;

    /// <summary>The "model name" in /proc/cpuinfo, or the OS description.</summary>
    public static string ReadCpuName() => ReadCpuInfo("model name") ?? RuntimeInformation.OSDescription;

    /// <summary>The value (after the colon, trimmed) of the first /proc/cpuinfo line starting with <paramref name="key"/>; null where there is none or the file cannot be read.</summary>
    public static string? ReadCpuInfo(string key)
    {
        try
        {
            foreach (string line in File.ReadLines("/proc/cpuinfo"))
            {
                if (line.StartsWith(key, StringComparison.Ordinal))
                {
                    return line[(line.IndexOf(':', StringComparison.Ordinal) + 1)..].Trim();
                }
            }
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }

        return null;
    }

    /// <summary>Times every shape with MatMul.Gemm and, when requested and loadable, OpenBLAS.</summary>
    public static IReadOnlyList<GemmBenchmarkResult> Run(IReadOnlyList<GemmShape> shapes, GemmBenchmarkOptions options)
    {
        ArgumentNullException.ThrowIfNull(shapes);
        ArgumentNullException.ThrowIfNull(options);
        double peak = options.PeakGFlops ?? CpuPeak.Measure(KernelSelector.TiledWidth, Threading.KernelThreads.ThreadCount).GFlops;
        bool openBlas = options.CompareOpenBlas && OpenBlas.IsAvailable;
        var results = new List<GemmBenchmarkResult>(shapes.Count);
        foreach (GemmShape shape in shapes)
        {
            using var operands = new Operands(shape);
            var mine = new List<double>();
            var theirs = new List<double>();
            for (int pass = 0; pass < options.Passes; pass++)
            {
                // Alternate which library goes first so neither always follows the other's spinning threads.
                bool mineFirst = pass % 2 == 0;
                for (int turn = 0; turn < 2; turn++)
                {
                    if (turn == 0 == mineFirst)
                    {
                        mine.AddRange(Time(() => operands.Multiply(useOpenBlas: false), options));
                    }
                    else if (openBlas)
                    {
                        theirs.AddRange(Time(() => operands.Multiply(useOpenBlas: true), options));
                    }

                    Thread.Sleep(options.SettleTime);
                }
            }

            results.Add(new GemmBenchmarkResult(shape, Summarise(shape, mine, peak), openBlas ? Summarise(shape, theirs, peak) : null));
        }

        return results;
    }

    /// <summary>Times <paramref name="runs"/> calls of MatMul.Gemm on <paramref name="shape"/> after a warm-up.</summary>
    public static GemmTiming Measure(GemmShape shape, int warmupRuns, int runs, double peakGFlops)
    {
        ArgumentNullException.ThrowIfNull(shape);
        using var operands = new Operands(shape);
        var options = new GemmBenchmarkOptions { WarmupRuns = warmupRuns, Runs = runs };
        return Summarise(shape, Time(() => operands.Multiply(useOpenBlas: false), options), peakGFlops);
    }

    /// <summary>
    /// Times another implementation's <paramref name="multiply"/> of <paramref name="shape"/> (e.g. LibTorch's matmul) as
    /// <see cref="Run"/> times MatMul.Gemm: <see cref="GemmBenchmarkOptions.Passes"/> passes of warm-up + runs, the
    /// settle time after each, GFLOP/s from the best run.
    /// </summary>
    public static GemmTiming Measure(GemmShape shape, Action multiply, GemmBenchmarkOptions options, double peakGFlops)
    {
        ArgumentNullException.ThrowIfNull(shape);
        ArgumentNullException.ThrowIfNull(multiply);
        ArgumentNullException.ThrowIfNull(options);
        var seconds = new List<double>();
        for (int pass = 0; pass < options.Passes; pass++)
        {
            seconds.AddRange(Time(multiply, options));
            Thread.Sleep(options.SettleTime);
        }

        return Summarise(shape, seconds, peakGFlops);
    }

    private static List<double> Time(Action multiply, GemmBenchmarkOptions options)
    {
        var seconds = new List<double>(options.Runs);
        for (int i = 0; i < options.WarmupRuns + options.Runs; i++)
        {
            long start = Stopwatch.GetTimestamp();
            multiply();
            double elapsed = Stopwatch.GetElapsedTime(start).TotalSeconds;
            if (i >= options.WarmupRuns)
            {
                seconds.Add(elapsed);
            }
        }

        return seconds;
    }

    private static GemmTiming Summarise(GemmShape shape, List<double> seconds, double peak)
    {
        seconds.Sort();
        double best = seconds[0];
        double median = seconds[seconds.Count / 2];
        double gflops = shape.Flops / best / 1e9;
        return new GemmTiming(best, median, gflops, 100 * gflops / peak);
    }

    // Aligned, randomly filled operands for one shape; C is overwritten (beta = 0) on every call.
    private sealed class Operands : IDisposable
    {
        private readonly GemmShape _shape;
        private readonly float* _a;
        private readonly float* _b;
        private readonly float* _c;

        public Operands(GemmShape shape)
        {
            _shape = shape;
            _a = Allocate((long)shape.M * shape.K, 1);
            _b = Allocate((long)shape.K * shape.N, 2);
            _c = Allocate((long)shape.M * shape.N, 3);
        }

        public void Multiply(bool useOpenBlas)
        {
            GemmShape s = _shape;
            int lda = s.TransA ? s.M : s.K;
            int ldb = s.TransB ? s.K : s.N;
            if (useOpenBlas)
            {
                OpenBlas.Sgemm(s.TransA, s.TransB, s.M, s.N, s.K, 1f, _a, lda, _b, ldb, 0f, _c, s.N);
            }
            else
            {
                MatMul.Gemm(s.TransA, s.TransB, s.M, s.N, s.K, 1f, _a, lda, _b, ldb, 0f, _c, s.N);
            }
        }

        public void Dispose()
        {
            NativeMemory.AlignedFree(_a);
            NativeMemory.AlignedFree(_b);
            NativeMemory.AlignedFree(_c);
        }

        private static float* Allocate(long count, int seed)
        {
            float* p = (float*)NativeMemory.AlignedAlloc((nuint)Math.Max(1, count) * sizeof(float), 64);
            var random = new Random(seed);
            for (long i = 0; i < count; i++)
            {
                p[i] = (float)(random.NextDouble() - 0.5);
            }

            return p;
        }
    }
}

/// <summary>OpenBLAS cblas_sgemm, loaded lazily from libopenblas.so.0 when present (a yardstick, never required).</summary>
public static unsafe class OpenBlas
{
    private const int RowMajor = 101;
    private const int NoTrans = 111;
    private const int Trans = 112;

    private static readonly Lazy<Api> s_api = new(Load);

    /// <summary>Whether libopenblas.so.0 and its cblas_sgemm could be loaded.</summary>
    public static bool IsAvailable => s_api.Value.Sgemm != null;

    /// <summary>"OpenBLAS (core, N threads)", or "not available" with the reason.</summary>
    public static string Status
    {
        get
        {
            Api api = s_api.Value;
            if (api.Sgemm == null)
            {
                return "not available (libopenblas.so.0 or cblas_sgemm not found)";
            }

            string core = api.CoreName != null ? Marshal.PtrToStringAnsi((nint)api.CoreName()) ?? "?" : "?";
            string threads = api.NumThreads != null ? api.NumThreads().ToString(CultureInfo.InvariantCulture) : "?";
            return $"OpenBLAS core {core}, {threads} threads";
        }
    }

    /// <summary>Row-major cblas_sgemm with MatMul.Gemm's argument order.</summary>
    public static void Sgemm(bool transA, bool transB, int m, int n, int k, float alpha, float* a, int lda, float* b, int ldb, float beta, float* c, int ldc)
    {
        Api api = s_api.Value;
        if (api.Sgemm == null)
        {
            throw new InvalidOperationException("OpenBLAS is not available: install libopenblas0-pthread (libopenblas.so.0).");
        }

        api.Sgemm(RowMajor, transA ? Trans : NoTrans, transB ? Trans : NoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    }

    private static Api Load()
    {
        if (!NativeLibrary.TryLoad("libopenblas.so.0", out nint handle))
        {
            return default;
        }

        var api = default(Api);
        if (NativeLibrary.TryGetExport(handle, "cblas_sgemm", out nint sgemm))
        {
            api.Sgemm = (delegate* unmanaged<int, int, int, int, int, int, float, float*, int, float*, int, float, float*, int, void>)sgemm;
        }

        if (NativeLibrary.TryGetExport(handle, "openblas_get_corename", out nint coreName))
        {
            api.CoreName = (delegate* unmanaged<byte*>)coreName;
        }

        if (NativeLibrary.TryGetExport(handle, "openblas_get_num_threads", out nint numThreads))
        {
            api.NumThreads = (delegate* unmanaged<int>)numThreads;
        }

        return api;
    }

    private struct Api
    {
        public delegate* unmanaged<int, int, int, int, int, int, float, float*, int, float*, int, float, float*, int, void> Sgemm;
        public delegate* unmanaged<byte*> CoreName;
        public delegate* unmanaged<int> NumThreads;
    }
}
