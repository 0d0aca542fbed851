// Layer inputs offloaded to disk through the real executable: a run killed with SIGKILL mid-step leaves nothing in the
// offload directory (the file is unlinked the moment it is created), the directory shows nothing while a run is alive,
// offloaded training ends bit-identical to in-memory training, and a missing directory is one clear line.
using System.Diagnostics;
using MiniSeq.Tests.Helpers;

namespace MiniSeq.Tests.Cli;

public class OffloadCliTests
{
    private static readonly string[] Demo = ["train", "--seq-len", "96", "--batch", "2", "--seq-chunk", "32"];

    [Fact]
    public void Offloaded_EqualsInMemory_AndKilledRunLeavesNothing()
    {
        using var tmp = new TempDir();
        string offload = tmp["offload"];
        Directory.CreateDirectory(offload);
        CliResult inMemory = CliRunner.Run([.. Demo, "--steps", "6", "--save", tmp["memory"]]);
        CliAssert.Ok(inMemory);
        Assert.DoesNotContain("chosen by the planner", inMemory.Stdout, StringComparison.Ordinal); // --seq-chunk is the user's choice
        CliAssert.Ok(CliRunner.Run([.. Demo, "--steps", "6", "--save", tmp["disk"], "--offload", "disk:" + offload]));
        Assert.Equal(File.ReadAllBytes(Path.Combine(tmp["memory"], "model.safetensors")), File.ReadAllBytes(Path.Combine(tmp["disk"], "model.safetensors")));
        Assert.Empty(Directory.EnumerateFileSystemEntries(offload));

        using Process process = CliRunner.StartBackground([.. Demo, "--steps", "100000", "--offload", "disk:" + offload, "--activation-dtype", "bf16"]);
        // Watch until the run holds its offload file (startup takes seconds on a loaded machine: wait for the event, not
        // for a fixed time), then a little longer so the kill lands mid-step.
        var clock = Stopwatch.StartNew();
        bool sawProcessFile = false;
        TimeSpan? seenAt = null;
        while (!process.HasExited && clock.Elapsed < TimeSpan.FromMinutes(2) && (seenAt is null || clock.Elapsed < seenAt + TimeSpan.FromSeconds(1)))
        {
            Assert.Empty(Directory.EnumerateFileSystemEntries(offload)); // unlinked at creation: never visible
            if (!sawProcessFile && OpenOffloadFile(process.Id))
            {
                sawProcessFile = true;
                seenAt = clock.Elapsed;
            }

            Thread.Sleep(20);
        }

        Assert.False(process.HasExited, "the run ended before it could be killed");
        Assert.True(sawProcessFile, "the run never held an offload file open");
        process.Kill(); // SIGKILL, mid-step
        process.WaitForExit();
        Assert.Empty(Directory.EnumerateFileSystemEntries(offload));
    }

    [Fact]
    public void MissingOffloadDirectory_OneLineError()
    {
        using var tmp = new TempDir();
        CliResult r = CliRunner.Run([.. Demo, "--steps", "1", "--offload", "disk:" + tmp["nowhere"]]);
        CliAssert.OneLineError(r, tmp["nowhere"]);
    }

    /// <summary>Whether process <paramref name="pid"/> holds an open (deleted) offload file: /proc/PID/fd links.</summary>
    private static bool OpenOffloadFile(int pid)
    {
        try
        {
            return Directory.EnumerateFileSystemEntries($"/proc/{pid}/fd")
                .Select(fd => new FileInfo(fd).LinkTarget)
                .Any(target => target is not null && target.Contains(".miniseq-offload-", StringComparison.Ordinal));
        }
        catch (IOException)
        {
            return false;
        }
        catch (UnauthorizedAccessException)
        {
            return false;
        }
    }
}
