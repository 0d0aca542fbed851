// `miniseq bench attention`: flash attention forward and forward+backward GFLOP/s per sequence length.
using System.CommandLine;
using System.Globalization;
using MiniSeq.Benchmarks;

namespace MiniSeq.Cli.Commands;

internal static class AttentionBench
{
    public static Command Create()
    {
        var seq = new Option<string>("--seq-len") { DefaultValueFactory = _ => "4096,8192,16384", Description = "Comma-separated sequence lengths" };
        var heads = new Option<int>("--heads") { DefaultValueFactory = _ => 8, Description = "Query heads" };
        var kvHeads = new Option<int>("--kv-heads") { DefaultValueFactory = _ => 2, Description = "Key/value heads" };
        var headDim = new Option<int>("--head-dim") { DefaultValueFactory = _ => 32, Description = "Head dimension" };
        var reps = new Option<int>("--runs") { DefaultValueFactory = _ => 3, Description = "Timed repetitions (best is kept)" };
        Option<bool> paired = BenchCommand.PairedPeakOption(true, "forward+backward run");
        var command = new Command("attention", "Flash attention forward and forward+backward GFLOP/s (causal: 4·T²·D·H/2 forward, 2.5× that backward)");
        foreach (Option o in new Option[] { seq, heads, kvHeads, headDim, reps, paired })
        {
            command.Options.Add(o);
        }

        command.SetAction(p =>
        {
            Console.WriteLine($"machine: {BenchCommand.MachineLine()}");
            double peak = BenchCommand.Peak.GFlops;
            Console.WriteLine();
            bool pairedPeak = p.GetValue(paired);
            Func<double>? probe = pairedPeak ? () => BenchCommand.MeasurePeak().GFlops : null;
            Console.WriteLine($"| T | H/KvH | D | forward s | forward GFLOP/s | fwd+bwd s | fwd+bwd GFLOP/s | % of peak ({peak:F0}) |" + (pairedPeak ? " paired peak (median) | % of paired peak (median of runs) |" : ""));
            Console.WriteLine("|---:|---|---:|---:|---:|---:|---:|---:|" + (pairedPeak ? "---:|---:|" : ""));
            foreach (string s in p.GetValue(seq)!.Split(','))
            {
                int t = int.Parse(s.Trim(), CultureInfo.InvariantCulture);
                AttentionTiming r = AttentionBenchmark.Run(1, t, p.GetValue(heads), p.GetValue(kvHeads), p.GetValue(headDim), p.GetValue(reps), probe);
                string pairedColumns = r.PairedPeakShare is double share ? FormattableString.Invariant($" {r.PairedPeakGFlops:F0} | {100 * share:F1} % |") : "";
                Console.WriteLine(FormattableString.Invariant($"| {t} | {p.GetValue(heads)}/{p.GetValue(kvHeads)} | {p.GetValue(headDim)} | {r.ForwardSeconds:F3} | {r.ForwardGflops:F1} | {r.ForwardBackwardSeconds:F3} | {r.ForwardBackwardGflops:F1} | {100 * r.ForwardBackwardGflops / peak:F1} % |{pairedColumns}"));
            }

            return 0;
        });
        return command;
    }
}
