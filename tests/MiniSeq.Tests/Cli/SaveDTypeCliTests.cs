// --save-dtype through the real executable: init and train write BF16 weights (config.json says bfloat16) that load
// as the rounded fp32 weights; a train run with checkpoints keeps its resume point exact (DIR/checkpoint-STEP in F32,
// byte-identical to an F32 run's final save) and resumes from it; a BF16 export alone is refused by --resume; a bad
// value or --save-dtype without --save is a one-line error.
using System.Text.Json;
using MiniSeq.IO;
using MiniSeq.Model;
using MiniSeq.Tests.Helpers;
using MiniSeq.Training;

namespace MiniSeq.Tests.Cli;

public class SaveDTypeCliTests
{
    private static void WriteTokens(string path, int seqLen, int seed)
    {
        var rng = new Random(seed);
        int[][] ids = [Enumerable.Range(0, seqLen).Select(_ => rng.Next(256)).ToArray(), Enumerable.Range(0, seqLen).Select(_ => rng.Next(256)).ToArray()];
        File.WriteAllText(path, JsonSerializer.Serialize(new Dictionary<string, object> { ["input_ids"] = ids }));
    }

    private static string TorchDtype(string model)
    {
        using JsonDocument config = JsonDocument.Parse(File.ReadAllText(Path.Combine(model, ModelDirectory.ConfigFileName)));
        return config.RootElement.GetProperty("torch_dtype").GetString()!;
    }

    private static byte[] Bytes(string directory, string file) => File.ReadAllBytes(Path.Combine(directory, file));

    /// <summary>The BF16 model in <paramref name="rounded"/> loads as the weights of <paramref name="exact"/> rounded to bf16, bit for bit.</summary>
    private static void AssertIsRoundedCopy(string exact, string rounded)
    {
        Assert.Equal([SafeTensorsDType.F32], ModelDirectory.StoredDTypes(exact));
        Assert.Equal([SafeTensorsDType.BF16], ModelDirectory.StoredDTypes(rounded));
        Assert.Equal("float32", TorchDtype(exact));
        Assert.Equal("bfloat16", TorchDtype(rounded));
        using LlamaModel a = ModelDirectory.Load(exact), b = ModelDirectory.Load(rounded);
        float[] expected = Array.ConvertAll(a.Parameters.All.Span.ToArray(), v => SafeTensors.BFloat16ToFloat(SafeTensors.FloatToBFloat16(v)));
        Assert.True(expected.AsSpan().SequenceEqual(b.Parameters.All.Span), "the BF16 model is not the rounded F32 one");
    }

    [Fact]
    public void Init_SaveDTypeBf16_WritesRoundedWeightsAndBfloat16Config()
    {
        using var tmp = new TempDir();
        CliAssert.Ok(CliRunner.Run("init", "--config", "tiny", "--seed", "3", "--out", tmp["f32"]));
        CliResult r = CliRunner.Run("init", "--config", "tiny", "--seed", "3", "--out", tmp["bf16"], "--save-dtype", "bf16");
        CliAssert.Ok(r);
        Assert.Contains("BF16", r.Stdout, StringComparison.Ordinal);
        AssertIsRoundedCopy(tmp["f32"], tmp["bf16"]);
        long f32Bytes = new FileInfo(tmp["f32/model.safetensors"]).Length, bf16Bytes = new FileInfo(tmp["bf16/model.safetensors"]).Length;
        Assert.InRange(bf16Bytes, (f32Bytes / 2) - 4096, (f32Bytes / 2) + 4096);
    }

    [Fact]
    public void SaveDType_BadValueOrWithoutSave_OneLineErrorAndNothingWritten()
    {
        using var tmp = new TempDir();
        CliAssert.OneLineError(CliRunner.Run("init", "--config", "tiny", "--out", tmp["x"], "--save-dtype", "f16"), "--save-dtype must be f32 or bf16 (got 'f16')");
        Assert.False(Directory.Exists(tmp["x"]));

        CliAssert.Ok(CliRunner.Run("init", "--config", "tiny", "--out", tmp["m"]));
        WriteTokens(tmp["tokens.json"], 17, seed: 1);
        string[] train = ["train", "--model", tmp["m"], "--tokens", tmp["tokens.json"], "--steps", "1"];
        CliAssert.OneLineError(CliRunner.Run([.. train, "--save", tmp["out"], "--save-dtype", "fp8"]), "--save-dtype must be f32 or bf16 (got 'fp8')");
        CliAssert.OneLineError(CliRunner.Run([.. train, "--save-dtype", "bf16"]), "--save-dtype applies to --save DIR");
        Assert.False(Directory.Exists(tmp["out"]));
    }

    [Fact]
    public void Train_Bf16WithCheckpoints_FinalStateStaysExactF32AndResumesFromIt()
    {
        using var tmp = new TempDir();
        CliAssert.Ok(CliRunner.Run("init", "--config", "tiny", "--out", tmp["m"]));
        WriteTokens(tmp["tokens.json"], 33, seed: 1);
        string[] common = ["train", "--model", tmp["m"], "--tokens", tmp["tokens.json"], "--lr", "1e-3", "--save-every", "3", "--steps", "7"];
        string reference = tmp["f32"], save = tmp["bf16"];
        CliAssert.Ok(CliRunner.Run([.. common, "--save", reference]));
        CliAssert.Ok(CliRunner.Run([.. common, "--save", save, "--save-dtype", "bf16"]));

        // DIR: the rounded export only; the final training state: DIR/checkpoint-7, the F32 run's final save byte for byte.
        Assert.False(File.Exists(Path.Combine(save, TrainingCheckpoint.StateFileName)));
        Assert.False(File.Exists(Path.Combine(save, TrainingCheckpoint.TensorsFileName)));
        Assert.Equal([3, 6, 7], Checkpoints.List(save).Select(c => c.Step));
        string final = Path.Combine(save, "checkpoint-7");
        Assert.Equal(Bytes(reference, "model.safetensors"), Bytes(final, "model.safetensors"));
        Assert.Equal(Bytes(reference, "optimizer.safetensors"), Bytes(final, "optimizer.safetensors"));
        AssertIsRoundedCopy(reference, save);
        byte[] export = Bytes(save, "model.safetensors");

        // --resume DIR picks the newest exact checkpoint (DIR itself has no state): from step 6 to 7 again.
        Directory.Delete(final, recursive: true);
        CliResult resumed = CliRunner.Run([.. common, "--save", save, "--save-dtype", "bf16", "--resume", save]);
        CliAssert.Ok(resumed);
        Assert.Contains("at step 6", resumed.Stdout, StringComparison.Ordinal);
        Assert.Equal(Bytes(reference, "model.safetensors"), Bytes(final, "model.safetensors"));
        Assert.Equal(Bytes(reference, "optimizer.safetensors"), Bytes(final, "optimizer.safetensors"));
        Assert.Equal(export, Bytes(save, "model.safetensors"));
    }

    [Fact]
    public void Resume_FromBf16ExportWithoutCheckpoints_RefusedInOneLine()
    {
        using var tmp = new TempDir();
        CliAssert.Ok(CliRunner.Run("init", "--config", "tiny", "--out", tmp["m"]));
        WriteTokens(tmp["tokens.json"], 17, seed: 1);
        string[] train = ["train", "--model", tmp["m"], "--tokens", tmp["tokens.json"], "--steps", "2"];
        CliAssert.Ok(CliRunner.Run([.. train, "--save", tmp["out"], "--save-dtype", "bf16"]));
        Assert.Equal(["config.json", "model.safetensors"], Directory.GetFileSystemEntries(tmp["out"]).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        CliAssert.OneLineError(CliRunner.Run([.. train, "--save", tmp["out"], "--resume", tmp["out"]]), "without training state");
    }
}
