// `miniseq plot`: a metrics log (with a line cut short by a killed run) becomes an SVG with one panel per series;
// an existing output is never replaced without --overwrite.
using MiniSeq.Tests.Helpers;

namespace MiniSeq.Tests.Cli;

public class PlotCliTests
{
    [Fact]
    public void Plot_MetricsLog_WritesSvg_RefusesToReplaceWithoutOverwrite()
    {
        using var tmp = new TempDir();
        File.WriteAllText(tmp["m.jsonl"],
            "{\"step\":1,\"loss\":5.5,\"lr\":0.001,\"tokens_per_s\":100,\"peak_bytes\":1000}\n"
            + "{\"step\":2,\"loss\":4.5,\"val_loss\":4.7,\"lr\":0.002,\"tokens_per_s\":110,\"peak_bytes\":1000}\n"
            + "{\"step\":3,\"lo");

        CliResult r = CliRunner.Run("plot", tmp["m.jsonl"], "--out", tmp["m.svg"]);

        Assert.True(r.ExitCode == 0, r.Stderr);
        string svg = File.ReadAllText(tmp["m.svg"]);
        Assert.StartsWith("<svg", svg, StringComparison.Ordinal);
        Assert.Equal(5, svg.Split("<polyline").Length - 1); // loss, val_loss, lr, tokens/s, memory
        CliResult again = CliRunner.Run("plot", tmp["m.jsonl"], "--out", tmp["m.svg"]);
        Assert.NotEqual(0, again.ExitCode);
        Assert.Contains("--overwrite", again.Stderr, StringComparison.Ordinal);
        Assert.Equal(0, CliRunner.Run("plot", tmp["m.jsonl"], "--out", tmp["m.svg"], "--overwrite").ExitCode);
    }
}
