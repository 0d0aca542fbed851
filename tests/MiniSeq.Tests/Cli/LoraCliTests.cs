// A LoRA fine-tune through the real executable, end to end: train saves a PEFT adapter (the base directory is never
// written), a run stopped and resumed from its checkpoint ends with the same adapter bit for bit, merge writes a model
// whose loss equals the adapted model's, generate and eval take --adapter, and wrong combinations are one-line errors.
using System.Text.Json;
using MiniSeq.Tests.Helpers;

namespace MiniSeq.Tests.Cli;

public class LoraCliTests
{
    private static void WriteTokens(string path, int seqLen, int seed)
    {
        var rng = new Random(seed);
        int[][] ids = [Enumerable.Range(0, seqLen).Select(_ => rng.Next(256)).ToArray(), Enumerable.Range(0, seqLen).Select(_ => rng.Next(256)).ToArray()];
        File.WriteAllText(path, JsonSerializer.Serialize(new Dictionary<string, object> { ["input_ids"] = ids }));
    }

    private static string[] Train(TempDir tmp, string steps, string save, params string[] extra)
        => ["train", "--model", tmp["m"], "--tokens", tmp["tokens.json"], "--lr", "1e-2", "--lora-rank", "4", "--lora-alpha", "8", "--lora-targets", "q,v,gate,lm_head", "--steps", steps, "--save", save, .. extra];

    private static double EvalLoss(params string[] args)
    {
        CliResult r = CliRunner.Run(["eval", .. args]);
        CliAssert.Ok(r);
        using JsonDocument json = JsonDocument.Parse(r.Stdout[r.Stdout.IndexOf('{', StringComparison.Ordinal)..]);
        return json.RootElement.GetProperty("loss").GetDouble();
    }

    [Fact]
    public void TrainSaveResumeMergeGenerate_EndToEnd()
    {
        using var tmp = new TempDir();
        CliAssert.Ok(CliRunner.Run("init", "--config", "tiny", "--out", tmp["m"]));
        WriteTokens(tmp["tokens.json"], 33, seed: 3);
        byte[] baseWeights = File.ReadAllBytes(Path.Combine(tmp["m"], "model.safetensors"));

        // Uninterrupted: 6 steps with checkpoints; and the same run resumed from its step-3 checkpoint.
        CliAssert.Ok(CliRunner.Run(Train(tmp, "6", tmp["ref"], "--save-every", "3")));
        Assert.True(File.Exists(Path.Combine(tmp["ref"], "adapter_model.safetensors")));
        Assert.True(File.Exists(Path.Combine(tmp["ref"], "adapter_config.json")));
        Assert.False(File.Exists(Path.Combine(tmp["ref"], "model.safetensors")), "a LoRA run saves the adapter, not the base");
        CliAssert.Ok(CliRunner.Run(Train(tmp, "6", tmp["run"], "--save-every", "3", "--resume", Path.Combine(tmp["ref"], "checkpoint-3"))));
        Assert.Equal(File.ReadAllBytes(Path.Combine(tmp["ref"], "adapter_model.safetensors")), File.ReadAllBytes(Path.Combine(tmp["run"], "adapter_model.safetensors")));
        Assert.Equal(baseWeights, File.ReadAllBytes(Path.Combine(tmp["m"], "model.safetensors")));

        // Merge: the merged model computes the adapted model's loss.
        CliAssert.Ok(CliRunner.Run("merge", "--model", tmp["m"], "--adapter", tmp["ref"], "--out", tmp["merged"]));
        double adapted = EvalLoss("--model", tmp["m"], "--adapter", tmp["ref"], "--tokens", tmp["tokens.json"]);
        double merged = EvalLoss("--model", tmp["merged"], "--tokens", tmp["tokens.json"]);
        double plain = EvalLoss("--model", tmp["m"], "--tokens", tmp["tokens.json"]);
        Assert.True(Math.Abs(adapted - merged) <= 1e-5 * Math.Abs(adapted), $"adapted {adapted} vs merged {merged}");
        Assert.True(adapted < plain, $"training the adapter should lower the loss: {adapted} vs base {plain}");
        CliAssert.Ok(CliRunner.Run("generate", "--model", tmp["m"], "--adapter", tmp["ref"], "--prompt", "1,2,3", "--max-new-tokens", "4"));
    }

    [Fact]
    public void WrongCombinations_AreOneLineErrors()
    {
        using var tmp = new TempDir();
        CliAssert.Ok(CliRunner.Run("init", "--config", "tiny", "--out", tmp["m"]));
        WriteTokens(tmp["tokens.json"], 17, seed: 4);
        CliAssert.OneLineError(CliRunner.Run("train", "--model", tmp["m"], "--tokens", tmp["tokens.json"], "--lora-alpha", "4"), "--lora-rank");
        CliAssert.OneLineError(CliRunner.Run("train", "--model", tmp["m"], "--tokens", tmp["tokens.json"], "--lora-rank", "4", "--lora-targets", "q,embed"), "embed");
        CliAssert.OneLineError(CliRunner.Run("train", "--model", tmp["m"], "--tokens", tmp["tokens.json"], "--lora-rank", "0"), "--lora-rank");
        CliAssert.OneLineError(CliRunner.Run("train", "--model", tmp["m"], "--tokens", tmp["tokens.json"], "--lora-base-dtype", "bf16"), "--lora-rank");
        CliAssert.OneLineError(CliRunner.Run("train", "--model", tmp["m"], "--tokens", tmp["tokens.json"], "--lora-rank", "2", "--lora-base-dtype", "f16"), "--lora-base-dtype");

        // A bf16 base trains its adapters and saves them (the base directory is untouched).
        CliAssert.Ok(CliRunner.Run("train", "--model", tmp["m"], "--tokens", tmp["tokens.json"], "--lora-rank", "2", "--lora-base-dtype", "bf16", "--steps", "2", "--save", tmp["bf16"]));
        Assert.True(File.Exists(Path.Combine(tmp["bf16"], "adapter_model.safetensors")));

        // A full fine-tune's checkpoint cannot be resumed as a LoRA run (and the other way round).
        CliAssert.Ok(CliRunner.Run("train", "--model", tmp["m"], "--tokens", tmp["tokens.json"], "--steps", "2", "--save", tmp["full"], "--save-every", "1"));
        CliAssert.OneLineError(CliRunner.Run(Train(tmp, "3", tmp["full"], "--save-every", "1", "--resume", tmp["full"])), "lora");
        CliAssert.OneLineError(CliRunner.Run("merge", "--model", tmp["m"], "--adapter", tmp["m"], "--out", tmp["x"]), "adapter_config.json");
    }
}
