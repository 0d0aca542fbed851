// What a new user meets in the first hour, through the real executable: output directories are never wiped, bad
// numbers never become a saved model, configs that mean another computation are refused, errors are one line.
using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using MiniSeq.Tests.Helpers;

namespace MiniSeq.Tests.Cli;

public class CliSafetyTests
{
    private static void WriteTokens(string path, int seqLen, int seed = 1)
    {
        var rng = new Random(seed);
        int[][] ids = [Enumerable.Range(0, seqLen).Select(_ => rng.Next(256)).ToArray()];
        File.WriteAllText(path, JsonSerializer.Serialize(new Dictionary<string, object> { ["input_ids"] = ids }));
    }

    private static string[] Entries(string dir)
        => Directory.GetFileSystemEntries(dir).Select(e => Path.GetFileName(e) + (Directory.Exists(e) ? "/" : "")).Order(StringComparer.Ordinal).ToArray();

    /// <summary>A folder as a user has it: the model in m/, the tokens, a tokenizer, notes and a sub-folder.</summary>
    private static void MakeUserFolder(TempDir tmp)
    {
        Assert.Equal(0, CliRunner.Run("init", "--config", "tiny", "--out", tmp["m"]).ExitCode);
        WriteTokens(tmp["tokens.json"], 17);
        File.WriteAllText(tmp["tokenizer.json"], "{\"model\": {}}");
        File.WriteAllText(tmp["notes.txt"], "my notes");
        Directory.CreateDirectory(tmp["sub"]);
        File.WriteAllText(tmp["sub/data.bin"], "data");
    }

    [Fact]
    public void TrainSaveDot_NonEmptyFolder_RefusedBeforeTraining_NothingChanged()
    {
        using var tmp = new TempDir();
        MakeUserFolder(tmp);
        string[] before = Entries(tmp.Path);

        CliResult r = CliRunner.RunIn(tmp.Path, "train", "--model", "m", "--tokens", "tokens.json", "--steps", "1", "--save", ".");

        CliAssert.OneLineError(r, "--overwrite", StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("step 1", r.Stdout, StringComparison.Ordinal);
        Assert.Equal(before, Entries(tmp.Path));
    }

    [Fact]
    public void TrainSaveDot_Overwrite_WritesModelAndKeepsEveryOtherFile()
    {
        using var tmp = new TempDir();
        MakeUserFolder(tmp);

        CliResult r = CliRunner.RunIn(tmp.Path, "train", "--model", "m", "--tokens", "tokens.json", "--steps", "1", "--save", ".", "--overwrite");

        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Equal(["config.json", "m/", "model.safetensors", "notes.txt", "sub/", "tokenizer.json", "tokens.json"], Entries(tmp.Path));
        Assert.Equal("my notes", File.ReadAllText(tmp["notes.txt"]));
        Assert.Equal("{\"model\": {}}", File.ReadAllText(tmp["tokenizer.json"]));
        Assert.Equal("data", File.ReadAllText(tmp["sub/data.bin"]));
        Assert.Equal(["config.json", "model.safetensors"], Entries(tmp["m"]));
        Assert.Empty(Directory.GetDirectories(tmp.Path, ".*")); // no temporaries left
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Train_SaveIntoInputModelDirectory_AlwaysRefused(bool overwrite)
    {
        using var tmp = new TempDir();
        MakeUserFolder(tmp);
        File.WriteAllText(tmp["m/tokenizer.json"], "{}");
        byte[] weights = File.ReadAllBytes(tmp["m/model.safetensors"]);
        string[] args = ["train", "--model", "m", "--tokens", "tokens.json", "--save", "./m/"];

        CliResult r = CliRunner.RunIn(tmp.Path, overwrite ? [.. args, "--overwrite"] : args);

        CliAssert.OneLineError(r, "input model directory", StringComparison.OrdinalIgnoreCase);
        Assert.Equal(weights, File.ReadAllBytes(tmp["m/model.safetensors"]));
        Assert.True(File.Exists(tmp["m/tokenizer.json"]));
    }

    [Fact]
    public void Init_NonEmptyOut_RefusedUnlessOverwrite_WhichKeepsOtherFiles()
    {
        using var tmp = new TempDir();
        Directory.CreateDirectory(tmp["out"]);
        File.WriteAllText(tmp["out/tokenizer.json"], "{}");

        CliAssert.OneLineError(CliRunner.Run("init", "--config", "tiny", "--out", tmp["out"]), "not empty", StringComparison.OrdinalIgnoreCase);
        Assert.Equal(["tokenizer.json"], Entries(tmp["out"]));

        Assert.Equal(0, CliRunner.Run("init", "--config", "tiny", "--out", tmp["out"], "--overwrite").ExitCode);
        Assert.Equal(["config.json", "model.safetensors", "tokenizer.json"], Entries(tmp["out"]));
    }

    [Fact]
    public void Metrics_IntoTokenFile_Refused_FileUnchanged_AndMetricsLogAppends()
    {
        using var tmp = new TempDir();
        MakeUserFolder(tmp);
        byte[] tokens = File.ReadAllBytes(tmp["tokens.json"]);

        CliAssert.OneLineError(CliRunner.RunIn(tmp.Path, "train", "--model", "m", "--tokens", "tokens.json", "--metrics", "tokens.json"), "not a MiniSeq metrics log", StringComparison.OrdinalIgnoreCase);
        Assert.Equal(tokens, File.ReadAllBytes(tmp["tokens.json"]));

        Assert.Equal(0, CliRunner.RunIn(tmp.Path, "train", "--model", "m", "--tokens", "tokens.json", "--steps", "2", "--metrics", "log.jsonl").ExitCode);
        File.AppendAllText(tmp["log.jsonl"], "{\"step\":3,\"lo"); // a line cut short by a killed run
        Assert.Equal(0, CliRunner.RunIn(tmp.Path, "train", "--model", "m", "--tokens", "tokens.json", "--steps", "1", "--metrics", "log.jsonl").ExitCode);
        string[] lines = File.ReadAllLines(tmp["log.jsonl"]);
        Assert.Equal(4, lines.Length);
        Assert.Equal(1, JsonDocument.Parse(lines[3]).RootElement.GetProperty("step").GetInt32());
    }

    public static TheoryData<string[], string> BadNumbers => new()
    {
        { ["--lr", "NaN"], "--lr" },
        { ["--lr", "Infinity"], "--lr" },
        { ["--lr", "-0.001"], "--lr" },
        { ["--grad-clip", "-1"], "--grad-clip" },
        { ["--beta1", "1"], "--beta1" },
        { ["--beta2", "-0.5"], "--beta2" },
        { ["--eps", "0"], "--eps" },
        { ["--weight-decay", "NaN"], "--weight-decay" },
        { ["--time-limit", "0"], "--time-limit" },
        { ["--time-limit", "-5"], "--time-limit" },
        { ["--warmup", "-1"], "--warmup" },
    };

    [Theory]
    [MemberData(nameof(BadNumbers))]
    public void Train_BadNumericOption_RefusedUpFront_NoOutput(string[] option, string mention)
    {
        using var tmp = new TempDir();
        MakeUserFolder(tmp);

        CliResult r = CliRunner.RunIn(tmp.Path, ["train", "--model", "m", "--tokens", "tokens.json", "--save", "out", .. option]);

        CliAssert.OneLineError(r, mention, StringComparison.OrdinalIgnoreCase);
        Assert.False(Directory.Exists(tmp["out"]));
    }

    [Fact]
    public void Train_HugeLearningRate_LastStepChecked_NothingSaved()
    {
        using var tmp = new TempDir();
        MakeUserFolder(tmp);

        CliResult r = CliRunner.RunIn(tmp.Path, "train", "--model", "m", "--tokens", "tokens.json", "--steps", "1", "--lr", "1e30", "--save", "out");

        Assert.Equal(3, r.ExitCode);
        Assert.Contains("diverged", r.Stderr, StringComparison.Ordinal);
        Assert.Contains(".weight", r.Stderr, StringComparison.Ordinal); // names the tensor
        Assert.False(Directory.Exists(tmp["out"]));
        Assert.Empty(Directory.GetDirectories(tmp.Path, ".*"));
    }

    [Fact]
    public void Eval_NonFiniteWeights_OneLineNamingTheTensor()
    {
        using var tmp = new TempDir();
        MakeUserFolder(tmp);
        PoisonTensor(tmp["m/model.safetensors"], "model.layers.1.mlp.up_proj.weight");

        CliResult r = CliRunner.RunIn(tmp.Path, "eval", "--model", "m", "--tokens", "tokens.json");

        CliAssert.OneLineError(r, "not finite", StringComparison.OrdinalIgnoreCase);
        Assert.Contains("model.layers.1.mlp.up_proj.weight", r.Stderr, StringComparison.Ordinal);
    }

    // Writes NaN into the first element of one F32 tensor of a safetensors file.
    private static void PoisonTensor(string path, string name)
    {
        byte[] bytes = File.ReadAllBytes(path);
        long headerLength = BinaryPrimitives.ReadInt64LittleEndian(bytes);
        JsonNode header = JsonNode.Parse(Encoding.UTF8.GetString(bytes, 8, (int)headerLength))!;
        long begin = header[name]!["data_offsets"]![0]!.GetValue<long>();
        BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan((int)(8 + headerLength + begin)), float.NaN);
        File.WriteAllBytes(path, bytes);
    }

    public static TheoryData<string, string, string> UnsupportedConfigs => new()
    {
        { "hidden_act", "\"gelu\"", "hidden_act" },
        { "rope_scaling", "{\"rope_type\": \"yarn\", \"factor\": 4.0}", "rope_scaling.rope_type" },
        { "attention_bias", "true", "attention_bias" },
        { "model_type", "\"gemma2\"", "model_type" },
        { "use_sliding_window", "true", "use_sliding_window" },
        { "architectures", "[\"MistralForCausalLM\"]", "architectures" },
        { "sliding_window", "4096", "sliding_window" },
        { "attention_dropout", "0.1", "attention_dropout" },
        { "num_attention_heads", "65536", "2^32" },
    };

    [Theory]
    [MemberData(nameof(UnsupportedConfigs))]
    public void Config_FieldThatChangesTheComputation_RefusedNamingIt(string field, string json, string mention)
    {
        using var tmp = new TempDir();
        MakeUserFolder(tmp);
        JsonObject config = JsonNode.Parse(File.ReadAllText(tmp["m/config.json"]))!.AsObject();
        config[field] = JsonNode.Parse(json);
        if (field == "num_attention_heads")
        {
            config["num_key_value_heads"] = 65536;
            config["head_dim"] = 65536;
        }

        File.WriteAllText(tmp["m/config.json"], config.ToJsonString());

        CliAssert.OneLineError(CliRunner.RunIn(tmp.Path, "eval", "--model", "m", "--tokens", "tokens.json"), mention, StringComparison.OrdinalIgnoreCase);
        CliAssert.OneLineError(CliRunner.RunIn(tmp.Path, "plan", "--model", "m", "--seq-len", "1024"), mention, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public void Plan_TokensBeyond32BitRows_OneLineError()
        => CliAssert.OneLineError(CliRunner.Run("plan", "--config", "small", "--seq-len", "2000000000", "--batch", "2"), "2^31", StringComparison.OrdinalIgnoreCase);

    [Fact]
    public void UnknownCommand_SaysUnknownCommand()
    {
        CliAssert.OneLineError(CliRunner.Run("frobnicate"), "unknown command 'frobnicate'", StringComparison.OrdinalIgnoreCase);
        CliAssert.OneLineError(CliRunner.Run("bench", "frobnicate"), "unknown command 'frobnicate'", StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public void Budget_Alone_LetsThePlannerChoose_AndRuns()
    {
        // tiny at 8192 tokens: vanilla is predicted ≈ 107 MiB, mst+checkpoint ≈ 73 MiB (48 MiB of it the runtime).
        using var tmp = new TempDir();
        MakeUserFolder(tmp);
        WriteTokens(tmp["long.json"], 8192);

        CliResult r = CliRunner.RunIn(tmp.Path, "train", "--model", "m", "--tokens", "long.json", "--steps", "1", "--budget", "90MiB");

        Assert.True(r.ExitCode == 0, r.Stderr + r.Stdout);
        Assert.Contains(": chose mst", r.Stdout, StringComparison.Ordinal);
        Assert.DoesNotContain("chose vanilla", r.Stdout, StringComparison.Ordinal);
    }
}
