// `report`: turns the JSON lines collected by bench/libtorch.sh (MiniSeq `bench run-step` and LibTorch `run-one`,
// interleaved) into docs/benchmarks/libtorch.md: machine, ISA paths, libraries, the correctness check, the exact
// commands, median tokens/s per (mode, N) and the ratios.
using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using MiniSeq.IO;
using MiniSeq.Model;

namespace MiniSeq.LibTorchBench;

internal static class Report
{
    private sealed record Run(string Engine, int Round, string Mode, int SeqLen, double TokensPerSecond, long PeakRss, double FirstLoss, double InitRss, string? LoadAvg);

    private static double Median(IEnumerable<double> values)
    {
        var s = values.Order().ToList();
        return s.Count == 0 ? double.NaN : s.Count % 2 == 1 ? s[s.Count / 2] : (s[s.Count / 2 - 1] + s[s.Count / 2]) / 2;
    }

    private static string Mib(double bytes) => double.IsNaN(bytes) ? "n/a" : FormattableString.Invariant($"{bytes / 1048576:F0} MiB");

    private static string Describe(LlamaConfig c) => FormattableString.Invariant(
        $"d={c.HiddenSize}, L={c.NumHiddenLayers}, {c.NumAttentionHeads}/{c.NumKeyValueHeads} heads of {c.HeadDim}, I={c.IntermediateSize}, V={c.VocabSize}, {(c.TieWordEmbeddings ? "tied" : "untied")}, {c.ParameterCountEstimate / 1e6:F1}M parameters");

    public static int Write(Options o)
    {
        string resultsPath = o.Require("results"), outPath = o.Require("out");
        var runs = new List<Run>();
        foreach (string line in File.ReadLines(resultsPath).Where(l => l.TrimStart().StartsWith('{')))
        {
            JsonNode row = JsonNode.Parse(line)!;
            string engine = (string)row["engine"]!;
            int round = (int)row["round"]!;
            JsonNode r = row["result"]!;
            runs.Add(engine == "miniseq"
                ? new Run(engine, round, (string)r["Mode"]!, (int)r["SeqLen"]!, (double)r["TokensPerSecond"]!, (long)r["ProcessPeakRssBytes"]!, (double)r["FirstLoss"]!, double.NaN, null)
                : new Run(engine, round, (string)r["mode"]!, (int)r["seq_len"]!, (double)r["tokens_per_s"]!, (long)r["peak_rss_bytes"]!, (double)r["losses"]![0]!, (double?)r["rss_after_torch_init_bytes"] ?? double.NaN, (string?)r["loadavg"]));
        }

        JsonNode? info = o.Get("info") is string ip && File.Exists(ip) ? JsonNode.Parse(File.ReadAllText(ip)) : null;
        string S(string key) => info?[key]?.ToString() ?? "n/a";
        bool mmap = runs.Any(r => r.Engine == "libtorch+mmap");
        int rounds = runs.Count == 0 ? 0 : runs.Max(r => r.Round);
        var sb = new StringBuilder();
        sb.Append("# MiniSeq vs LibTorch 2.10 (TorchSharp-cpu 0.107.0, MKL, 2 threads): same model, same weights, same tokens, same mode, same N\n\n");
        if (o.Flag("smoke"))
        {
            sb.Append("> **SMOKE TEST — not a measurement.** Written by a quick `bench/libtorch.sh --smoke` run (tiny N, few steps, possibly on a busy\n");
            sb.Append("> machine) to show that the pipeline works. Replace it with a full run on a quiet machine: `bench/libtorch.sh` (defaults).\n\n");
        }

        sb.Append(CultureInfo.InvariantCulture, $"Written {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC by `bench/libtorch.sh`; {rounds} round(s), MiniSeq and LibTorch alternating (A B A B) for every (round, N, mode), one process per run of {o.Get("steps") ?? "?"} step(s) ({(o.Get("steps") == "1" ? "the single step is timed, warm-up included" : "the first a warm-up")}); a run's tokens/s = N / its median timed step; the table gives the median over rounds.\n\n");
        sb.Append("## Machine and libraries\n\n");
        sb.Append(CultureInfo.InvariantCulture, $"- CPU: {S("cpu_model")} ({S("cpu_family_model")}), {S("logical_cpus")} logical CPUs; ISA flags present: {string.Join(", ", info?["cpu_isa_flags"]?.AsArray().Select(f => f!.ToString()) ?? [])} (avx512f: {S("avx512f")})\n");
        sb.Append(CultureInfo.InvariantCulture, $"- MiniSeq: ISA path {S("miniseq_isa")} (MINISEQ_FORCE_ISA = {(info?["MINISEQ_FORCE_ISA"] is null ? "unset" : S("MINISEQ_FORCE_ISA"))}, DOTNET_EnableAVX512 = {(info?["DOTNET_EnableAVX512"] is null ? "unset" : S("DOTNET_EnableAVX512"))}: 0 gives the JIT an AVX2 CPU's 16 vector registers), MINISEQ_THREADS = {o.Get("threads") ?? "2"}, .NET {S("dotnet")}\n");
        sb.Append(CultureInfo.InvariantCulture, $"- LibTorch {S("libtorch_version")} via TorchSharp {S("torchsharp_version")}; ATen CPU capability {S("aten_cpu_capability")}; {S("mkl_version")}; {S("mkldnn_version")}; torch.set_num_threads({S("torch_threads")}), interop threads {S("torch_interop_threads")}\n");
        sb.Append(CultureInfo.InvariantCulture, $"- LibTorch extra environment (`--lt-env`): {(string.IsNullOrWhiteSpace(o.Get("lt-env")) ? "none" : "`" + o.Get("lt-env") + "`")}\n");
        sb.Append("- LibTorch's ISA path is its own: MINISEQ_FORCE_ISA does not apply to it; ATen's kernels follow ATEN_CPU_CAPABILITY, MKL picks its code path at run time (MKL_ENABLE_INSTRUCTIONS caps it; on AMD CPUs MKL may not take its fastest Intel paths), oneDNN follows ONEDNN_MAX_CPU_ISA.\n");
        string configName = o.Get("config") ?? "small";
        string model = Describe(o.Get("model") is string md ? ModelDirectory.ReadConfig(md) : ModelPresets.Resolve(configName));
        sb.Append(CultureInfo.InvariantCulture, $"- Model: config `{configName}` ({model}), fp32, batch 1; weights `miniseq init --config {configName} --seed 1` (= the weights `miniseq bench run-step` initialises); tokens `StepBenchmark.RandomBatch(seed 12345)` (= `bench run-step`'s); AdamW lr 1e-4, betas (0.9, 0.999), eps 1e-8, no weight decay.\n");
        sb.Append("- LibTorch model: HF LlamaForCausalLM semantics, `scaled_dot_product_attention(is_causal: true)` on repeated kv heads; checkpoint = per-layer custom autograd function (forward under no_grad saving the layer input, backward recomputes); MsT = chunked MLP (saves its input, recomputes per chunk) and chunked LM head + cross-entropy ("
            + (o.Get("lm-head") == "recompute" ? "saves its input, backward recomputes each chunk's logits" : "gradient formed in forward per chunk, as MiniSeq's default policy") + ") with MiniSeq's auto chunk sizes (MemoryPolicy.AutoMlpChunks / AutoLmHeadChunks).\n\n");

        if (o.Get("check") is string cp && File.Exists(cp))
        {
            sb.Append("## Correctness check (before timing)\n\n```\n").Append(File.ReadAllText(cp).TrimEnd()).Append("\n```\n\n");
        }

        sb.Append("## Results\n\n");
        sb.Append("| mode | N | MiniSeq tok/s | LibTorch tok/s | MiniSeq / LibTorch |" + (mmap ? " LibTorch tok/s, MALLOC_MMAP_THRESHOLD_=131072 | MiniSeq / that |" : "")
            + " MiniSeq peak RSS | LibTorch peak RSS |" + (mmap ? " LibTorch+mmap peak RSS |" : "") + " first-step loss MiniSeq / LibTorch (same weights and tokens: must agree) |\n");
        sb.Append("|---|---:|---:|---:|---:|" + (mmap ? "---:|---:|" : "") + "---:|---:|" + (mmap ? "---:|" : "") + "---|\n");
        var keys = runs.Select(r => (r.Mode, r.SeqLen)).Distinct().ToList();
        string[] modeOrder = ["vanilla", "checkpoint", "mst", "mst+checkpoint"];
        foreach ((string mode, int n) in keys.OrderBy(k => Array.IndexOf(modeOrder, k.Mode)).ThenBy(k => k.SeqLen))
        {
            IEnumerable<Run> Of(string engine) => runs.Where(r => r.Engine == engine && r.Mode == mode && r.SeqLen == n);
            double ms = Median(Of("miniseq").Select(r => r.TokensPerSecond)), lt = Median(Of("libtorch").Select(r => r.TokensPerSecond));
            double ltm = Median(Of("libtorch+mmap").Select(r => r.TokensPerSecond));
            string Ratio(double a, double b) => double.IsNaN(a) || double.IsNaN(b) ? "n/a" : FormattableString.Invariant($"{a / b:F2}x");
            string Tok(double x) => double.IsNaN(x) ? "n/a" : x.ToString("F0", CultureInfo.InvariantCulture);
            string Loss(string engine) => Of(engine).Select(r => r.FirstLoss.ToString("F5", CultureInfo.InvariantCulture)).FirstOrDefault() ?? "n/a";
            sb.Append(CultureInfo.InvariantCulture, $"| {mode} | {n} | {Tok(ms)} | {Tok(lt)} | {Ratio(ms, lt)} |");
            if (mmap)
            {
                sb.Append(CultureInfo.InvariantCulture, $" {Tok(ltm)} | {Ratio(ms, ltm)} |");
            }

            sb.Append(CultureInfo.InvariantCulture, $" {Mib(Median(Of("miniseq").Select(r => (double)r.PeakRss)))} | {Mib(Median(Of("libtorch").Select(r => (double)r.PeakRss)))} |");
            if (mmap)
            {
                sb.Append(CultureInfo.InvariantCulture, $" {Mib(Median(Of("libtorch+mmap").Select(r => (double)r.PeakRss)))} |");
            }

            double l1 = Of("miniseq").Select(r => r.FirstLoss).DefaultIfEmpty(double.NaN).First(), l2 = Of("libtorch").Select(r => r.FirstLoss).DefaultIfEmpty(double.NaN).First();
            bool mismatch = Math.Abs(l1 - l2) > 1e-4 * Math.Abs(l1);   // false when either is missing (NaN)
            sb.Append(CultureInfo.InvariantCulture, $" {Loss("miniseq")} / {Loss("libtorch")}{(mismatch ? " **MISMATCH > 1e-4**" : "")} |\n");
        }

        sb.Append("\nEvery run, in the order run (LibTorch: RSS right after LibTorch initialised, before the model; /proc/loadavg at the end of the run):\n\n| round | mode | N | engine | tok/s | peak RSS | RSS after init | loadavg |\n|---:|---|---:|---|---:|---:|---:|---|\n");
        foreach (Run r in runs)
        {
            sb.Append(CultureInfo.InvariantCulture, $"| {r.Round} | {r.Mode} | {r.SeqLen} | {r.Engine} | {r.TokensPerSecond:F0} | {Mib(r.PeakRss)} | {Mib(r.InitRss)} | {r.LoadAvg ?? ""} |\n");
        }

        sb.Append("\nNotes: LibTorch runs its parallel loops on OpenMP (libgomp) threads that spin at every barrier; when the machine is busy\n")
          .Append("(loadavg above the thread count) its steps slow down far more than MiniSeq's (measured on a machine at load ≈ 10: N=512 vanilla\n")
          .Append("3.5 s/step with the default wait policy, 1.1 s/step with OMP_WAIT_POLICY=passive), so only runs on an otherwise idle machine compare.\n")
          .Append("Peak RSS is the process VmHWM of each run's own process and includes the .NET runtime (and, for LibTorch, the pages of\n")
          .Append("libtorch_cpu/MKL/oneDNN it touches: see \"RSS after init\").\n");

        if (o.Get("commands") is string cmds && File.Exists(cmds))
        {
            sb.Append("\n## Commands\n\n```bash\n").Append(File.ReadAllText(cmds).TrimEnd()).Append("\n```\n");
        }

        if (info?["show_config"] is JsonNode sc)
        {
            sb.Append("\n## LibTorch build (at::show_config) and threads (at::get_parallel_info)\n\n```\n").Append(sc.ToString().TrimEnd()).Append('\n')
                .Append(S("parallel_info").TrimEnd()).Append("\n```\n");
        }

        string? dir = Path.GetDirectoryName(Path.GetFullPath(outPath));
        if (dir is not null)
        {
            Directory.CreateDirectory(dir);
        }

        AtomicFile.WriteAllText(outPath, sb.ToString(), overwrite: true);   // the report is this script's own output
        Console.WriteLine($"wrote {outPath}");
        return 0;
    }
}
