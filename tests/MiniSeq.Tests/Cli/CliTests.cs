// End-to-end: init → eval → train → save → eval through the real executable, and the one-line error contract.
using System.Text.Json;
using MiniSeq.Tests.Helpers;

namespace MiniSeq.Tests.Cli;

public class CliTests
{
    private static void WriteTokens(string path, int rows, int seqLen, int vocab, int seed, bool labels = true)
    {
        var rng = new Random(seed);
        var ids = Enumerable.Range(0, rows).Select(_ => Enumerable.Range(0, seqLen).Select(_ => rng.Next(vocab)).ToArray()).ToArray();
        object doc = labels
            ? new Dictionary<string, object> { ["input_ids"] = ids, ["labels"] = ids.Select(r => r.Skip(1).Append(-100).ToArray()).ToArray() }
            : new Dictionary<string, object> { ["input_ids"] = ids };
        File.WriteAllText(path, JsonSerializer.Serialize(doc));
    }

    private static double EvalLoss(string model, string tokens)
    {
        CliResult r = CliRunner.Run("eval", "--model", model, "--tokens", tokens);
        Assert.True(r.ExitCode == 0, r.Stderr);
        using JsonDocument json = JsonDocument.Parse(r.Stdout);
        double loss = json.RootElement.GetProperty("loss").GetDouble();
        Assert.Equal(Math.Exp(loss), json.RootElement.GetProperty("perplexity").GetDouble(), 6);
        Assert.True(json.RootElement.GetProperty("tokens").GetInt64() > 0);
        return loss;
    }

    [Fact]
    public void InitEvalTrainSave_EndToEnd_LossFalls()
    {
        using var tmp = new TempDir();
        CliResult init = CliRunner.Run("init", "--config", "tiny", "--seed", "7", "--out", tmp["model"]);
        Assert.True(init.ExitCode == 0, init.Stderr);
        Assert.True(File.Exists(tmp["model/config.json"]));
        Assert.True(File.Exists(tmp["model/model.safetensors"]));
        WriteTokens(tmp["tokens.json"], rows: 2, seqLen: 33, vocab: 256, seed: 1);
        double before = EvalLoss(tmp["model"], tmp["tokens.json"]);
        Assert.InRange(before, Math.Log(256) - 0.5, Math.Log(256) + 0.5);

        CliResult train = CliRunner.Run("train", "--model", tmp["model"], "--tokens", tmp["tokens.json"], "--steps", "8",
            "--optimizer", "adamw", "--lr", "0.01", "--weight-decay", "0.01", "--grad-clip", "1", "--warmup", "2", "--schedule", "cosine",
            "--mst-mlp", "auto", "--mst-lm", "3", "--checkpoint", "on", "--micro-batch", "1", "--save", tmp["trained"]);
        Assert.True(train.ExitCode == 0, train.Stderr + train.Stdout);
        Assert.Contains("peak", train.Stdout, StringComparison.Ordinal);
        double after = EvalLoss(tmp["trained"], tmp["tokens.json"]);
        Assert.True(after < before - 0.5, $"loss {before} → {after}");
    }

    [Fact]
    public void Train_Sgd_LabelsOmitted_Works()
    {
        using var tmp = new TempDir();
        Assert.Equal(0, CliRunner.Run("init", "--config", "tiny", "--out", tmp["m"]).ExitCode);
        WriteTokens(tmp["t.json"], rows: 1, seqLen: 17, vocab: 256, seed: 2, labels: false);
        CliResult r = CliRunner.Run("train", "--model", tmp["m"], "--tokens", tmp["t.json"], "--steps", "2", "--optimizer", "sgd", "--lr", "0.1", "--save", tmp["out"]);
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.True(File.Exists(tmp["out/model.safetensors"]));
    }

    [Fact]
    public void Train_LionAndLamb_WithNoDecayNone_Work_PlanShowsTheirState()
    {
        using var tmp = new TempDir();
        Assert.Equal(0, CliRunner.Run("init", "--config", "tiny", "--out", tmp["m"]).ExitCode);
        WriteTokens(tmp["t.json"], rows: 1, seqLen: 17, vocab: 256, seed: 3);
        foreach (string optimizer in new[] { "lion", "lamb" })
        {
            CliResult r = CliRunner.Run("train", "--model", tmp["m"], "--tokens", tmp["t.json"], "--steps", "2", "--optimizer", optimizer, "--lr", "1e-3",
                "--weight-decay", "0.1", "--no-decay", "none", "--save", tmp["out-" + optimizer]);
            Assert.True(r.ExitCode == 0, r.Stderr + r.Stdout);
        }

        CliResult plan = CliRunner.Run("plan", "--config", "tiny", "--seq-len", "64", "--optimizer", "lamb");
        Assert.True(plan.ExitCode == 0, plan.Stderr);
        Assert.Contains("lamb state: exp_avg, exp_avg_sq", plan.Stdout, StringComparison.Ordinal);
    }

    public static TheoryData<string[], string> BadInputs => new()
    {
        { ["eval", "--model", "/nonexistent/model", "--tokens", "/nonexistent/t.json"], "not found" },
        { ["train", "--bogus-option"], "--bogus-option" },
        { ["train", "--model", "x"], "--tokens" },
        { ["init", "--config", "no-such-config", "--out", "/tmp/never-written"], "no-such-config" },
        { ["plan", "--config", "small", "--seq-len", "1000000", "--budget", "1GiB"], "" },
        { ["train", "--optimizer", "sgd", "--nesterov"], "--nesterov needs --momentum" },
        { ["train", "--no-decay", "norm"], "--no-decay" },
        { ["plan", "--config", "tiny", "--seq-len", "64", "--optimizer", "lion", "--momentum", "0.9"], "--momentum applies to sgd" },
    };

    [Theory]
    [MemberData(nameof(BadInputs))]
    public void BadInput_OneLineError_NonZeroExit(string[] args, string mention)
    {
        CliResult r = CliRunner.Run(args);
        Assert.NotEqual(0, r.ExitCode);
        if (mention.Length > 0)
        {
            Assert.Contains(mention, r.Stderr, StringComparison.OrdinalIgnoreCase);
            Assert.Single(r.Stderr.Trim().Split('\n'));
            Assert.DoesNotContain("   at ", r.Stderr, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void Eval_InvalidForceIsa_OneLineErrorNamingTheVariable()
    {
        using var tmp = new TempDir();
        Assert.Equal(0, CliRunner.Run("init", "--config", "tiny", "--seed", "3", "--out", tmp["model"]).ExitCode);
        WriteTokens(tmp["tokens.json"], rows: 1, seqLen: 9, vocab: 256, seed: 2);
        CliResult r = CliRunner.RunWith(new Dictionary<string, string> { ["MINISEQ_FORCE_ISA"] = "AVX2" }, "eval", "--model", tmp["model"], "--tokens", tmp["tokens.json"]);
        Assert.NotEqual(0, r.ExitCode);
        string[] lines = r.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines);
        Assert.Contains("MINISEQ_FORCE_ISA='AVX2' is not one of Scalar, V128, V256, V512", lines[0], StringComparison.Ordinal);
    }

    [Fact]
    public void Train_MalformedTokens_OrOutOfRangeIds_FailWithoutWritingOutput()
    {
        using var tmp = new TempDir();
        Assert.Equal(0, CliRunner.Run("init", "--config", "tiny", "--out", tmp["m"]).ExitCode);
        File.WriteAllText(tmp["bad.json"], "{\"input_ids\": [[1, 2, 3]");
        CliResult malformed = CliRunner.Run("train", "--model", tmp["m"], "--tokens", tmp["bad.json"], "--save", tmp["out"]);
        Assert.NotEqual(0, malformed.ExitCode);
        Assert.Contains("bad.json", malformed.Stderr, StringComparison.Ordinal);
        Assert.Single(malformed.Stderr.Trim().Split('\n'));

        File.WriteAllText(tmp["range.json"], "{\"input_ids\": [[1, 2, 300, 4]]}");
        CliResult range = CliRunner.Run("train", "--model", tmp["m"], "--tokens", tmp["range.json"], "--save", tmp["out"]);
        Assert.NotEqual(0, range.ExitCode);
        Assert.Contains("300", range.Stderr, StringComparison.Ordinal);
        Assert.False(Directory.Exists(tmp["out"]));
    }

    [Fact]
    public void Train_BudgetTooSmall_RefusesBeforeAllocating()
    {
        using var tmp = new TempDir();
        Assert.Equal(0, CliRunner.Run("init", "--config", "tiny", "--out", tmp["m"]).ExitCode);
        WriteTokens(tmp["t.json"], rows: 1, seqLen: 64, vocab: 256, seed: 3);
        CliResult r = CliRunner.Run("train", "--model", tmp["m"], "--tokens", tmp["t.json"], "--budget", "1MiB", "--save", tmp["out"]);
        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains("budget", r.Stderr, StringComparison.OrdinalIgnoreCase);
        Assert.False(Directory.Exists(tmp["out"]));
    }

    [Fact]
    public void Plan_PrintsEveryPolicy_AndPicksOne()
    {
        CliResult r = CliRunner.Run("plan", "--config", "small", "--seq-len", "8192", "--budget", "1GiB");
        Assert.True(r.ExitCode == 0, r.Stderr + r.Stdout);
        foreach (string policy in new[] { "vanilla", "mst", "checkpoint", "mst+checkpoint" })
        {
            Assert.Contains(policy, r.Stdout, StringComparison.Ordinal);
        }

        Assert.Contains("Fastest policy", r.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public void Demo_ShortRun_PrintsSummary()
    {
        CliResult r = CliRunner.Run("train", "--steps", "3", "--seq-len", "64", "--batch", "2");
        Assert.True(r.ExitCode == 0, r.Stderr + r.Stdout);
        Assert.Contains("loss first", r.Stdout, StringComparison.Ordinal);
        Assert.Contains("process peak RSS", r.Stdout, StringComparison.Ordinal);
        Assert.Contains("recall accuracy", r.Stdout, StringComparison.Ordinal);
        Assert.Contains("(1 of 8 values in context)", r.Stdout, StringComparison.Ordinal);
        Assert.Contains("memory policy", r.Stdout, StringComparison.Ordinal);
        Assert.Contains("chosen by the planner for --budget", r.Stdout, StringComparison.Ordinal);
        Assert.Contains("vanilla would need", r.Stdout, StringComparison.Ordinal);
        Assert.Contains("ETA", r.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public void Demo_TightBudget_PlannerPicksAMemorySavingPolicy()
    {
        // 16 × 512 tokens: vanilla is predicted at ≈ 170 MiB and MsT at ≈ 110 MiB, so a budget between the two
        // makes the planner leave vanilla; the summary names the policy and what vanilla would have needed.
        CliResult r = CliRunner.Run("train", "--steps", "1", "--seq-len", "512", "--batch", "16", "--budget", "130MiB");
        Assert.True(r.ExitCode == 0, r.Stderr + r.Stdout);
        Assert.Contains("budget 130 MiB: chose mst", r.Stdout, StringComparison.Ordinal);
        Assert.Contains("vanilla would need", r.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public void BenchRunStep_PrintsJsonWithPredictionAndProfile()
    {
        CliResult r = CliRunner.Run("bench", "run-step", "--config", "tiny", "--seq-len", "64", "--mode", "mst+checkpoint", "--steps", "2");
        Assert.True(r.ExitCode == 0, r.Stderr);
        using JsonDocument json = JsonDocument.Parse(r.Stdout.Trim().Split('\n')[^1]);
        Assert.True(json.RootElement.GetProperty("TokensPerSecond").GetDouble() > 0);
        Assert.True(json.RootElement.GetProperty("PredictedTrackedBytes").GetInt64() == json.RootElement.GetProperty("TrackedPeakBytes").GetInt64());
        Assert.True(json.RootElement.GetProperty("ProfileSecondsPerStep").GetProperty("AttentionForward").GetDouble() > 0);
    }

    [Fact]
    public void BenchRunStep_PairedPeak_OnePeakPerTimedStep()
    {
        CliResult r = CliRunner.Run("bench", "run-step", "--config", "tiny", "--seq-len", "64", "--mode", "vanilla", "--steps", "3", "--paired-peak", "true");
        Assert.True(r.ExitCode == 0, r.Stderr);
        using JsonDocument json = JsonDocument.Parse(r.Stdout.Trim().Split('\n')[^1]);
        Assert.Equal(2, json.RootElement.GetProperty("TimedStepSeconds").GetArrayLength());
        JsonElement peaks = json.RootElement.GetProperty("StepPeakGFlops");
        Assert.Equal(2, peaks.GetArrayLength());
        Assert.All(peaks.EnumerateArray(), p => Assert.True(p.GetDouble() > 0));
    }

    [Fact]
    public void BenchAttention_PairedPeakColumns()
    {
        CliResult r = CliRunner.Run("bench", "attention", "--seq-len", "64", "--heads", "2", "--kv-heads", "1", "--head-dim", "16", "--runs", "2");
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains("% of paired peak (median of runs)", r.Stdout, StringComparison.Ordinal);
        string row = r.Stdout.Split('\n').Single(l => l.StartsWith("| 64 |", StringComparison.Ordinal));
        Assert.Equal(11, row.Count(ch => ch == '|'));
    }

    [Fact]
    public void BenchStep_OutExists_RefusedBeforeTheRun_OverwriteReplaces()
    {
        using var tmp = new TempDir();
        File.WriteAllText(tmp["r.md"], "the user's notes");
        CliResult refused = CliRunner.Run("bench", "step", "--config", "tiny", "--seq-len", "64", "--modes", "vanilla", "--steps", "2", "--out", tmp["r"]);
        CliAssert.OneLineError(refused, "--overwrite");
        Assert.DoesNotContain("step 1/2", refused.Stderr, StringComparison.Ordinal); // refused before running
        Assert.Equal("the user's notes", File.ReadAllText(tmp["r.md"]));
        CliResult replaced = CliRunner.Run("bench", "step", "--config", "tiny", "--seq-len", "64", "--modes", "vanilla", "--steps", "2", "--out", tmp["r"], "--overwrite");
        Assert.True(replaced.ExitCode == 0, replaced.Stderr);
        Assert.StartsWith("machine: ", File.ReadAllText(tmp["r.md"]), StringComparison.Ordinal);
        Assert.Equal(["r.md"], Directory.GetFileSystemEntries(tmp.Path).Select(Path.GetFileName));
    }
}
