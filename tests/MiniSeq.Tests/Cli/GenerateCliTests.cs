// `miniseq generate` through the executable: id prompts on a `miniseq init` model (greedy equals the library's
// KV-cache generation, seeded sampling is reproducible), text prompts with a tokenizer, and one-line errors.
using System.Text.Json.Nodes;
using MiniSeq.Generation;
using MiniSeq.IO;
using MiniSeq.Model;
using MiniSeq.Tests.Helpers;
using MiniSeq.Tests.Text;

namespace MiniSeq.Tests.Cli;

public sealed class GenerateCliTests
{
    private static int[] Ids(CliResult r)
    {
        Assert.True(r.ExitCode == 0, r.Stderr);
        return r.Stdout.Split([' ', '\n', '\r'], StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).ToArray();
    }

    [Fact]
    public void Id_prompts_greedy_and_seeded_sampling()
    {
        using var tmp = new TempDir();
        Assert.Equal(0, CliRunner.Run("init", "--config", "tiny", "--seed", "5", "--out", tmp["m"]).ExitCode);

        int[] greedy = Ids(CliRunner.Run("generate", "--model", tmp["m"], "--prompt", "1, 2,3 4", "--max-new-tokens", "9"));
        Assert.Equal(9, greedy.Length);
        using (LlamaModel model = ModelDirectory.Load(tmp["m"]))
        using (var generator = new Generator(model, 13))
        {
            Assert.Equal(generator.Generate([1, 2, 3, 4], 9, new Sampler(new SamplerOptions())), greedy);
        }

        string[] sample = ["generate", "--model", tmp["m"], "--max-new-tokens", "12", "--temperature", "1.2", "--top-k", "40", "--top-p", "0.95", "--seed", "3"];
        File.WriteAllText(tmp["prompt.txt"], "7 8\n9\n");
        int[] a = Ids(CliRunner.Run([.. sample, "--prompt", "7 8 9"]));
        int[] b = Ids(CliRunner.Run([.. sample, "--prompt-file", tmp["prompt.txt"]]));
        Assert.Equal(12, a.Length);
        Assert.Equal(a, b);
        Assert.Equal(
            Ids(CliRunner.Run("generate", "--model", tmp["m"], "--prompt", "7 8 9", "--max-new-tokens", "12")),
            Ids(CliRunner.Run("generate", "--model", tmp["m"], "--prompt", "7 8 9", "--max-new-tokens", "12", "--temperature", "1.2", "--top-k", "1", "--seed", "3")));
    }

    [Fact]
    public void Text_prompt_with_a_tokenizer_prints_the_decoded_continuation()
    {
        using var tmp = new TempDir();
        File.WriteAllText(tmp["config.json"], """{"model_type": "llama", "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 32000, "max_position_embeddings": 64}""");
        Assert.Equal(0, CliRunner.Run("init", "--config", tmp["config.json"], "--out", tmp["m"]).ExitCode);
        string dir = TokenizerFiles.Directory("llama2");
        MiniSeq.Text.Tokenizer tokenizer = TokenizerFiles.Ours("llama2");
        const string Prompt = "Hello wörld";
        int[] prompt = tokenizer.Encode(Prompt);

        CliResult text = CliRunner.Run("generate", "--model", tmp["m"], "--tokenizer", dir, "--prompt", Prompt, "--max-new-tokens", "6", "--temperature", "1", "--seed", "1");
        Assert.True(text.ExitCode == 0, text.Stderr);
        int[] ids = Ids(CliRunner.Run("generate", "--model", tmp["m"], "--prompt", string.Join(",", prompt), "--max-new-tokens", "6", "--temperature", "1", "--seed", "1"));
        Assert.Equal(6, ids.Length);
        string expected = tokenizer.Decode([.. prompt, .. ids], skipSpecialTokens: true)[tokenizer.Decode(prompt, skipSpecialTokens: true).Length..];
        Assert.Equal(expected + "\n", text.Stdout.ReplaceLineEndings("\n"));
    }

    [Fact]
    public void Errors_are_one_line()
    {
        using var tmp = new TempDir();
        Assert.Equal(0, CliRunner.Run("init", "--config", "tiny", "--out", tmp["m"]).ExitCode);
        JsonNode config = JsonNode.Parse(File.ReadAllText(tmp["m/config.json"]))!;
        config["max_position_embeddings"] = 4;
        Directory.CreateDirectory(tmp["short"]);
        File.WriteAllText(tmp["short/config.json"], config.ToJsonString());
        File.Copy(tmp["m/model.safetensors"], tmp["short/model.safetensors"]);

        void Fails(string expected, params string[] args)
        {
            CliResult r = CliRunner.Run(["generate", .. args]);
            Assert.True(r.ExitCode != 0, r.Stdout);
            Assert.Contains(expected, r.Stderr, StringComparison.Ordinal);
            Assert.Single(r.Stderr.Trim().Split('\n'));
        }

        Fails("model directory not found", "--model", tmp["missing"], "--prompt", "1");
        Fails("the prompt is empty", "--model", tmp["m"], "--prompt", " , ");
        Fails("outside the model's vocabulary [0, 256)", "--model", tmp["m"], "--prompt", "1 256");
        Fails("'x' is not a token id", "--model", tmp["m"], "--prompt", "1 x");
        Fails("max_position_embeddings = 4", "--model", tmp["short"], "--prompt", "1 2 3 4 5");
        Fails("exactly one of --prompt", "--model", tmp["m"]);
        Fails("--top-p must be in (0, 1]", "--model", tmp["m"], "--prompt", "1", "--top-p", "1.5");

        // A prompt that fills max_position_embeddings leaves no room: nothing is generated.
        Assert.Empty(Ids(CliRunner.Run("generate", "--model", tmp["short"], "--prompt", "1 2 3 4")));
        Assert.Single(Ids(CliRunner.Run("generate", "--model", tmp["short"], "--prompt", "1 2 3", "--max-new-tokens", "5")));
    }
}
