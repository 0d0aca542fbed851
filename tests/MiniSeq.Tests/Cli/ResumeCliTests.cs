// Checkpoints and resume through the real executable: a `train` killed with SIGKILL at random points and resumed
// from its --save DIR ends with a model bit-identical to an uninterrupted run's; killed writers' temporaries are
// cleaned; --keep prunes only MiniSeq's checkpoints; a resume with other settings is refused in one line.
using System.Diagnostics;
using System.Text.Json;
using MiniSeq.Tests.Helpers;
using MiniSeq.Training;

namespace MiniSeq.Tests.Cli;

public class ResumeCliTests
{
    private static readonly string[] Demo = ["train", "--seq-len", "64", "--batch", "2", "--save-every", "5"];

    private static string[] Args(string[] common, string steps, string save, params string[] extra)
        => [.. common, "--steps", steps, "--save", save, .. extra];

    private static string[] Temporaries(string dir)
        => Directory.GetFileSystemEntries(dir).Select(Path.GetFileName).Where(n => n!.StartsWith('.')).Select(n => n!).ToArray();

    /// <summary>Starts <paramref name="args"/>, waits until the process has written a new checkpoint into
    /// <paramref name="save"/> (or exited), waits a random moment more and kills it with SIGKILL.</summary>
    private static void KillAfterACheckpoint(string[] args, string save, Random random, List<string> log)
    {
        int before = Checkpoints.List(save).Count;
        using Process process = CliRunner.StartBackground(args);
        var clock = Stopwatch.StartNew();
        while (!process.HasExited && Checkpoints.List(save).Count <= before && clock.Elapsed < TimeSpan.FromMinutes(2))
        {
            Thread.Sleep(1);
        }

        int delay = random.Next(0, 120);
        Thread.Sleep(delay);
        bool killed = !process.HasExited;
        if (killed)
        {
            process.Kill(); // SIGKILL
        }

        process.WaitForExit();
        log.Add($"killed={killed} after {delay} ms, checkpoints {string.Join(',', Checkpoints.List(save).Select(c => c.Step))}");
    }

    private static void KillResumeCompare(string[] common, string steps, int kills, int seed)
    {
        using var tmp = new TempDir();
        CliAssert.Ok(CliRunner.Run(Args(common, steps, tmp["ref"])));

        var random = new Random(seed);
        var log = new List<string> { $"seed {seed}" };
        string save = tmp["run"];
        KillAfterACheckpoint(Args(common, steps, save), save, random, log);
        for (int i = 1; i < kills; i++)
        {
            KillAfterACheckpoint(Args(common, steps, save, "--resume", save), save, random, log);
        }

        Assert.True(log.Any(l => l.StartsWith("killed=True", StringComparison.Ordinal)), "no run was killed mid-way: " + string.Join('\n', log));
        CliResult last = CliRunner.Run(Args(common, steps, save, "--resume", save));
        Assert.True(last.ExitCode == 0, string.Join('\n', log) + '\n' + last.Stderr + last.Stdout);
        Assert.True(
            File.ReadAllBytes(Path.Combine(tmp["ref"], "model.safetensors")).AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(save, "model.safetensors"))),
            "final weights differ from the uninterrupted run's: " + string.Join('\n', log));
        Assert.Equal(File.ReadAllBytes(Path.Combine(tmp["ref"], "optimizer.safetensors")), File.ReadAllBytes(Path.Combine(save, "optimizer.safetensors")));
        Assert.Empty(Temporaries(save));
        Assert.Empty(Temporaries(tmp.Path));
    }

    [Fact]
    public void Demo_KilledAtRandomPoints_ResumedFromSaveDir_FinalModelBitIdentical()
        => KillResumeCompare(Demo, "120", kills: 3, seed: Environment.TickCount);

    [Fact]
    public void TokenFile_KilledAtRandomPoints_ResumedFromSaveDir_FinalModelBitIdentical()
    {
        using var tmp = new TempDir();
        Assert.Equal(0, CliRunner.Run("init", "--config", "tiny", "--out", tmp["m"]).ExitCode);
        WriteTokens(tmp["tokens.json"], 33, seed: 1);
        KillResumeCompare(["train", "--model", tmp["m"], "--tokens", tmp["tokens.json"], "--lr", "1e-3", "--schedule", "cosine", "--warmup", "2", "--save-every", "10"], "200", kills: 3, seed: Environment.TickCount);
    }

    [Fact]
    public void Resume_FromAnExplicitCheckpoint_MatchesTheUninterruptedRun()
    {
        using var tmp = new TempDir();
        CliAssert.Ok(CliRunner.Run(Args(Demo, "20", tmp["a"])));
        CliAssert.Ok(CliRunner.Run(Args(Demo, "20", tmp["b"], "--resume", Path.Combine(tmp["a"], "checkpoint-10"))));
        Assert.Equal(File.ReadAllBytes(Path.Combine(tmp["a"], "model.safetensors")), File.ReadAllBytes(Path.Combine(tmp["b"], "model.safetensors")));
        using JsonDocument state = JsonDocument.Parse(File.ReadAllText(Path.Combine(tmp["b"], "trainer_state.json")));
        Assert.Equal(20, state.RootElement.GetProperty("step").GetInt32());
    }

    [Fact]
    public void Resume_CleansLeftoverTemporariesOfKilledWriters()
    {
        using var tmp = new TempDir();
        string save = tmp["run"];
        CliAssert.Ok(CliRunner.Run(Args(Demo, "20", save)));
        foreach (string later in new[] { "checkpoint-10", "checkpoint-15", "checkpoint-20" })
        {
            Directory.Delete(Path.Combine(save, later), recursive: true);
        }

        File.Delete(Path.Combine(save, "trainer_state.json")); // the final save's state too: checkpoint-5 is the newest
        using Process gone = Process.Start("true")!;
        gone.WaitForExit();
        string stale = Path.Combine(save, $".checkpoint-15.tmp-{gone.Id}-0123456789ab");
        Directory.CreateDirectory(stale);
        File.WriteAllText(Path.Combine(stale, "model.safetensors"), "partial");
        string staleFinal = Path.Combine(tmp.Path, $".run.tmp-{gone.Id}-0123456789ab");
        Directory.CreateDirectory(staleFinal);

        CliResult r = CliRunner.Run(Args(Demo, "20", save, "--resume", save));
        CliAssert.Ok(r);
        Assert.Contains("at step 5", r.Stdout, StringComparison.Ordinal);
        Assert.False(Directory.Exists(stale));
        Assert.False(Directory.Exists(staleFinal));
        Assert.Equal([5, 10, 15, 20], Checkpoints.List(save).Select(c => c.Step));
    }

    [Fact]
    public void Keep_PrunesOnlyMiniSeqCheckpoints()
    {
        using var tmp = new TempDir();
        string save = tmp["run"];
        Directory.CreateDirectory(Path.Combine(save, "checkpoint-1"));
        File.WriteAllText(Path.Combine(save, "checkpoint-1", "mine.txt"), "not MiniSeq's");
        Directory.CreateDirectory(Path.Combine(save, "checkpoint-notes"));
        File.WriteAllText(Path.Combine(save, "notes.txt"), "mine");

        CliAssert.Ok(CliRunner.Run(Args(Demo, "25", save, "--keep", "2", "--overwrite")));
        string[] entries = Directory.GetFileSystemEntries(save).Select(e => Path.GetFileName(e)!).Order(StringComparer.Ordinal).ToArray();
        Assert.Equal(["checkpoint-1", "checkpoint-20", "checkpoint-25", "checkpoint-notes", "config.json", "model.safetensors", "notes.txt", "optimizer.safetensors", "trainer_state.json"], entries);
        Assert.Equal("not MiniSeq's", File.ReadAllText(Path.Combine(save, "checkpoint-1", "mine.txt")));
    }

    [Fact]
    public void Resume_WithOtherSettings_RefusedInOneLine()
    {
        using var tmp = new TempDir();
        string save = tmp["run"];
        CliAssert.Ok(CliRunner.Run(Args(Demo, "10", save)));
        byte[] before = File.ReadAllBytes(Path.Combine(save, "model.safetensors"));

        CliAssert.OneLineError(CliRunner.Run(Args(Demo, "10", save, "--resume", save, "--lr", "0.01")), "optimizer.lr is 0.003 in the checkpoint but 0.01 in this run");
        CliAssert.OneLineError(CliRunner.Run(Args(Demo, "10", save, "--resume", save, "--seed", "2")), "data is recall seq_len=64 pairs=8 gap=0 seed=1 in the checkpoint");
        CliAssert.OneLineError(CliRunner.Run(Args(["train", "--seq-len", "64", "--batch", "4", "--save-every", "5"], "10", save, "--resume", save)), "batch is 2x64 in the checkpoint but 4x64");
        CliAssert.OneLineError(CliRunner.Run(Args(Demo, "10", save, "--resume", save, "--optimizer", "sgd")), "optimizer is adamw in the checkpoint but sgd");
        CliAssert.OneLineError(CliRunner.Run(Args(Demo, "20", save, "--resume", save)), "steps is 10 in the checkpoint but 20");
        CliAssert.OneLineError(CliRunner.Run(Args(Demo, "10", save, "--resume", save, "--mst-mlp", "4", "--checkpoint", "on")), "memory_policy is ");
        CliAssert.OneLineError(CliRunner.Run("train", "--resume", tmp["nothing"]), "no such directory");
        Assert.Equal(before, File.ReadAllBytes(Path.Combine(save, "model.safetensors")));
    }

    [Fact]
    public void Resume_TokenFileWithOtherContent_Refused()
    {
        using var tmp = new TempDir();
        Assert.Equal(0, CliRunner.Run("init", "--config", "tiny", "--out", tmp["m"]).ExitCode);
        WriteTokens(tmp["tokens.json"], 17, seed: 1);
        string[] common = ["train", "--model", tmp["m"], "--tokens", tmp["tokens.json"], "--save-every", "2"];
        CliAssert.Ok(CliRunner.Run(Args(common, "4", tmp["run"])));
        WriteTokens(tmp["tokens.json"], 17, seed: 2);
        CliAssert.OneLineError(CliRunner.Run(Args(common, "4", tmp["run"], "--resume", tmp["run"])), "data is tokens fnv1a64=");
    }

    private static void WriteTokens(string path, int seqLen, int seed)
    {
        var rng = new Random(seed);
        int[][] ids = [Enumerable.Range(0, seqLen).Select(_ => rng.Next(256)).ToArray(), Enumerable.Range(0, seqLen).Select(_ => rng.Next(256)).ToArray()];
        File.WriteAllText(path, JsonSerializer.Serialize(new Dictionary<string, object> { ["input_ids"] = ids }));
    }
}
