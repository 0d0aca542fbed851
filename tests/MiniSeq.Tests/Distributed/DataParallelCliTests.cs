// Data parallel through the real executable under `mpirun -np 2`: the same weights (relative 1e-5 per tensor), losses
// and gradient norms as one process on the whole batch, with MsT + checkpointing, on a token file and on packed text
// with validation; rank 0 alone prints and writes; every rank resumes from the same checkpoint bit-identically; a batch
// that does not divide over the ranks is one line; every collective of the binding works (mpi-check, 3 ranks). Without
// mpirun: a plain run never loads MPI, and a missing, non-MPI or MPICH library is a one-line error naming it.
using System.Diagnostics;
using System.Text.Json;
using MiniSeq.Tests.Helpers;
using MiniSeq.Tests.Text;

namespace MiniSeq.Tests.Distributed;

public class DataParallelCliTests(Xunit.Abstractions.ITestOutputHelper output)
{
    private static int Count(string text, string what) => text.Split(what).Length - 1;

    private static void CompareMetrics(string actualPath, string expectedPath, params string[] fields)
    {
        List<JsonElement> actual = MpiCliFixtures.Metrics(actualPath), expected = MpiCliFixtures.Metrics(expectedPath);
        Assert.Equal(expected.Count, actual.Count);
        for (int i = 0; i < expected.Count; i++)
        {
            foreach (string field in fields)
            {
                if (expected[i].TryGetProperty(field, out JsonElement e))
                {
                    Compare.Close(actual[i].GetProperty(field).GetDouble(), e.GetDouble(), 1e-5, $"step {i + 1} {field}");
                }
            }
        }
    }

    [OpenMpiTheory]
    [InlineData("auto", "auto")]
    [InlineData("4", "3")]
    public void Train_TwoRanks_MsTCheckpointing_SameWeightsAndLossesAsOneProcess(string mlp, string lm)
    {
        using var tmp = new TempDir();
        string model = MpiCliFixtures.InitModel(tmp), tokens = MpiCliFixtures.WriteTokens(tmp, rows: 2, seqLen: 64, seed: 1);
        string[] common = ["train", "--model", model, "--tokens", tokens, "--steps", "3", "--lr", "1e-3", "--weight-decay", "0.1", "--grad-clip", "1", "--mst-mlp", mlp, "--mst-lm", lm, "--checkpoint", "on"];
        CliAssert.Ok(CliRunner.Run([.. common, "--save", tmp["one"], "--metrics", tmp["one.jsonl"]]));
        CliResult two = CliRunner.RunUnderMpirun(2, [.. common, "--save", tmp["two"], "--metrics", tmp["two.jsonl"]]);
        CliAssert.Ok(two);

        // Rank 0 alone speaks: one header, one summary.
        Assert.Contains("data parallel over 2 ranks (Open MPI ", two.Stdout, StringComparison.Ordinal);
        Assert.Equal(1, Count(two.Stdout, "MiniSeq train —"));
        Assert.Equal(1, Count(two.Stdout, "loss first → last"));
        Assert.Contains("1 of the 2 rows per rank", two.Stdout, StringComparison.Ordinal);

        double worst = MpiCliFixtures.CompareFiles(Path.Combine(tmp["two"], "model.safetensors"), Path.Combine(tmp["one"], "model.safetensors"), 1e-5);
        CompareMetrics(tmp["two.jsonl"], tmp["one.jsonl"], "loss", "grad_norm");
        Assert.Equal(3, MpiCliFixtures.Metrics(tmp["two.jsonl"]).Count);
        output.WriteLine(FormattableString.Invariant($"2 ranks against 1 process (mst-mlp {mlp}, mst-lm {lm}, checkpointing): largest per-tensor relative error {worst:E2}"));
    }

    [OpenMpiFact]
    public void Train_TwoRanksOnText_LossesAndValidationMatchOneProcess_RankZeroWritesTheCache()
    {
        using var tmp = new TempDir();
        CliAssert.Ok(CliRunner.Run("init", "--config", "tiny", "--tokenizer", TokenizerFiles.Directory("llama2"), "--out", tmp["m"]));
        Directory.CreateDirectory(tmp["data"]);
        var rng = new Random(3);
        string[] words = ["the", "model", "reads", "long", "sequences", "of", "text", "and", "learns", "to", "predict", "next", "token", "café", "日本語"];
        File.WriteAllText(tmp["data/corpus.txt"], string.Join("\n\n", Enumerable.Range(0, 40).Select(_ => string.Join(' ', Enumerable.Range(0, rng.Next(5, 60)).Select(_ => words[rng.Next(words.Length)])))) + "\n");
        string[] common = ["train", "--model", tmp["m"], "--data", tmp["data/corpus.txt"], "--split-blank-lines", "--seq-len", "64", "--batch", "4", "--steps", "4", "--val-fraction", "0.2", "--val-every", "2", "--checkpoint", "on"];

        CliResult two = CliRunner.RunUnderMpirun(2, [.. common, "--metrics", tmp["two.jsonl"], "--save", tmp["two"]]);
        CliAssert.Ok(two);
        Assert.True(File.Exists(tmp["data/.corpus.txt.miniseq-tokens"]), "no token cache beside the data");
        Assert.Equal(1, Count(two.Stdout, "validation:"));
        CliAssert.Ok(CliRunner.Run([.. common, "--metrics", tmp["one.jsonl"], "--save", tmp["one"]]));

        CompareMetrics(tmp["two.jsonl"], tmp["one.jsonl"], "loss", "grad_norm", "val_loss");
        Assert.Equal(2, MpiCliFixtures.Metrics(tmp["two.jsonl"]).Count(m => m.TryGetProperty("val_loss", out _)));
        MpiCliFixtures.CompareFiles(Path.Combine(tmp["two"], "model.safetensors"), Path.Combine(tmp["one"], "model.safetensors"), 1e-5);
    }

    [OpenMpiFact]
    public void Train_TwoRanks_ResumedFromACheckpoint_BitIdenticalToUninterrupted_OtherRankCountRefused()
    {
        using var tmp = new TempDir();
        string model = MpiCliFixtures.InitModel(tmp), tokens = MpiCliFixtures.WriteTokens(tmp, rows: 4, seqLen: 32, seed: 2);
        string[] common = ["train", "--model", model, "--tokens", tokens, "--steps", "4", "--save-every", "2", "--schedule", "cosine", "--warmup", "1", "--mst-mlp", "2", "--checkpoint", "on"];
        CliAssert.Ok(CliRunner.RunUnderMpirun(2, [.. common, "--save", tmp["straight"]]));
        Assert.True(Directory.Exists(Path.Combine(tmp["straight"], "checkpoint-2")));

        CliResult resumed = CliRunner.RunUnderMpirun(2, [.. common, "--save", tmp["resumed"], "--resume", Path.Combine(tmp["straight"], "checkpoint-2")]);
        CliAssert.Ok(resumed);
        Assert.Equal(1, Count(resumed.Stdout, "resumed from"));
        Assert.Equal(File.ReadAllBytes(Path.Combine(tmp["straight"], "model.safetensors")), File.ReadAllBytes(Path.Combine(tmp["resumed"], "model.safetensors")));
        Assert.Equal(File.ReadAllBytes(Path.Combine(tmp["straight"], "optimizer.safetensors")), File.ReadAllBytes(Path.Combine(tmp["resumed"], "optimizer.safetensors")));

        // The gradient sum order depends on the rank count: a resume keeps it.
        CliAssert.OneLineError(CliRunner.Run([.. common, "--save", tmp["one"], "--resume", Path.Combine(tmp["straight"], "checkpoint-2")]), "data_parallel_ranks");
    }

    [OpenMpiFact]
    public void Train_TwoRanks_BatchRowsNotDivisible_OneLineError()
    {
        using var tmp = new TempDir();
        string model = MpiCliFixtures.InitModel(tmp), tokens = MpiCliFixtures.WriteTokens(tmp, rows: 3, seqLen: 16, seed: 3);
        CliResult r = CliRunner.RunUnderMpirun(2, "train", "--model", model, "--tokens", tokens);
        Assert.NotEqual(0, r.ExitCode);

        // Ours is one line from rank 0; mpirun adds its own note on the aborted job.
        string[] ours = [.. r.Stdout.Split('\n').Concat(r.Stderr.Split('\n')).Where(l => l.Contains("miniseq: ", StringComparison.Ordinal))];
        Assert.True(ours.Length == 1, r.Stderr + r.Stdout);
        Assert.Contains("over 2 ranks", ours[0], StringComparison.Ordinal);
        Assert.Contains("has 3 rows", ours[0], StringComparison.Ordinal);
        Assert.DoesNotContain("Exception", r.Stderr + r.Stdout, StringComparison.Ordinal);
    }

    [OpenMpiFact]
    public void MpiCheck_ThreeRanks_EveryCollectiveOk()
    {
        CliResult r = CliRunner.RunUnderMpirun(3, "mpi-check");
        CliAssert.Ok(r);
        Assert.Equal(1, Count(r.Stdout, "mpi-check: Open MPI "));
        Assert.Contains("3 ranks", r.Stdout, StringComparison.Ordinal);
        Assert.Contains("— ok", r.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public void Train_NotStartedByMpirun_NeverLoadsMpi()
    {
        using var tmp = new TempDir();
        string model = MpiCliFixtures.InitModel(tmp), tokens = MpiCliFixtures.WriteTokens(tmp, rows: 3, seqLen: 16, seed: 4);
        CliResult r = CliRunner.RunWith(new Dictionary<string, string> { ["MINISEQ_MPI_LIBRARY"] = "/nonexistent/libmpi.so" }, "train", "--model", model, "--tokens", tokens);
        CliAssert.Ok(r);
        Assert.DoesNotContain("data parallel", r.Stdout, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("/nonexistent/libmpi.so", "apt-get install openmpi-bin libopenmpi-dev")]
    [InlineData("libc.so.6", "is not an MPI library")]
    public void Train_DistributedWithoutOpenMpi_OneLineErrorNamingWhatWasFound(string library, string mention)
    {
        using var tmp = new TempDir();
        string model = MpiCliFixtures.InitModel(tmp), tokens = MpiCliFixtures.WriteTokens(tmp, rows: 2, seqLen: 16, seed: 5);
        CliResult r = CliRunner.RunWith(new Dictionary<string, string> { ["MINISEQ_MPI_LIBRARY"] = library }, "train", "--model", model, "--tokens", tokens, "--distributed");
        CliAssert.OneLineError(r, mention);
        Assert.Contains(library, r.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Train_DistributedWithMpichAbiLibrary_OneLineErrorNamingIt()
    {
        // A stand-in for MPICH's libmpi.so.12: MPI_Init and MPICH's version line, none of Open MPI's globals.
        using var tmp = new TempDir();
        File.WriteAllText(tmp["fake.c"], """
            #include <string.h>
            int MPI_Init(int *argc, char ***argv) { return 0; }
            int MPI_Get_library_version(char *v, int *len) { strcpy(v, "MPICH Version:\t4.0.2\nMPICH Release date: 2022\n"); *len = (int)strlen(v); return 0; }
            """);
        try
        {
            using var cc = Process.Start(new ProcessStartInfo("cc", ["-shared", "-fPIC", "-o", tmp["libmpi.so.12"], tmp["fake.c"]]) { RedirectStandardError = true, UseShellExecute = false })!;
            cc.WaitForExit();
            if (cc.ExitCode != 0)
            {
                return; // no working C compiler: nothing to stand in for MPICH (the other library cases still run)
            }
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return;
        }

        string model = MpiCliFixtures.InitModel(tmp), tokens = MpiCliFixtures.WriteTokens(tmp, rows: 2, seqLen: 16, seed: 6);
        CliResult r = CliRunner.RunWith(new Dictionary<string, string> { ["MINISEQ_MPI_LIBRARY"] = tmp["libmpi.so.12"] }, "train", "--model", model, "--tokens", tokens, "--distributed");
        CliAssert.OneLineError(r, "MPICH Version: 4.0.2");
        Assert.Contains("supports Open MPI only", r.Stderr, StringComparison.Ordinal);
    }
}
