// Ulysses sequence parallel through the real executable under `mpirun -np 2`: the same weights (relative 1e-5 per
// tensor) and losses as one process, with MsT + checkpointing and with sequence-chunked layers offloaded to disk; rank 0
// alone prints, with the Ulysses header line and the time in collectives; 4 ranks as 2 data-parallel replicas × 2
// Ulysses ranks; a --sequence-parallel P that does not divide the number of ranks is a one-line error.
using System.Text.Json;
using MiniSeq.IO;
using MiniSeq.Tests.Helpers;

namespace MiniSeq.Tests.Distributed;

public class SequenceParallelCliTests(Xunit.Abstractions.ITestOutputHelper output)
{
    private static void WriteTokens(string path)
    {
        var rng = new Random(3);
        int[][] ids = [.. Enumerable.Range(0, 2).Select(_ => Enumerable.Range(0, 64).Select(_ => rng.Next(256)).ToArray())];
        File.WriteAllText(path, JsonSerializer.Serialize(new Dictionary<string, object> { ["input_ids"] = ids, ["labels"] = ids.Select(r => r.Skip(1).Append(-100).ToArray()).ToArray() }));
    }

    [OpenMpiFact]
    public void Train_TwoRanks_MsTCheckpointing_SameWeightsAndLossesAsOneProcess()
    {
        using var tmp = new TempDir();
        CliAssert.Ok(CliRunner.Run("init", "--config", "tiny", "--out", tmp["m"]));
        WriteTokens(tmp["tokens.json"]);
        string[] common = ["train", "--model", tmp["m"], "--tokens", tmp["tokens.json"], "--steps", "3", "--lr", "1e-3", "--weight-decay", "0.1", "--grad-clip", "1", "--mst-mlp", "2", "--mst-lm", "3", "--checkpoint", "on"];
        CliAssert.Ok(CliRunner.Run([.. common, "--save", tmp["one"], "--metrics", tmp["one.jsonl"]]));
        CliResult two = CliRunner.RunUnderMpirun(2, [.. common, "--sequence-parallel", "2", "--save", tmp["two"], "--metrics", tmp["two.jsonl"]]);
        CliAssert.Ok(two);
        Assert.Contains("Ulysses sequence parallel over 2 ranks (Open MPI ", two.Stdout, StringComparison.Ordinal);
        Assert.Contains("32 of the 64 positions of every row per rank", two.Stdout, StringComparison.Ordinal);
        Assert.Equal(1, two.Stdout.Split("MiniSeq train —").Length - 1);

        using SafeTensorsReader actual = SafeTensorsReader.Open(Path.Combine(tmp["two"], "model.safetensors"));
        using SafeTensorsReader expected = SafeTensorsReader.Open(Path.Combine(tmp["one"], "model.safetensors"));
        double worst = 0;
        foreach (SafeTensorInfo t in expected.Tensors)
        {
            double error = Compare.RelativeError(actual.ReadFloat32(t.Name), expected.ReadFloat32(t.Name));
            Assert.True(error <= 1e-5, $"{t.Name}: relative error {error:E3}");
            worst = Math.Max(worst, error);
        }

        List<JsonElement> a = MpiCliFixtures.Metrics(tmp["two.jsonl"]), e = MpiCliFixtures.Metrics(tmp["one.jsonl"]);
        Assert.Equal(3, a.Count);
        for (int i = 0; i < 3; i++)
        {
            Compare.Close(a[i].GetProperty("loss").GetDouble(), e[i].GetProperty("loss").GetDouble(), 1e-5, $"step {i + 1} loss");
            Compare.Close(a[i].GetProperty("grad_norm").GetDouble(), e[i].GetProperty("grad_norm").GetDouble(), 1e-5, $"step {i + 1} grad_norm");
        }

        output.WriteLine(FormattableString.Invariant($"Ulysses 2 ranks against 1 process: largest per-tensor relative error {worst:E2}"));
    }

    // Sequence-chunked layers with their inputs offloaded to disk, under Ulysses with ZeRO-1: every rank's own offload
    // file, none left; the same weights and losses as one process with the same policy; the time in collectives in
    // every metrics line and the summary.
    [OpenMpiFact]
    public void Train_TwoRanks_SequenceChunkedOffloadZeroOne_SameAsOneProcess_CollectivesTimed()
    {
        using var tmp = new TempDir();
        CliAssert.Ok(CliRunner.Run("init", "--config", "tiny", "--out", tmp["m"]));
        WriteTokens(tmp["tokens.json"]);
        Directory.CreateDirectory(tmp["off"]);
        string[] common = ["train", "--model", tmp["m"], "--tokens", tmp["tokens.json"], "--steps", "3", "--lr", "1e-3", "--mst-mlp", "2", "--mst-lm", "3", "--seq-chunk", "10", "--offload", "disk:" + tmp["off"]];
        CliAssert.Ok(CliRunner.Run([.. common, "--save", tmp["one"], "--metrics", tmp["one.jsonl"]]));
        CliResult two = CliRunner.RunUnderMpirun(2, [.. common, "--sequence-parallel", "2", "--zero", "1", "--save", tmp["two"], "--metrics", tmp["two.jsonl"]]);
        CliAssert.Ok(two);
        Assert.Contains("+chunked(10)+offload", two.Stdout, StringComparison.Ordinal);
        Assert.Contains("ZeRO-1: optimizer state", two.Stdout, StringComparison.Ordinal);
        Assert.Contains("time in collectives after the first step (rank 0)", two.Stdout, StringComparison.Ordinal);
        Assert.Empty(Directory.EnumerateFileSystemEntries(tmp["off"]));

        MpiCliFixtures.CompareFiles(Path.Combine(tmp["two"], "model.safetensors"), Path.Combine(tmp["one"], "model.safetensors"), 1e-5);

        List<JsonElement> a = MpiCliFixtures.Metrics(tmp["two.jsonl"]), e = MpiCliFixtures.Metrics(tmp["one.jsonl"]);
        for (int i = 0; i < 3; i++)
        {
            Compare.Close(a[i].GetProperty("loss").GetDouble(), e[i].GetProperty("loss").GetDouble(), 1e-5, $"step {i + 1} loss");
            Assert.True(a[i].GetProperty("all_to_all_s").GetDouble() > 0, "all-to-all time");
            Assert.True(a[i].GetProperty("comm_s").GetDouble() >= a[i].GetProperty("all_to_all_s").GetDouble(), "time in collectives");
            Assert.False(e[i].TryGetProperty("comm_s", out _), "one process has no collectives");
        }
    }

    // Data × sequence parallel through mpirun: 4 ranks = 2 replicas × 2 Ulysses ranks, one row each; the same weights
    // and losses as one process with both rows.
    [OpenMpiFact]
    public void Train_FourRanks_DataTimesSequence_SameAsOneProcess()
    {
        using var tmp = new TempDir();
        CliAssert.Ok(CliRunner.Run("init", "--config", "tiny", "--out", tmp["m"]));
        WriteTokens(tmp["tokens.json"]);
        string[] common = ["train", "--model", tmp["m"], "--tokens", tmp["tokens.json"], "--steps", "2", "--lr", "1e-3", "--mst-mlp", "2", "--mst-lm", "3", "--checkpoint", "on"];
        CliAssert.Ok(CliRunner.Run([.. common, "--save", tmp["one"], "--metrics", tmp["one.jsonl"]]));
        CliResult four = CliRunner.RunUnderMpirun(4, [.. common, "--sequence-parallel", "2", "--save", tmp["four"], "--save-every", "2", "--metrics", tmp["four.jsonl"]]);
        CliAssert.Ok(four);
        Assert.Contains("\"sequence_parallel\": \"2\"", File.ReadAllText(Path.Combine(tmp["four"], "checkpoint-2", "trainer_state.json")), StringComparison.Ordinal);
        Assert.Contains("Ulysses sequence parallel over 2 ranks (Open MPI ", four.Stdout, StringComparison.Ordinal);
        Assert.Contains("× 2 data-parallel replicas (1 of the 2 rows each)", four.Stdout, StringComparison.Ordinal);
        Assert.Contains("data × sequence parallel (2 × 2)", four.Stdout, StringComparison.Ordinal);

        MpiCliFixtures.CompareFiles(Path.Combine(tmp["four"], "model.safetensors"), Path.Combine(tmp["one"], "model.safetensors"), 1e-5);

        List<JsonElement> a = MpiCliFixtures.Metrics(tmp["four.jsonl"]), e = MpiCliFixtures.Metrics(tmp["one.jsonl"]);
        for (int i = 0; i < 2; i++)
        {
            Compare.Close(a[i].GetProperty("loss").GetDouble(), e[i].GetProperty("loss").GetDouble(), 1e-5, $"step {i + 1} loss");
        }
    }

    [OpenMpiFact]
    public void Train_SequenceParallelNotTheRankCount_OneLineError()
    {
        using var tmp = new TempDir();
        CliAssert.Ok(CliRunner.Run("init", "--config", "tiny", "--out", tmp["m"]));
        WriteTokens(tmp["tokens.json"]);
        CliResult r = CliRunner.RunUnderMpirun(2, "train", "--model", tmp["m"], "--tokens", tmp["tokens.json"], "--steps", "1", "--sequence-parallel", "4");
        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains("--sequence-parallel 4 needs a number of MPI ranks that 4 divides", r.Stderr + r.Stdout, StringComparison.Ordinal);
        Assert.DoesNotContain("Exception", r.Stderr + r.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public void Train_SequenceParallelZero_OneLineError()
    {
        using var tmp = new TempDir();
        CliAssert.Ok(CliRunner.Run("init", "--config", "tiny", "--out", tmp["m"]));
        WriteTokens(tmp["tokens.json"]);
        CliAssert.OneLineError(CliRunner.Run("train", "--model", tmp["m"], "--tokens", tmp["tokens.json"], "--steps", "1", "--sequence-parallel", "0"), "--sequence-parallel 0 must be ≥ 1");
    }
}
