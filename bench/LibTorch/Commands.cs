// The commands of MiniSeq.LibTorchBench: info, check (loss parity with MiniSeq before any timing), run-one, bench.
using System.Diagnostics;
using System.Globalization;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using MiniSeq.Benchmarks;
using MiniSeq.IO;
using MiniSeq.Kernels;
using MiniSeq.Model;
using MiniSeq.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace MiniSeq.LibTorchBench;

internal static class Commands
{
    private static readonly JsonSerializerOptions s_json = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>The seed of StepBenchmark.RandomBatch in `miniseq bench run-step`: both engines train on the same tokens.</summary>
    public const ulong BatchSeed = 12345;

    public static string InfoJson(int threads)
    {
        set_num_threads(threads);
        var info = new JsonObject
        {
            ["libtorch_version"] = __version__,
            ["torchsharp_version"] = typeof(torch).Assembly.GetName().Version?.ToString(),
            ["aten_cpu_capability"] = Native.CpuCapability(),
            ["mkl_version"] = Native.MklVersion(),
            ["mkldnn_version"] = Native.MkldnnVersion(),
            ["torch_threads"] = get_num_threads(),
            ["torch_interop_threads"] = get_num_interop_threads(),
            ["parallel_info"] = Native.ParallelInfo(),
            ["show_config"] = Native.ShowConfig(),
            ["cpu_model"] = GemmBenchmark.ReadCpuName(),
            ["cpu_family_model"] = Native.CpuFamilyModel(),
            ["cpu_isa_flags"] = new JsonArray(Native.IsaFlags().Select(f => (JsonNode)f).ToArray()),
            ["avx512f"] = Native.IsaFlags().Contains("avx512f"),
            ["logical_cpus"] = Environment.ProcessorCount,
            ["miniseq_isa"] = KernelSelector.Width.ToString(),
            ["MINISEQ_FORCE_ISA"] = Environment.GetEnvironmentVariable(KernelSelector.ForceIsaVariable),
            ["DOTNET_EnableAVX512"] = Environment.GetEnvironmentVariable("DOTNET_EnableAVX512"),
            ["MALLOC_MMAP_THRESHOLD_"] = Environment.GetEnvironmentVariable("MALLOC_MMAP_THRESHOLD_"),
            ["dotnet"] = Environment.Version.ToString(),
        };
        return info.ToJsonString(s_json);
    }

    private static (Tensor Ids, Tensor Labels) Tokens(TokenBatch batch) =>
        (tensor(batch.InputIds.Select(i => (long)i).ToArray(), [batch.BatchSize, batch.SeqLen]),
         tensor(batch.Labels.Select(i => (long)i).ToArray(), [batch.BatchSize, batch.SeqLen]));

    private static LmHeadMode LmHead(Options o) => (o.Get("lm-head") ?? "grad-in-forward") switch
    {
        "grad-in-forward" => LmHeadMode.GradInForward,
        "recompute" => LmHeadMode.Recompute,
        string s => throw new ArgumentException($"--lm-head {s}: grad-in-forward or recompute"),
    };

    private static optim.Optimizer AdamW(TorchLlama model) =>
        // As `miniseq bench run-step` (StepBenchmark.Run): AdamW lr 1e-4, betas (0.9, 0.999), eps 1e-8, no weight decay.
        optim.AdamW(model.Parameters, lr: 1e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0);

    /// <summary>
    /// Correctness gate: the same weights (model directory) and the same tokens as MiniSeq. Compares the loss of one
    /// forward with MiniSeq's Evaluator for every mode, every mode's gradients with vanilla's, and the loss after one
    /// AdamW step (vanilla) with MiniSeq's. Exit 1 if a loss differs by more than --tolerance (relative, 1e-4).
    /// </summary>
    public static int Check(Options o)
    {
        string dir = o.Require("model");
        int n = o.Int("seq-len", 512);
        double tol = o.Double("tolerance", 1e-4);
        string[] modes = (o.Get("modes") ?? "vanilla,checkpoint,mst+checkpoint").Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        set_num_threads(o.Int("threads", 2));
        LlamaConfig config = ModelDirectory.ReadConfig(dir);
        TokenBatch batch = StepBenchmark.RandomBatch(config, 1, n, BatchSeed);

        double msLoss, msAfter;
        using (LlamaModel ms = ModelDirectory.Load(dir))
        {
            msLoss = Evaluator.Evaluate(ms, batch).Loss;
            using var trainer = new Trainer(ms, new TrainerOptions { Optimizer = new OptimizerOptions { LearningRate = 1e-4f }, Policy = MemoryPolicy.Vanilla, TotalSteps = 1 }, 1, n);
            trainer.Step(batch);
            msAfter = Evaluator.Evaluate(ms, batch).Loss;
        }

        TorchLlama model = TorchLlama.Load(dir);
        (Tensor ids, Tensor labels) = Tokens(batch);
        (Tensor cos, Tensor sin) = model.RopeTables(n);
        bool ok = true;
        double worstLoss = 0, worstGrad = 0;
        List<Tensor>? reference = null;
        var result = new JsonObject { ["seq_len"] = n, ["chunk_rows"] = o.Get("chunk-rows") ?? "auto", ["lm_head"] = LmHead(o).ToString(), ["miniseq_loss"] = msLoss, ["tolerance"] = tol };
        Console.WriteLine(FormattableString.Invariant($"check N={n}: MiniSeq loss {msLoss:F8} (Evaluator, same weights {dir}, same tokens: RandomBatch seed {BatchSeed})"));
        foreach (string mode in modes)
        {
            using var scope = NewDisposeScope();
            foreach (var p in model.Parameters)
            {
                p.grad?.zero_();
            }

            // "mst+checkpoint@R": that mode with R-row chunks (several chunks and a tail chunk at a short N).
            string[] parts = mode.Split('@');
            int? chunkRows = parts.Length > 1 ? int.Parse(parts[1], CultureInfo.InvariantCulture)
                : o.Get("chunk-rows") is string cr ? int.Parse(cr, CultureInfo.InvariantCulture) : null;
            Tensor loss = model.Loss(ids, labels, cos, sin, TorchPolicy.For(parts[0], config, n, LmHead(o), chunkRows));
            loss.backward();
            double l = loss.item<float>();
            double rel = Math.Abs(l - msLoss) / Math.Abs(msLoss);
            worstLoss = Math.Max(worstLoss, rel);
            ok &= rel <= tol;
            List<Tensor> grads = model.Parameters.Select(p => p.grad!.clone()).ToList();
            string gradText = "reference";
            if (reference is null)
            {
                reference = grads;
                foreach (Tensor g in grads)
                {
                    scope.MoveToOuter(g);
                }
            }
            else
            {
                double diff = grads.Zip(reference).Max(gr => (gr.First - gr.Second).abs().max().item<float>() / Math.Max(1e-30, gr.Second.abs().max().item<float>()));
                worstGrad = Math.Max(worstGrad, diff);
                ok &= diff <= 1e-3;
                gradText = FormattableString.Invariant($"max |Δgrad| / max |grad| vs {modes[0]} = {diff:E2}");
            }

            result[mode] = l;
            Console.WriteLine(FormattableString.Invariant($"  LibTorch {mode,-20} loss {l:F8}  rel diff vs MiniSeq {rel:E2}  {gradText}"));
        }

        double tAfter;
        using (var scope = NewDisposeScope())
        {
            foreach (var p in model.Parameters)
            {
                p.grad?.zero_();
            }

            optim.Optimizer opt = AdamW(model);
            Tensor loss = model.Loss(ids, labels, cos, sin, TorchPolicy.For("vanilla", config, n, LmHeadMode.GradInForward));
            loss.backward();
            opt.step();
            using (no_grad())
            {
                tAfter = model.Loss(ids, labels, cos, sin, TorchPolicy.For("vanilla", config, n, LmHeadMode.GradInForward)).item<float>();
            }
        }

        double relAfter = Math.Abs(tAfter - msAfter) / Math.Abs(msAfter);
        ok &= relAfter <= tol;
        worstLoss = Math.Max(worstLoss, relAfter);
        Console.WriteLine(FormattableString.Invariant($"  after one AdamW step (lr 1e-4, vanilla): MiniSeq {msAfter:F8}  LibTorch {tAfter:F8}  rel diff {relAfter:E2}"));
        result["miniseq_loss_after_step"] = msAfter;
        result["libtorch_loss_after_step"] = tAfter;
        result["max_rel_loss_diff"] = worstLoss;
        result["max_rel_grad_diff_between_modes"] = worstGrad;
        result["ok"] = ok;
        Console.WriteLine(result.ToJsonString(s_json));
        Console.WriteLine(ok ? $"check passed (tolerance {tol})" : $"CHECK FAILED: a loss differs by more than {tol} (relative) or a mode's gradients by more than 1e-3: refusing to time");
        return ok ? 0 : 1;
    }

    /// <summary>Warm-up + timed steps of one (N, mode) in this process; one JSON line.</summary>
    public static int RunOne(Options o)
    {
        string dir = o.Require("model");
        int n = int.Parse(o.Require("seq-len"), CultureInfo.InvariantCulture);
        string mode = o.Require("mode");
        int steps = o.Int("steps", 3), warmup = o.Int("warmup", 1), threads = o.Int("threads", 2);
        LmHeadMode lmHead = LmHead(o);
        set_num_threads(threads);
        long rssStart = Native.RssBytes();
        LlamaConfig config = ModelDirectory.ReadConfig(dir);
        TorchPolicy policy = TorchPolicy.For(mode, config, n, lmHead);
        TokenBatch batch = StepBenchmark.RandomBatch(config, 1, n, BatchSeed);
        TorchLlama model = TorchLlama.Load(dir);
        optim.Optimizer opt = AdamW(model);
        (Tensor ids, Tensor labels) = Tokens(batch);
        (Tensor cos, Tensor sin) = model.RopeTables(n);
        var times = new List<double>();
        var losses = new List<double>();
        for (int s = 0; s < warmup + steps; s++)
        {
            long t0 = Stopwatch.GetTimestamp();
            double l;
            using (var scope = NewDisposeScope())
            {
                opt.zero_grad();
                Tensor loss = model.Loss(ids, labels, cos, sin, policy);
                loss.backward();
                opt.step();
                l = loss.item<float>();
            }

            double seconds = Stopwatch.GetElapsedTime(t0).TotalSeconds;
            losses.Add(l);
            if (s >= warmup)
            {
                times.Add(seconds);
            }

            Console.Error.WriteLine(FormattableString.Invariant($"libtorch {mode} N={n} step {s + 1}/{warmup + steps}{(s < warmup ? " (warm-up)" : "")}: {seconds:F3} s, loss {l:F4}"));
        }

        List<double> sorted = times.Order().ToList();
        double median = sorted.Count == 0 ? double.NaN : sorted.Count % 2 == 1 ? sorted[sorted.Count / 2] : (sorted[sorted.Count / 2 - 1] + sorted[sorted.Count / 2]) / 2;
        var json = new JsonObject
        {
            ["engine"] = "libtorch",
            ["mode"] = mode,
            ["seq_len"] = n,
            ["batch"] = 1,
            ["warmup"] = warmup,
            ["steps"] = steps,
            ["step_s"] = new JsonArray(times.Select(t => (JsonNode)t).ToArray()),
            ["median_step_s"] = median,
            ["tokens_per_s"] = n / median,
            ["losses"] = new JsonArray(losses.Select(t => (JsonNode)t).ToArray()),
            ["peak_rss_bytes"] = Native.PeakRssBytes(),
            ["rss_after_torch_init_bytes"] = rssStart,
            ["mlp_chunk_rows"] = policy.MlpChunkRows,
            ["lm_head_chunk_rows"] = policy.LmHeadChunkRows,
            ["lm_head"] = policy.LmHeadChunkRows is null ? null : lmHead.ToString(),
            ["checkpoint"] = policy.Checkpoint,
            ["threads"] = get_num_threads(),
            ["libtorch_version"] = __version__,
            ["aten_cpu_capability"] = Native.CpuCapability(),
            ["MALLOC_MMAP_THRESHOLD_"] = Environment.GetEnvironmentVariable("MALLOC_MMAP_THRESHOLD_"),
            ["loadavg"] = File.Exists("/proc/loadavg") ? File.ReadAllText("/proc/loadavg").Trim() : null,
        };
        Console.WriteLine(json.ToJsonString(s_json));
        return 0;
    }

    /// <summary>
    /// The GEMM shapes of one training step (GemmBenchmark.StepShapes, as `miniseq bench gemm --config --seq-len`)
    /// through LibTorch's matmul (MKL): c.addmm_(op(a), op(b), beta 0) into a preallocated c, so that the time is the
    /// GEMM's and not the allocator's; op(a) a transposed view for TN, op(b) for NT, as autograd's linear passes them.
    /// Timed as `miniseq bench gemm` times MiniSeq and OpenBLAS (GemmBenchmark.Measure: same passes, GFLOP/s of the best run).
    /// </summary>
    public static int Gemm(Options o)
    {
        int threads = o.Int("threads", 2), n = o.Int("seq-len", 4096);
        var options = new GemmBenchmarkOptions { Runs = o.Int("runs", 10) };
        set_num_threads(threads);
        string configName = o.Get("config") ?? "small";
        LlamaConfig config = ModelPresets.Resolve(configName);
        Console.WriteLine(FormattableString.Invariant($"LibTorch {__version__}, ATen {Native.CpuCapability()}, {Native.MklVersion()}, {get_num_threads()} threads; shapes of config {configName} at N={n}"));
        Console.WriteLine("| shape | op | LibTorch GFLOP/s (best run) | median run |\n|---|---|---:|---:|");
        foreach (GemmShape shape in GemmBenchmark.StepShapes(config, n))
        {
            using var scope = NewDisposeScope();
            Tensor a = shape.TransA ? randn(shape.K, shape.M).t() : randn(shape.M, shape.K);
            Tensor b = shape.TransB ? randn(shape.N, shape.K).t() : randn(shape.K, shape.N);
            Tensor c = zeros(shape.M, shape.N);
            GemmTiming t = GemmBenchmark.Measure(shape, () => c.addmm_(a, b, beta: 0, alpha: 1), options, double.NaN);
            Console.WriteLine(FormattableString.Invariant($"| {shape.Name} | {shape.Description} | {t.GFlops:F1} | {shape.Flops / t.MedianSeconds / 1e9:F1} |"));
        }

        return 0;
    }

    /// <summary>One child process (run-one) per (N, mode), so that each peak RSS is its own.</summary>
    public static int Bench(Options o)
    {
        string dir = o.Require("model");
        string[] modes = (o.Get("modes") ?? "vanilla,checkpoint,mst+checkpoint").Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        Console.WriteLine(InfoJson(o.Int("threads", 2)));
        Console.WriteLine("| mode | N | tokens/s | median step s | peak RSS |\n|---|---:|---:|---:|---:|");
        foreach (int n in Options.IntList(o.Get("seq-len") ?? "2048,4096,8192,16384"))
        {
            foreach (string mode in modes)
            {
                JsonNode? r = RunChild(dir, n, mode, o);
                Console.WriteLine(r is null
                    ? $"| {mode} | {n} | failed | | |"
                    : FormattableString.Invariant($"| {mode} | {n} | {(double)r["tokens_per_s"]!:F0} | {(double)r["median_step_s"]!:F3} | {(long)r["peak_rss_bytes"]! / 1048576.0:F0} MiB |"));
            }
        }

        return 0;
    }

    private static JsonNode? RunChild(string dir, int n, string mode, Options o)
    {
        string dll = typeof(Commands).Assembly.Location;
        bool viaHost = Path.GetFileNameWithoutExtension(Environment.ProcessPath ?? "") == "dotnet";
        var psi = new ProcessStartInfo(viaHost ? Environment.ProcessPath! : Environment.ProcessPath ?? dll) { RedirectStandardOutput = true, UseShellExecute = false };
        if (viaHost)
        {
            psi.ArgumentList.Add(dll);
        }

        foreach (string a in new[] { "run-one", "--model", dir, "--seq-len", n.ToString(CultureInfo.InvariantCulture), "--mode", mode,
                     "--steps", o.Int("steps", 3).ToString(CultureInfo.InvariantCulture), "--warmup", o.Int("warmup", 1).ToString(CultureInfo.InvariantCulture),
                     "--threads", o.Int("threads", 2).ToString(CultureInfo.InvariantCulture), "--lm-head", o.Get("lm-head") ?? "grad-in-forward" })
        {
            psi.ArgumentList.Add(a);
        }

        using Process child = Process.Start(psi)!;
        string output = child.StandardOutput.ReadToEnd();
        child.WaitForExit();
        string? line = output.Split('\n', StringSplitOptions.RemoveEmptyEntries).LastOrDefault(l => l.StartsWith('{'));
        if (line is not null)
        {
            Console.Error.WriteLine(line);
        }

        return child.ExitCode == 0 && line is not null ? JsonNode.Parse(line) : null;
    }
}
