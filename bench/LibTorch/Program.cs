// MiniSeq.LibTorchBench: a LibTorch 2.10 (TorchSharp-cpu 0.107.0) yardstick for `miniseq bench step`.
//
//   patch-elf                 flag libLibTorchSharp.so's GLIBCXX_3.4.32 need as weak (build-output copy only; also done at startup)
//   info                      one JSON line: LibTorch version, ATen CPU capability, show_config, parallel info, CPU, ISA flags
//   check --model DIR --seq-len N [--modes …] [--tolerance 1e-4] [--chunk-rows R] [--lm-head …]   (a mode "mst@R" uses R-row chunks)
//                             same weights and tokens as MiniSeq: compare the loss with MiniSeq's Evaluator (and after one
//                             AdamW step), and the gradients of every mode with vanilla; exit 1 if a loss differs by > tolerance
//   run-one --model DIR --seq-len N --mode M [--steps S] [--warmup W] [--threads T] [--lm-head grad-in-forward|recompute]
//                             warm-up + timed AdamW steps in this process; one JSON line (tokens/s, VmHWM, …)
//   bench --model DIR --seq-len N,… --modes … [--steps S]
//                             one child process (run-one) per (N, mode), a markdown table
//   gemm [--config NAME|FILE] [--seq-len N] [--runs R] [--threads T]
//                             the GEMM shapes of one training step (as `miniseq bench gemm`) through LibTorch's matmul (MKL)
//   report --results FILE.jsonl --out FILE.md [--header FILE] [--smoke]
//                             the comparison table of bench/libtorch.sh
//
// bench/libtorch.sh drives all of this; see docs/benchmarks/libtorch.md.
using System.Globalization;

namespace MiniSeq.LibTorchBench;

internal static class Program
{
    private static int Main(string[] args)
    {
        try
        {
            // Must run before the first use of TorchSharp (which loads libLibTorchSharp.so).
            string patched = Native.PatchOutputCopy();
            if (args.Length == 0)
            {
                Console.Error.WriteLine("usage: MiniSeq.LibTorchBench patch-elf|info|check|run-one|bench|gemm|report [options] (see Program.cs)");
                return 2;
            }

            var opts = Options.Parse(args.Skip(1));
            switch (args[0])
            {
                case "patch-elf":
                    Console.WriteLine(patched);
                    return 0;
                case "info":
                    Console.WriteLine(Commands.InfoJson(opts.Int("threads", 2)));
                    return 0;
                case "check":
                    return Commands.Check(opts);
                case "run-one":
                    return Commands.RunOne(opts);
                case "bench":
                    return Commands.Bench(opts);
                case "gemm":
                    return Commands.Gemm(opts);
                case "report":
                    return Report.Write(opts);
                default:
                    Console.Error.WriteLine($"unknown command '{args[0]}'");
                    return 2;
            }
        }
        catch (Exception e) when (e is ArgumentException or FileNotFoundException or InvalidDataException or DirectoryNotFoundException)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 2;
        }
    }
}

/// <summary>--name value options.</summary>
internal sealed class Options
{
    private readonly Dictionary<string, string> _values = new(StringComparer.Ordinal);

    public static Options Parse(IEnumerable<string> args)
    {
        var o = new Options();
        string? key = null;
        foreach (string a in args)
        {
            if (a.StartsWith("--", StringComparison.Ordinal))
            {
                if (key is not null)
                {
                    o._values[key] = "true";
                }

                key = a[2..];
                int eq = key.IndexOf('=', StringComparison.Ordinal);
                if (eq >= 0)
                {
                    o._values[key[..eq]] = key[(eq + 1)..];
                    key = null;
                }
            }
            else if (key is not null)
            {
                o._values[key] = a;
                key = null;
            }
            else
            {
                throw new ArgumentException($"unexpected argument '{a}'");
            }
        }

        if (key is not null)
        {
            o._values[key] = "true";
        }

        return o;
    }

    public string? Get(string name) => _values.TryGetValue(name, out string? v) ? v : null;

    public string Require(string name) => Get(name) ?? throw new ArgumentException($"--{name} is required");

    public int Int(string name, int fallback) => Get(name) is string v ? int.Parse(v, CultureInfo.InvariantCulture) : fallback;

    public double Double(string name, double fallback) => Get(name) is string v ? double.Parse(v, CultureInfo.InvariantCulture) : fallback;

    public bool Flag(string name) => Get(name) is string v && v != "false";

    public static int[] IntList(string text) => text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
        .Select(s => s.EndsWith('k') || s.EndsWith('K') ? int.Parse(s[..^1], CultureInfo.InvariantCulture) * 1024 : int.Parse(s, CultureInfo.InvariantCulture)).ToArray();
}
