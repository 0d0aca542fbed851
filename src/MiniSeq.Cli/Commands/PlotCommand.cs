// `miniseq plot METRICS.jsonl --out FILE.svg`: loss (and validation loss), learning rate, tokens/s and memory over
// steps from a training run's metrics log, as one SVG. The output is written atomically and never replaces a file
// without --overwrite.
using System.CommandLine;
using MiniSeq.IO;
using Spectre.Console;

namespace MiniSeq.Cli.Commands;

internal static class PlotCommand
{
    private static readonly Argument<string> MetricsFile = new("metrics") { Description = "Metrics log written by `train --metrics` (JSON lines)" };
    private static readonly Option<string> Out = new("--out") { Description = "SVG file to write", Required = true };
    private static readonly Option<bool> Overwrite = new("--overwrite") { Description = "Replace an existing --out file" };

    public static Command Create()
    {
        var command = new Command("plot", "Draw a metrics log (loss, learning rate, tokens/s, memory over steps) as SVG");
        command.Arguments.Add(MetricsFile);
        command.Options.Add(Out);
        command.Options.Add(Overwrite);
        command.SetAction(p =>
        {
            string input = p.GetValue(MetricsFile)!, output = p.GetValue(Out)!;
            Write(input, output, p.GetValue(Overwrite));
            AnsiConsole.MarkupLine(Markup.Escape($"wrote {output}"));
            return 0;
        });
        return command;
    }

    /// <summary>
    /// The chart `train --metrics M` draws at the end of a run: M with the extension .svg. Written only if no file is
    /// there or the one there is a MiniSeq metrics chart (never replaces a user's file); returns the path, or null with
    /// the reason in <paramref name="skipped"/>.
    /// </summary>
    public static string? WriteNextTo(string metricsPath, out string? skipped)
    {
        string svgPath = Path.ChangeExtension(metricsPath, ".svg");
        skipped = null;
        if (svgPath == metricsPath || Directory.Exists(svgPath) || (File.Exists(svgPath) && !IsOwnChart(svgPath)))
        {
            skipped = $"{svgPath} exists and is not a MiniSeq chart; left as it is (draw one with `miniseq plot {metricsPath} --out FILE.svg`)";
            return null;
        }

        Write(metricsPath, svgPath, overwrite: true);
        return svgPath;
    }

    private static bool IsOwnChart(string path)
    {
        using var reader = new StreamReader(path);
        _ = reader.ReadLine();
        return reader.ReadLine() == Svg.MetricsChartMarker;
    }

    /// <summary>Renders <paramref name="metricsPath"/> into <paramref name="svgPath"/> (temp file + rename).</summary>
    public static void Write(string metricsPath, string svgPath, bool overwrite)
    {
        AtomicFile.CheckWritable(svgPath, overwrite);

        // A resumed run logs again the steps after its checkpoint: the last line of each step wins.
        IReadOnlyList<IReadOnlyDictionary<string, double>> rows = [.. MetricsLog.Read(metricsPath)
            .Where(r => r.ContainsKey("step"))
            .GroupBy(r => r["step"])
            .Select(g => g.Last())
            .OrderBy(r => r["step"])];
        if (rows.Count == 0)
        {
            throw new InvalidDataException($"{metricsPath}: no metrics lines to plot.");
        }

        AtomicFile.WriteAllText(svgPath, Svg.MetricsChart(rows, Path.GetFileName(metricsPath)), overwrite);
    }
}
