// `miniseq bench`: GEMM GFLOP/s vs OpenBLAS, attention GFLOP/s, end-to-end training steps, and the memory benchmark
// (one child process per run so that each process peak RSS is its own).
using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using MiniSeq.Benchmarks;
using MiniSeq.IO;
using MiniSeq.Kernels;
using MiniSeq.Model;
using MiniSeq.Tensors;
using MiniSeq.Threading;
using MiniSeq.Training;
using Spectre.Console;

namespace MiniSeq.Cli.Commands;

internal static class BenchCommand
{
    private static readonly JsonSerializerOptions s_json = new() { WriteIndented = false };

    public static Command Create()
    {
        var bench = new Command("bench", "Benchmarks: gemm, attention, step, memory, overhead, toolbox");
        bench.Subcommands.Add(Gemm());
        bench.Subcommands.Add(AttentionBench.Create());
        bench.Subcommands.Add(Step());
        bench.Subcommands.Add(Memory());
        bench.Subcommands.Add(Overhead());
        bench.Subcommands.Add(Toolbox());
        bench.Subcommands.Add(RunStep());
        return bench;
    }

    private static PeakEstimate? s_peak;

    /// <summary>fp32 peak of the kernel threads at the width GEMM and attention run at: the larger of the nominal figure
    /// and register-only FMA bursts (the vCPUs boost well above the clock /proc/cpuinfo reports).</summary>
    internal static PeakEstimate Peak => s_peak ??= MeasurePeak();

    /// <summary>The peak measured now (not cached): the probe of the paired measurements (--paired-peak).</summary>
    internal static PeakEstimate MeasurePeak() => CpuPeak.Measure(KernelSelector.TiledWidth, KernelThreads.ThreadCount);

    /// <summary>--paired-peak: measure the peak again right before each timed <paramref name="run"/>.</summary>
    internal static Option<bool> PairedPeakOption(bool defaultValue, string run) => new("--paired-peak")
    {
        DefaultValueFactory = _ => defaultValue,
        Description = $"Measure the peak again right before each {run} and report the median share of it (the host's clock drifts within the hour)",
    };

    internal static string MachineLine()
    {
        PeakEstimate peak = Peak;
        string width = peak.Width.ToString();
        string nominal = peak.NominalGFlops is double n
            ? FormattableString.Invariant($"nominal {n:F0} GFLOP/s ({peak.FlopsPerCycle} FLOP/cycle/core: {CpuPeak.DescribeFmaPipes(peak.Width, peak.HalfRate512)}, at the {peak.ClockGHz:F2} GHz of /proc/cpuinfo)")
            : $"nominal n/a (no FMA at {width})";
        string measured = peak.EffectiveGHz is double ghz
            ? FormattableString.Invariant($"measured {peak.MeasuredGFlops:F0} GFLOP/s ({width} FMA bursts; ≈{ghz:F1} GHz effective)")
            : FormattableString.Invariant($"measured {peak.MeasuredGFlops:F0} GFLOP/s ({width} multiply+add bursts)");
        string path = CpuPeak.DescribePath(KernelSelector.Selected, KernelSelector.IsForced, peak.Width);
        return FormattableString.Invariant($"{GemmBenchmark.ReadCpuName()}, {Environment.ProcessorCount} cores, {KernelThreads.ThreadCount} kernel threads; {path}; fp32 peak at {width}: {nominal}, {measured} — % of peak below uses the larger, {peak.GFlops:F0} GFLOP/s; .NET {Environment.Version}");
    }

    private static Command Gemm()
    {
        var runs = new Option<int>("--runs") { DefaultValueFactory = _ => 10, Description = "Timed runs per shape" };
        var openblas = new Option<bool>("--openblas") { DefaultValueFactory = _ => true, Description = "Compare with OpenBLAS cblas_sgemm (libopenblas.so.0) when available" };
        var seqLen = new Option<int>("--seq-len") { DefaultValueFactory = _ => 4096, Description = "Tokens per step (M of the forward shapes, K of the weight gradients)" };
        var command = new Command("gemm", "GEMM GFLOP/s and % of peak for the shapes of a training step, vs OpenBLAS");
        command.Options.Add(runs);
        command.Options.Add(openblas);
        command.Options.Add(ConfigName);
        command.Options.Add(seqLen);
        command.SetAction(p =>
        {
            LlamaConfig config = ModelPresets.Resolve(p.GetValue(ConfigName)!);
            int n = p.GetValue(seqLen);
            if (n < 1)
            {
                throw new ArgumentException($"--seq-len must be at least 1 (got {n}).");
            }

            Console.WriteLine($"machine: {MachineLine()}");
            double peak = Peak.GFlops;
            Console.WriteLine($"OpenBLAS: {OpenBlas.Status}");
            Console.WriteLine();
            Console.WriteLine(FormattableString.Invariant($"shapes: one training step of config {p.GetValue(ConfigName)} (C={config.HiddenSize}, F={config.IntermediateSize}, V={config.VocabSize}, Q={config.QueryDim}, KvH·D={config.KeyValueDim}) at N={n}"));
            var results = GemmBenchmark.Run(GemmBenchmark.StepShapes(config, n), new GemmBenchmarkOptions { Runs = p.GetValue(runs), CompareOpenBlas = p.GetValue(openblas), PeakGFlops = peak });
            var sb = new StringBuilder("| shape | op | MiniSeq GFLOP/s | % of peak | OpenBLAS GFLOP/s | MiniSeq / OpenBLAS |\n|---|---|---:|---:|---:|---:|\n");
            foreach (GemmBenchmarkResult r in results)
            {
                sb.Append(CultureInfo.InvariantCulture, $"| {r.Shape.Name} | {r.Shape.Description} | {r.MiniSeq.GFlops:F1} | {r.MiniSeq.PercentOfPeak:F1} % | ");
                sb.Append(r.OpenBlas is GemmTiming o ? FormattableString.Invariant($"{o.GFlops:F1} | {r.MiniSeq.GFlops / o.GFlops:F2}× |") : "n/a | n/a |").Append('\n');
            }

            Console.Write(sb.ToString());
            return 0;
        });
        return command;
    }

    private static readonly Option<string> SeqLens = new("--seq-len") { DefaultValueFactory = _ => "4096,8192,16384", Description = "Comma-separated sequence lengths" };
    private static readonly Option<string> Modes = new("--modes") { DefaultValueFactory = _ => "vanilla,mst,checkpoint,mst+checkpoint", Description = "Comma-separated: vanilla, mst, checkpoint, mst+checkpoint, checkpoint+attn, mst+checkpoint+attn, chunked, chunked+offload, chunked+bf16, chunked+bf16+offload, auto, or a described policy such as mst(mlp 64, lm 128)+chunked(512)+bf16" };
    private static readonly Option<int> Steps = new("--steps") { DefaultValueFactory = _ => 3, Description = "Steps per run (the first is a warm-up)" };
    private static readonly Option<string> ConfigName = new("--config") { DefaultValueFactory = _ => "small", Description = "tiny | small | demo | config.json" };
    private static readonly Option<int> Batch = new("--batch") { DefaultValueFactory = _ => 1, Description = "Rows per batch" };
    private static readonly Option<string?> Budget = new("--budget") { DefaultValueFactory = _ => "1GiB", Description = "Memory budget for 'fits' and the largest-N search" };
    private static readonly Option<bool> PairedPeak = PairedPeakOption(false, "timed step");
    private static readonly Option<string?> Out = new("--out") { Description = "Write results (markdown, and for memory an SVG chart) with this path prefix" };
    private static readonly Option<bool> Overwrite = new("--overwrite") { Description = "Replace --out files that already exist" };

    // --out PREFIX: refused before the (long) run when a file is there and --overwrite was not given; written atomically
    // at the end (AtomicFile).
    private static void CheckOut(ParseResult p, params string[] extensions)
    {
        if (p.GetValue(Out) is string prefix)
        {
            foreach (string extension in extensions)
            {
                AtomicFile.CheckWritable(prefix + extension, p.GetValue(Overwrite));
            }
        }
    }

    private static void WriteOut(ParseResult p, params (string Extension, string Contents)[] files)
    {
        if (p.GetValue(Out) is not string prefix)
        {
            return;
        }

        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(prefix))!);
        foreach ((string extension, string contents) in files)
        {
            AtomicFile.WriteAllText(prefix + extension, contents, p.GetValue(Overwrite));
        }
    }

    private static int[] ParseList(string text) => text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
        .Select(s => s.EndsWith('k') || s.EndsWith('K') ? int.Parse(s[..^1], CultureInfo.InvariantCulture) * 1024 : int.Parse(s, CultureInfo.InvariantCulture)).ToArray();

    /// <summary>Modes separated by commas outside parentheses ("vanilla,mst(mlp 4, lm 8)+chunked(1024)").</summary>
    internal static string[] SplitModes(string text)
    {
        var modes = new List<string>();
        int depth = 0, start = 0;
        for (int i = 0; i <= text.Length; i++)
        {
            if (i == text.Length || (text[i] == ',' && depth == 0))
            {
                if (text[start..i].Trim() is { Length: > 0 } mode)
                {
                    modes.Add(mode);
                }

                start = i + 1;
            }
            else
            {
                depth += text[i] == '(' ? 1 : text[i] == ')' ? -1 : 0;
            }
        }

        return [.. modes];
    }

    internal static MemoryPolicy ModePolicy(string mode, LlamaConfig config, int batch, int seqLen, long budget)
    {
        long rows = (long)batch * seqLen;
        if (mode == "auto")
        {
            var all = MemoryPlanner.PredictAll(config, batch, seqLen, new OptimizerOptions(), MemoryPlanner.MeasureRuntimeOverhead());
            return (MemoryPlanner.Choose(all, budget) ?? all[^1]).Policy;
        }

        // Explicit chunk counts for experiments: "mlp16,lm8" or "mlp16,lm8+checkpoint" (either part may be omitted).
        if (mode.StartsWith("mlp", StringComparison.Ordinal) || mode.StartsWith("lm", StringComparison.Ordinal))
        {
            bool ckpt = mode.EndsWith("+checkpoint", StringComparison.Ordinal);
            string[] parts = mode.Replace("+checkpoint", "", StringComparison.Ordinal).Split(';');
            int? Count(string prefix) => parts.FirstOrDefault(x => x.StartsWith(prefix, StringComparison.Ordinal)) is string x ? int.Parse(x[prefix.Length..], CultureInfo.InvariantCulture) : null;
            return new MemoryPolicy { MlpChunks = Count("mlp"), LmHeadChunks = Count("lm"), Checkpoint = ckpt };
        }

        // A standard name, or what MemoryPolicy.Describe prints, e.g. "mst(mlp 32, lm 64)+chunked(1024)+bf16".
        return MemoryPolicy.Parse(mode, config, rows);
    }

    /// <summary>Hidden: one benchmark run in this process, printed as one JSON line (used by `bench memory`).</summary>
    private static Command RunStep()
    {
        var seq = new Option<int>("--seq-len") { Required = true };
        var mode = new Option<string>("--mode") { Required = true };
        var variant = new Option<string>("--variant") { DefaultValueFactory = _ => "full-adamw" };
        var command = new Command("run-step", "(internal) one training benchmark run, JSON output") { Hidden = true };
        foreach (Option o in new Option[] { seq, mode, Steps, ConfigName, Batch, Budget, variant, PairedPeak })
        {
            command.Options.Add(o);
        }

        command.SetAction(p =>
        {
            LlamaConfig config = ModelPresets.Resolve(p.GetValue(ConfigName)!);
            int n = p.GetValue(seq), batch = p.GetValue(Batch);
            string m = p.GetValue(mode)!;
            MemoryPolicy policy = ModePolicy(m, config, batch, n, ByteSize.Parse(p.GetValue(Budget) ?? "1GiB"));
            Func<double>? probe = p.GetValue(PairedPeak) ? () => MeasurePeak().GFlops : null;
            StepBenchmarkResult r = StepBenchmark.Run(config, n, batch, m, policy, p.GetValue(Steps), line => Console.Error.WriteLine(line), TrainingVariant.Parse(p.GetValue(variant)!), probe);
            Console.WriteLine(JsonSerializer.Serialize(r, s_json));
            return 0;
        });
        return command;
    }

    private static StepBenchmarkResult? RunChild(string config, int seqLen, int batch, string mode, int steps, string budget, string variant = "full-adamw", bool pairedPeak = false)
    {
        string dll = Environment.GetCommandLineArgs()[0];
        bool viaHost = Path.GetFileNameWithoutExtension(Environment.ProcessPath ?? "") == "dotnet";
        var psi = new ProcessStartInfo(viaHost ? Environment.ProcessPath! : dll) { RedirectStandardOutput = true, UseShellExecute = false };
        if (viaHost)
        {
            psi.ArgumentList.Add(dll);
        }

        foreach (string a in new[] { "bench", "run-step", "--seq-len", seqLen.ToString(CultureInfo.InvariantCulture), "--mode", mode, "--steps", steps.ToString(CultureInfo.InvariantCulture), "--config", config, "--batch", batch.ToString(CultureInfo.InvariantCulture), "--budget", budget, "--variant", variant, "--paired-peak", pairedPeak ? "true" : "false" })
        {
            psi.ArgumentList.Add(a);
        }

        using Process child = Process.Start(psi)!;
        string output = child.StandardOutput.ReadToEnd();
        child.WaitForExit();
        string? line = output.Split('\n', StringSplitOptions.RemoveEmptyEntries).LastOrDefault(l => l.StartsWith('{'));
        return child.ExitCode == 0 && line is not null ? JsonSerializer.Deserialize<StepBenchmarkResult>(line) : null;
    }

    private static Command Step()
    {
        var command = new Command("step", "End-to-end training tokens/s and peak memory per N and mode (one process per run)");
        Option<bool> paired = PairedPeakOption(true, "timed step");
        foreach (Option o in new Option[] { SeqLens, Modes, Steps, ConfigName, Batch, Budget, Out, Overwrite, paired })
        {
            command.Options.Add(o);
        }

        command.SetAction(p =>
        {
            CheckOut(p, ".md");
            var rows = new List<StepBenchmarkResult>();
            Console.WriteLine($"machine: {MachineLine()}");
            foreach (int n in ParseList(p.GetValue(SeqLens)!))
            {
                foreach (string mode in SplitModes(p.GetValue(Modes)!))
                {
                    StepBenchmarkResult? r = RunChild(p.GetValue(ConfigName)!, n, p.GetValue(Batch), mode.Trim(), p.GetValue(Steps), p.GetValue(Budget)!, pairedPeak: p.GetValue(paired));
                    if (r is not null)
                    {
                        rows.Add(r);
                        double modelFlops = StepBenchmark.ModelFlops(ModelPresets.Resolve(p.GetValue(ConfigName)!), r.BatchSize, r.SeqLen);
                        double flops = modelFlops / r.MedianStepSeconds / 1e9;
                        string pairedShare = r.PairedPeakShare(modelFlops) is double share ? FormattableString.Invariant($" ({100 * share:F1} % of the peak measured before each step, median)") : "";
                        Console.WriteLine(FormattableString.Invariant($"{r.Mode,-16} N={r.SeqLen,6}: {r.TokensPerSecond,8:F0} tok/s, model {flops:F0} GFLOP/s = {100 * flops / Peak.GFlops:F1} % of peak{pairedShare}, peak RSS {ByteSize.Format(r.ProcessPeakRssBytes)}"));
                    }
                }
            }

            string md = $"machine: {MachineLine()}\n\n" + MemoryTable(rows, null) + "\n" + FlopsTable(rows, ModelPresets.Resolve(p.GetValue(ConfigName)!)) + "\n" + ProfileTable(rows);
            Console.Write(md);
            WriteOut(p, (".md", md));

            return 0;
        });
        return command;
    }

    private static Command Overhead()
    {
        var rounds = new Option<int>("--rounds") { DefaultValueFactory = _ => 5, Description = "Timed rounds (one step of every mode per round)" };
        var command = new Command("overhead", "Tokens/s of each policy relative to the first, interleaved step by step in one process");
        foreach (Option o in new Option[] { SeqLens, Modes, ConfigName, rounds, Out, Overwrite })
        {
            command.Options.Add(o);
        }

        command.SetAction(p =>
        {
            CheckOut(p, ".md");
            LlamaConfig config = ModelPresets.Resolve(p.GetValue(ConfigName)!);
            string[] modes = SplitModes(p.GetValue(Modes)!);
            var sb = new StringBuilder($"machine: {MachineLine()}\n\n| N | mode | median step s | tokens/s | tokens/s vs {modes[0]} |\n|---:|---|---:|---:|---:|\n");
            foreach (int n in ParseList(p.GetValue(SeqLens)!))
            {
                var list = modes.Select(m => (m, ModePolicy(m, config, 1, n, long.MaxValue))).ToList();
                foreach (PolicyTiming t in PolicyComparison.Run(config, n, list, p.GetValue(rounds), log: l => Console.Error.WriteLine(l)))
                {
                    sb.Append(CultureInfo.InvariantCulture, $"| {t.SeqLen} | {t.Mode} | {t.MedianStepSeconds:F3} | {t.TokensPerSecond:F0} | {(t.RelativeToFirst - 1) * 100:+0.0;-0.0} % |\n");
                }
            }

            Console.Write(sb.ToString());
            WriteOut(p, (".md", sb.ToString()));

            return 0;
        });
        return command;
    }

    private static Command Toolbox()
    {
        var variants = new Option<string>("--variants") { DefaultValueFactory = _ => "full-adamw,full-lion,lora16-adamw", Description = "Comma-separated: full[-OPTIMIZER][-bf16] or loraR[-OPTIMIZER] (LoRA rank R, α = 2R, on every layer projection; -bf16: --precision bf16), the first is the baseline" };
        var rounds = new Option<int>("--rounds") { DefaultValueFactory = _ => 3, Description = "Timed rounds (one step of every variant per round)" };
        var warmup = new Option<int>("--warmup") { DefaultValueFactory = _ => 1, Description = "Untimed rounds first" };
        var mode = new Option<string>("--mode") { DefaultValueFactory = _ => "mst+checkpoint", Description = "Memory policy of every run" };
        var command = new Command("toolbox", "Memory (one process per run) and interleaved tokens/s of full vs LoRA fine-tuning and of each optimizer, per N");
        foreach (Option o in new Option[] { SeqLens, mode, variants, Steps, ConfigName, rounds, warmup, Out, Overwrite })
        {
            command.Options.Add(o);
        }

        command.SetAction(p =>
        {
            CheckOut(p, ".md");
            string configName = p.GetValue(ConfigName)!, policyName = p.GetValue(mode)!;
            LlamaConfig config = ModelPresets.Resolve(configName);
            List<TrainingVariant> list = p.GetValue(variants)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(TrainingVariant.Parse).ToList();
            var layout = new ParameterLayout(config);
            var sb = new StringBuilder($"machine: {MachineLine()}\n\nconfig {configName}: d={config.HiddenSize}, L={config.NumHiddenLayers}, heads {config.NumAttentionHeads}/{config.NumKeyValueHeads}, I={config.IntermediateSize}, V={config.VocabSize} ({layout.ParameterCount:N0} parameters); batch 1; policy {policyName}; fp32 unless the variant ends in -bf16 (--precision bf16)\n\n");
            sb.Append(CultureInfo.InvariantCulture, $"| N | variant | trainable parameters | parameters | gradients | optimizer state | activations | scratch | peak RSS | predicted | median step s | tokens/s | tokens/s vs {list[0].Name} |\n|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
            foreach (int n in ParseList(p.GetValue(SeqLens)!))
            {
                MemoryPolicy policy = ModePolicy(policyName, config, 1, n, long.MaxValue);
                var memory = list.Select(v => RunChild(configName, n, 1, policyName, p.GetValue(Steps), "1GiB", v.Name)).ToList();
                IReadOnlyList<PolicyTiming> timing = PolicyComparison.RunVariants(config, n, policy, list, p.GetValue(rounds), p.GetValue(warmup), log: l => Console.Error.WriteLine(l));
                for (int i = 0; i < list.Count; i++)
                {
                    TrainingVariant v = list[i];
                    long trainable = v.Lora is { } lora ? new Model.Lora.LoraLayout(layout, lora).ParameterCount : layout.ParameterCount;
                    StepBenchmarkResult? r = memory[i];
                    string mem = r is null ? "failed | failed | failed | failed | failed | failed | failed"
                        : FormattableString.Invariant($"{ByteSize.Format(r.PeakBytes[(int)MemoryCategory.Parameters])} | {ByteSize.Format(r.PeakBytes[(int)MemoryCategory.Gradients])} | {ByteSize.Format(r.PeakBytes[(int)MemoryCategory.OptimizerState])} | {ByteSize.Format(r.PeakBytes[(int)MemoryCategory.Activations])} | {ByteSize.Format(r.PeakBytes[(int)MemoryCategory.Scratch])} | {ByteSize.Format(r.ProcessPeakRssBytes)} | {ByteSize.Format(r.PredictedProcessPeakBytes)}");
                    sb.Append(CultureInfo.InvariantCulture, $"| {n} | {v.Name} | {trainable:N0} | {mem} | {timing[i].MedianStepSeconds:F3} | {timing[i].TokensPerSecond:F0} | {timing[i].RelativeToFirst:F2}× |\n");
                }
            }

            Console.Write(sb.ToString());
            WriteOut(p, (".md", sb.ToString()));

            return 0;
        });
        return command;
    }

    private static Command Memory()
    {
        var search = new Option<bool>("--search") { DefaultValueFactory = _ => true, Description = "Find the largest N within --budget per mode by real runs (bisection)" };
        var maxPredicted = new Option<string>("--skip-above") { DefaultValueFactory = _ => "12GiB", Description = "Skip runs whose predicted peak exceeds this" };
        var precisions = new Option<string>("--precision") { DefaultValueFactory = _ => "fp32", Description = "Comma-separated: fp32, bf16 (mixed precision); each mode runs in each (rows of bf16 runs are labelled MODE@bf16)" };
        var command = new Command("memory", "Peak memory per category, RSS, prediction and tokens/s per N and mode; largest N within a budget; markdown + SVG");
        foreach (Option o in new Option[] { SeqLens, Modes, Steps, ConfigName, Batch, Budget, Out, Overwrite, search, maxPredicted, precisions })
        {
            command.Options.Add(o);
        }

        command.SetAction(p =>
        {
            CheckOut(p, ".md", ".svg");
            string configName = p.GetValue(ConfigName)!;
            LlamaConfig config = ModelPresets.Resolve(configName);
            int batch = p.GetValue(Batch), steps = p.GetValue(Steps);
            string budgetText = p.GetValue(Budget)!;
            long budget = ByteSize.Parse(budgetText), skip = ByteSize.Parse(p.GetValue(maxPredicted)!);
            string[] modes = SplitModes(p.GetValue(Modes)!);
            Precision[] precisionList = p.GetValue(precisions)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(Precisions.Parse).ToArray();
            if (p.GetValue(search) && precisionList.Any(x => x != Precision.Float32))
            {
                throw new ArgumentException("bench memory --search runs fp32 only: add --search false with --precision bf16.");
            }

            var rows = new List<StepBenchmarkResult>();
            Console.WriteLine($"machine: {MachineLine()}");
            long overhead = MemoryPlanner.MeasureRuntimeOverhead();
            foreach (int n in ParseList(p.GetValue(SeqLens)!))
            {
                foreach (string mode in modes)
                {
                    foreach (Precision precision in precisionList)
                    {
                        string label = precision == Precision.Float32 ? mode : $"{mode}@{precision.Name()}";
                        var predicted = MemoryPlanner.Predict(config, batch, n, ModePolicy(mode, config, batch, n, budget), new OptimizerOptions(), overhead, mode, new TrainingSetup { Precision = precision });
                        if (predicted.ProcessPeak > skip)
                        {
                            Console.WriteLine($"{label,-16} N={n,6}: skipped (predicted {ByteSize.Format(predicted.ProcessPeak)} > --skip-above)");
                            continue;
                        }

                        StepBenchmarkResult? r = RunChild(configName, n, batch, mode, steps, budgetText, precision == Precision.Float32 ? "full-adamw" : "full-adamw-bf16");
                        if (r is null)
                        {
                            Console.WriteLine($"{label,-16} N={n,6}: failed");
                            continue;
                        }

                        rows.Add(r with { Mode = label });
                        Console.WriteLine(FormattableString.Invariant($"{label,-16} N={n,6}: {r.TokensPerSecond,8:F0} tok/s, peak RSS {ByteSize.Format(r.ProcessPeakRssBytes)} (predicted {ByteSize.Format(r.PredictedProcessPeakBytes)})"));
                    }
                }
            }

            var largest = new Dictionary<string, int>();
            if (p.GetValue(search))
            {
                // auto runs the fastest standard policy that fits, so its largest N is the largest over the others.
                foreach (string mode in modes.Where(m => m != "auto").Concat(modes.Where(m => m == "auto")))
                {
                    largest[mode] = mode == "auto" && largest.Count > 0 ? largest.Values.Max()
                        : SearchLargest(configName, config, batch, mode, budget, budgetText, rows);
                    Console.WriteLine($"{mode,-16}: largest N within {ByteSize.Format(budget)} = {largest[mode]}");
                }
            }

            string md = $"machine: {MachineLine()}\n\nconfig {configName}: d={config.HiddenSize}, L={config.NumHiddenLayers}, heads {config.NumAttentionHeads}/{config.NumKeyValueHeads}, I={config.IntermediateSize}, V={config.VocabSize}; batch {batch}; {string.Join(" and ", precisionList.Select(x => x.Name()))} AdamW; budget {ByteSize.Format(budget)}\n\n"
                + MemoryTable(rows.OrderBy(r => r.Mode).ThenBy(r => r.SeqLen).ToList(), budget);
            if (largest.Count > 0)
            {
                md += "\n| mode | largest N with process peak RSS ≤ " + ByteSize.Format(budget) + " (real runs) |\n|---|---:|\n"
                    + string.Concat(largest.Select(kv => $"| {kv.Key} | {kv.Value} |\n"));
            }

            Console.Write(md);
            WriteOut(p, (".md", md), (".svg", Svg.PeakMemoryChart(rows, budget)));

            return 0;
        });
        return command;
    }

    private static int SearchLargest(string configName, LlamaConfig config, int batch, string mode, long budget, string budgetText, List<StepBenchmarkResult> rows)
    {
        const int Granularity = 1024;
        bool Fits(StepBenchmarkResult r) => r.ProcessPeakRssBytes <= budget;
        StepBenchmarkResult? Probe(int n)
        {
            StepBenchmarkResult? r = RunChild(configName, n, batch, mode, 1, budgetText);
            Console.WriteLine(r is null ? $"  probe {mode} N={n}: failed"
                : FormattableString.Invariant($"  probe {mode} N={n}: peak RSS {ByteSize.Format(r.ProcessPeakRssBytes)} ({r.ProcessPeakRssBytes:N0} bytes; predicted {ByteSize.Format(r.PredictedProcessPeakBytes)}): {(Fits(r) ? "fits" : "over")}"));
            return r;
        }

        int lo = rows.Where(r => r.Mode == mode && Fits(r)).Select(r => r.SeqLen).DefaultIfEmpty(0).Max();
        int hi = rows.Where(r => r.Mode == mode && !Fits(r) && r.SeqLen > lo).Select(r => r.SeqLen).DefaultIfEmpty(0).Min();
        if (hi == 0)
        {
            // Start from the planner's estimate and step up until a real run exceeds the budget.
            hi = Math.Max(lo + Granularity, MemoryPlanner.LargestFittingSeqLen(config, batch, mode == "auto" ? "mst+checkpoint" : mode, new OptimizerOptions(), MemoryPlanner.MeasureRuntimeOverhead(), budget, Granularity) + Granularity);
            while (true)
            {
                StepBenchmarkResult? r = Probe(hi);
                if (r is null || !Fits(r))
                {
                    break;
                }

                rows.Add(r);
                lo = hi;
                hi += hi / 8 / Granularity * Granularity + Granularity;
            }
        }

        while (hi - lo > Granularity)
        {
            int mid = (lo + hi) / 2 / Granularity * Granularity;
            if (mid <= lo)
            {
                break;
            }

            StepBenchmarkResult? r = Probe(mid);
            if (r is not null && Fits(r))
            {
                lo = mid;
            }
            else
            {
                hi = mid;
            }
        }

        return lo;
    }

    internal static string ProfileTable(IReadOnlyList<StepBenchmarkResult> rows)
    {
        if (rows.Count == 0)
        {
            return "";
        }

        string[] ops = rows[0].ProfileSecondsPerStep.Keys.ToArray();
        var sb = new StringBuilder("Time per step by op family (seconds, median step; `other` = copies, clears, embedding):\n\n| mode | N | step s | " + string.Join(" | ", ops) + " | unaccounted |\n");
        sb.Append("|---|---:|---:|" + string.Concat(ops.Select(_ => "---:|")) + "---:|\n");
        foreach (StepBenchmarkResult r in rows)
        {
            double accounted = r.ProfileSecondsPerStep.Values.Sum();
            sb.Append(CultureInfo.InvariantCulture, $"| {r.Mode} | {r.SeqLen} | {r.MedianStepSeconds:F3} | ");
            sb.Append(string.Join(" | ", ops.Select(o => r.ProfileSecondsPerStep[o].ToString("F3", CultureInfo.InvariantCulture))));
            sb.Append(CultureInfo.InvariantCulture, $" | {Math.Max(0, r.MedianStepSeconds - accounted):F3} |\n");
        }

        return sb.ToString();
    }

    /// <summary>Model FLOPs per step (6·P·tokens + causal attention, no recomputation) against the machine's peak.</summary>
    internal static string FlopsTable(IReadOnlyList<StepBenchmarkResult> rows, LlamaConfig config)
    {
        bool paired = rows.Any(r => r.StepPeakGFlops is not null);
        var sb = new StringBuilder(FormattableString.Invariant($"| mode | N | median step s | model GFLOP per step | model GFLOP/s | % of peak ({Peak.GFlops:F0}) |"));
        sb.Append(paired ? " peak before each step (median) | % of it (median of steps) |\n|---|---:|---:|---:|---:|---:|---:|---:|\n" : "\n|---|---:|---:|---:|---:|---:|\n");
        foreach (StepBenchmarkResult r in rows)
        {
            double gflop = StepBenchmark.ModelFlops(config, r.BatchSize, r.SeqLen) / 1e9;
            sb.Append(CultureInfo.InvariantCulture, $"| {r.Mode} | {r.SeqLen} | {r.MedianStepSeconds:F3} | {gflop:F1} | {gflop / r.MedianStepSeconds:F0} | {100 * gflop / r.MedianStepSeconds / Peak.GFlops:F1} % |");
            if (paired)
            {
                sb.Append(r.PairedPeakShare(gflop * 1e9) is double share
                    ? FormattableString.Invariant($" {CpuPeak.Median(r.StepPeakGFlops!):F0} | {100 * share:F1} % |")
                    : " n/a | n/a |");
            }

            sb.Append('\n');
        }

        return sb.ToString();
    }

    internal static string MemoryTable(IReadOnlyList<StepBenchmarkResult> rows, long? budget)
    {
        // One column per ledger category (disk: offloaded layer inputs, not part of the tracked or resident peak).
        var sb = new StringBuilder("| mode | N | tokens/s | params | grads | optimizer | activations | scratch | disk | tracked peak | process peak RSS | predicted RSS | error |" + (budget is null ? "" : " fits |") + "\n");
        sb.Append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + (budget is null ? "" : "---|") + "\n");
        foreach (StepBenchmarkResult r in rows)
        {
            double err = (double)(r.PredictedProcessPeakBytes - r.ProcessPeakRssBytes) / r.ProcessPeakRssBytes;
            sb.Append(CultureInfo.InvariantCulture, $"| {r.Mode} | {r.SeqLen} | {r.TokensPerSecond:F0} | ");
            foreach (long b in r.PeakBytes)
            {
                sb.Append(ByteSize.Format(b)).Append(" | ");
            }

            sb.Append(CultureInfo.InvariantCulture, $"{ByteSize.Format(r.TrackedPeakBytes)} | {ByteSize.Format(r.ProcessPeakRssBytes)} | {ByteSize.Format(r.PredictedProcessPeakBytes)} | {err:+0.0%;-0.0%;0.0%} |");
            if (budget is long b2)
            {
                sb.Append(r.ProcessPeakRssBytes <= b2 ? " yes |" : " no |");
            }

            sb.Append('\n');
        }

        return sb.ToString();
    }
}
