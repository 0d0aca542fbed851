// ZeRO-1 through the real executable under `mpirun -np 2`: `--zero 1` with MsT + checkpointing gives the weights
// (relative 1e-5 per tensor), losses, gradient norms and optimizer state of one process on the whole batch; a resume
// under ZeRO-1 is bit-identical to the uninterrupted run, and a resume that changes --zero is refused naming it. In one
// process --zero 1 is a no-op and an unknown stage is one line.
using System.Text.Json;
using MiniSeq.Tests.Helpers;

namespace MiniSeq.Tests.Distributed;

public class ZeroCliTests(Xunit.Abstractions.ITestOutputHelper output)
{
    [OpenMpiFact]
    public void Train_TwoRanksZero1_MsTCheckpointing_SameWeightsLossesAndStateAsOneProcess()
    {
        using var tmp = new TempDir();
        string model = MpiCliFixtures.InitModel(tmp), tokens = MpiCliFixtures.WriteTokens(tmp, rows: 2, seqLen: 64, seed: 1);
        string[] common = ["train", "--model", model, "--tokens", tokens, "--steps", "3", "--save-every", "3", "--lr", "1e-3", "--weight-decay", "0.1", "--grad-clip", "1", "--mst-mlp", "auto", "--mst-lm", "auto", "--checkpoint", "on"];
        CliAssert.Ok(CliRunner.Run([.. common, "--save", tmp["one"], "--metrics", tmp["one.jsonl"]]));
        CliResult two = CliRunner.RunUnderMpirun(2, [.. common, "--zero", "1", "--save", tmp["two"], "--metrics", tmp["two.jsonl"]]);
        CliAssert.Ok(two);
        Assert.Contains("ZeRO-1: optimizer state ", two.Stdout, StringComparison.Ordinal);
        Assert.Contains("per rank (its 1/2", two.Stdout, StringComparison.Ordinal);

        double weights = MpiCliFixtures.CompareFiles(Path.Combine(tmp["two"], "model.safetensors"), Path.Combine(tmp["one"], "model.safetensors"), 1e-5);
        double state = MpiCliFixtures.CompareFiles(Path.Combine(tmp["two"], "optimizer.safetensors"), Path.Combine(tmp["one"], "optimizer.safetensors"), 1e-5);
        List<JsonElement> a = MpiCliFixtures.Metrics(tmp["two.jsonl"]), e = MpiCliFixtures.Metrics(tmp["one.jsonl"]);
        Assert.Equal(3, a.Count);
        for (int i = 0; i < e.Count; i++)
        {
            Compare.Close(a[i].GetProperty("loss").GetDouble(), e[i].GetProperty("loss").GetDouble(), 1e-5, $"step {i + 1} loss");
            Compare.Close(a[i].GetProperty("grad_norm").GetDouble(), e[i].GetProperty("grad_norm").GetDouble(), 1e-5, $"step {i + 1} gradient norm");
        }

        output.WriteLine(FormattableString.Invariant($"ZeRO-1 on 2 ranks against 1 process (MsT auto, checkpointing): largest per-tensor relative error {weights:E2} (weights), {state:E2} (optimizer state)"));
    }

    [OpenMpiFact]
    public void Train_TwoRanksZero1_ResumedFromACheckpoint_BitIdenticalToUninterrupted_ChangedZeroRefused()
    {
        using var tmp = new TempDir();
        string model = MpiCliFixtures.InitModel(tmp), tokens = MpiCliFixtures.WriteTokens(tmp, rows: 4, seqLen: 32, seed: 2);
        string[] common = ["train", "--model", model, "--tokens", tokens, "--steps", "4", "--save-every", "2", "--schedule", "cosine", "--warmup", "1", "--mst-mlp", "auto", "--mst-lm", "auto", "--checkpoint", "on"];
        CliAssert.Ok(CliRunner.RunUnderMpirun(2, [.. common, "--zero", "1", "--save", tmp["straight"]]));
        string checkpoint = Path.Combine(tmp["straight"], "checkpoint-2");
        Assert.True(Directory.Exists(checkpoint));

        CliResult resumed = CliRunner.RunUnderMpirun(2, [.. common, "--zero", "1", "--save", tmp["resumed"], "--resume", checkpoint]);
        CliAssert.Ok(resumed);
        Assert.Equal(File.ReadAllBytes(Path.Combine(tmp["straight"], "model.safetensors")), File.ReadAllBytes(Path.Combine(tmp["resumed"], "model.safetensors")));
        Assert.Equal(File.ReadAllBytes(Path.Combine(tmp["straight"], "optimizer.safetensors")), File.ReadAllBytes(Path.Combine(tmp["resumed"], "optimizer.safetensors")));

        CliResult plain = CliRunner.RunUnderMpirun(2, [.. common, "--save", tmp["plain"], "--resume", checkpoint]);
        Assert.NotEqual(0, plain.ExitCode);
        Assert.Contains("zero is 1 in the checkpoint", plain.Stdout + plain.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Plan_RanksZero1_OptimizerStatePerRankHalved()
    {
        CliResult zero = CliRunner.Run("plan", "--config", "tiny", "--seq-len", "64", "--batch", "2", "--ranks", "2", "--zero", "1");
        CliResult plain = CliRunner.Run("plan", "--config", "tiny", "--seq-len", "64", "--batch", "2", "--ranks", "2");
        CliAssert.Ok(zero);
        CliAssert.Ok(plain);
        Assert.Contains("per rank of 2 (1 rows each), ZeRO-1: optimizer state ÷ 2", zero.Stdout, StringComparison.Ordinal);
        Assert.Contains("every rank the whole optimizer state", plain.Stdout, StringComparison.Ordinal);
        CliAssert.OneLineError(CliRunner.Run("plan", "--config", "tiny", "--seq-len", "64", "--batch", "3", "--ranks", "2"), "must be ≥ 1 and divide --batch 3");
    }

    [Fact]
    public void Train_OneProcess_Zero1IsANoOp_UnknownStageOneLine()
    {
        using var tmp = new TempDir();
        string model = MpiCliFixtures.InitModel(tmp), tokens = MpiCliFixtures.WriteTokens(tmp, rows: 2, seqLen: 16, seed: 3);
        CliResult r = CliRunner.Run("train", "--model", model, "--tokens", tokens, "--steps", "1", "--zero", "1");
        CliAssert.Ok(r);
        Assert.DoesNotContain("ZeRO", r.Stdout, StringComparison.Ordinal);
        CliAssert.OneLineError(CliRunner.Run("train", "--model", model, "--tokens", tokens, "--zero", "2"), "ZeRO-2 and 3 are not implemented");
    }
}
