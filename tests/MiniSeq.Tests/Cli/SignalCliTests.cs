// SIGINT (Ctrl-C) or SIGTERM during `train`: the running step finishes, the run ends as a time limit would end it —
// model and training state saved to --save, metrics and chart written — and the process exits with 128 + the
// signal's number; resuming from that directory ends bit-identical to a run never interrupted.
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;
using MiniSeq.Tests.Helpers;

namespace MiniSeq.Tests.Cli;

public partial class SignalCliTests
{
    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int Kill(int pid, int signal);

    [Theory]
    [InlineData(2, "SIGINT")]
    [InlineData(15, "SIGTERM")]
    public void Signal_FinishesTheStep_Saves_ExitsWith128PlusSignal_AndResumesBitIdentical(int signal, string name)
    {
        using var tmp = new TempDir();
        string[] common = ["train", "--seq-len", "64", "--batch", "2", "--steps", "150", "--save-every", "1000"];
        CliAssert.Ok(CliRunner.Run([.. common, "--save", tmp["ref"]]));

        var output = new StringBuilder();
        string save = tmp["run"], metrics = tmp["m.jsonl"];
        using Process process = CliRunner.StartBackground(output, [.. common, "--save", save, "--metrics", metrics]);
        var clock = Stopwatch.StartNew();
        while (!process.HasExited && (!File.Exists(metrics) || File.ReadAllLines(metrics).Length < 3) && clock.Elapsed < TimeSpan.FromMinutes(2))
        {
            Thread.Sleep(5); // the run is stepping (and has registered its handlers) once metrics lines appear
        }

        Assert.False(process.HasExited, "the run ended before the signal: " + output);
        Assert.Equal(0, Kill(process.Id, signal));
        Assert.True(process.WaitForExit(TimeSpan.FromMinutes(2)), "no exit after the signal: " + output);
        process.WaitForExit(); // drain the output

        string log;
        lock (output)
        {
            log = output.ToString();
        }

        Assert.True(128 + signal == process.ExitCode, $"exit code {process.ExitCode}: {log}");
        Assert.Contains($"{name}: stopped after step ", log, StringComparison.Ordinal);
        int steps = File.ReadAllLines(metrics).Length;
        Assert.InRange(steps, 3, 149);
        Assert.True(File.Exists(Path.ChangeExtension(metrics, ".svg")), "no chart: " + log);
        Assert.True(File.Exists(Path.Combine(save, "model.safetensors")), "nothing saved: " + log);

        CliResult resumed = CliRunner.Run([.. common, "--save", save, "--resume", save]);
        CliAssert.Ok(resumed);
        Assert.Contains(FormattableString.Invariant($"at step {steps}"), resumed.Stdout, StringComparison.Ordinal);
        Assert.Equal(File.ReadAllBytes(Path.Combine(tmp["ref"], "model.safetensors")), File.ReadAllBytes(Path.Combine(save, "model.safetensors")));
    }
}
