// --precision through the real executable: a bf16 run records its precision in the metrics and the checkpoints,
// resumes bit-exactly (the bf16 compute weights are rounded again from the restored fp32 masters), refuses a resume in
// another precision, and differs from fp32; LoRA with bf16 precision and a bad value are one-line errors; plan knows it.
using MiniSeq.Tests.Helpers;

namespace MiniSeq.Tests.Cli;

public class PrecisionCliTests
{
    private static void WriteTokens(string path, int seqLen, int seed)
    {
        var rng = new Random(seed);
        int[][] ids = [Enumerable.Range(0, seqLen).Select(_ => rng.Next(256)).ToArray(), Enumerable.Range(0, seqLen).Select(_ => rng.Next(256)).ToArray()];
        File.WriteAllText(path, System.Text.Json.JsonSerializer.Serialize(new Dictionary<string, object> { ["input_ids"] = ids }));
    }

    private static byte[] Bytes(string directory, string file) => File.ReadAllBytes(Path.Combine(directory, file));

    [Fact]
    public void Train_PrecisionBf16_RecordedResumesBitExactAndDiffersFromFp32()
    {
        using var tmp = new TempDir();
        CliAssert.Ok(CliRunner.Run("init", "--config", "tiny", "--out", tmp["m"]));
        WriteTokens(tmp["tokens.json"], 33, seed: 2);
        string[] common = ["train", "--model", tmp["m"], "--tokens", tmp["tokens.json"], "--lr", "1e-2", "--save-every", "2", "--steps", "4", "--checkpoint", "on"];
        CliResult bf16 = CliRunner.Run([.. common, "--precision", "bf16", "--save", tmp["bf16"], "--metrics", tmp["bf16.jsonl"]]);
        CliAssert.Ok(bf16);
        CliAssert.Ok(CliRunner.Run([.. common, "--save", tmp["fp32"]]));
        Assert.All(File.ReadAllLines(tmp["bf16.jsonl"]).Where(l => l.Contains("\"step\"", StringComparison.Ordinal)), l => Assert.Contains("\"precision\":\"bf16\"", l, StringComparison.Ordinal));
        Assert.Equal("bf16", MiniSeq.Training.TrainingCheckpoint.ReadState(tmp["bf16"]).Run!["precision"]);
        Assert.NotEqual(Bytes(tmp["fp32"], "model.safetensors"), Bytes(tmp["bf16"], "model.safetensors"));

        // Resume from step 2: the same fp32 masters and optimizer state at step 4, byte for byte.
        string from = Path.Combine(tmp["bf16"], "checkpoint-2");
        CliAssert.Ok(CliRunner.Run([.. common, "--precision", "bf16", "--save", tmp["resumed"], "--resume", from]));
        Assert.Equal(Bytes(tmp["bf16"], "model.safetensors"), Bytes(tmp["resumed"], "model.safetensors"));
        Assert.Equal(Bytes(tmp["bf16"], "optimizer.safetensors"), Bytes(tmp["resumed"], "optimizer.safetensors"));

        CliAssert.OneLineError(CliRunner.Run([.. common, "--save", tmp["fp32again"], "--resume", from]), "precision is bf16 in the checkpoint");
    }

    [Fact]
    public void Precision_BadValueOrWithLora_OneLineError()
    {
        using var tmp = new TempDir();
        CliAssert.Ok(CliRunner.Run("init", "--config", "tiny", "--out", tmp["m"]));
        WriteTokens(tmp["tokens.json"], 17, seed: 1);
        string[] train = ["train", "--model", tmp["m"], "--tokens", tmp["tokens.json"], "--steps", "1"];
        CliAssert.OneLineError(CliRunner.Run([.. train, "--precision", "fp16"]), "--precision must be fp32 or bf16 (got 'fp16')");
        CliAssert.OneLineError(CliRunner.Run([.. train, "--precision", "bf16", "--lora-rank", "4"]), "--precision bf16 does not combine with LoRA");
    }

    [Fact]
    public void Plan_PrecisionBf16_ShowsBf16LayerInputsAndTitle()
    {
        CliResult r = CliRunner.Run("plan", "--config", "tiny", "--seq-len", "1024", "--precision", "bf16");
        CliAssert.Ok(r);
        Assert.Contains("; bf16", r.Stdout, StringComparison.Ordinal);
        Assert.Contains("+checkpoint+bf16]", r.Stdout, StringComparison.Ordinal);
    }
}
