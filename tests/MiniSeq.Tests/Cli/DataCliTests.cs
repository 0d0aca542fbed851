// `train --data` and `eval --data` through the real executable: text packed into rows with a held-out validation
// split, metrics with validation loss and their chart, a token cache beside the data; a run on data killed with
// SIGKILL at random points and resumed is bit-identical to an uninterrupted one; changed data or tokenizer refuse a
// resume in one line; bad data is a one-line error that names the file and line.
using System.Diagnostics;
using MiniSeq.Tests.Helpers;
using MiniSeq.Tests.Text;
using MiniSeq.Training;

namespace MiniSeq.Tests.Cli;

public class DataCliTests
{
    /// <summary>Paragraphs of varied English (documents with --split-blank-lines).</summary>
    private static string Text(int paragraphs, int seed)
    {
        string[] words = ["the", "model", "reads", "long", "sequences", "of", "text", "and", "learns", "to", "predict", "next", "token", "memory", "grows", "slowly", "when", "chunks", "are", "small", "Shakespeare", "wrote", "sonnets", "in", "1609", "—", "café", "naïve", "日本語", "emoji 🙂"];
        var rng = new Random(seed);
        return string.Join("\n\n", Enumerable.Range(0, paragraphs).Select(_ => string.Join(' ', Enumerable.Range(0, rng.Next(5, 60)).Select(_ => words[rng.Next(words.Length)])) + ".")) + "\n";
    }

    private static string InitModel(TempDir tmp)
    {
        CliAssert.Ok(CliRunner.Run("init", "--config", "tiny", "--tokenizer", TokenizerFiles.Directory("llama2"), "--out", tmp["m"]));
        return tmp["m"];
    }

    [Fact]
    public void TrainOnText_PackedWithValidation_MetricsChartCacheAndEval()
    {
        using var tmp = new TempDir();
        string model = InitModel(tmp);
        Assert.True(File.Exists(Path.Combine(model, "tokenizer.json")));
        Directory.CreateDirectory(tmp["data"]);
        File.WriteAllText(tmp["data/corpus.txt"], Text(60, 1));
        string[] args = ["train", "--model", model, "--data", tmp["data/corpus.txt"], "--split-blank-lines", "--seq-len", "96", "--batch", "2", "--steps", "6", "--val-fraction", "0.1", "--val-every", "3", "--metrics", tmp["run.jsonl"], "--save", tmp["out"]];
        CliResult r = CliRunner.Run(args);
        CliAssert.Ok(r);
        Assert.Contains("documents", r.Stdout, StringComparison.Ordinal);
        Assert.Contains("validation:", r.Stdout, StringComparison.Ordinal);
        Assert.True(File.Exists(tmp["data/.corpus.txt.miniseq-tokens"]), "no token cache beside the data");
        string[] lines = File.ReadAllLines(tmp["run.jsonl"]);
        Assert.Equal(6, lines.Length);
        Assert.Equal(2, lines.Count(l => l.Contains("\"val_loss\"", StringComparison.Ordinal)));
        Assert.True(File.Exists(tmp["run.svg"]), "no chart next to the metrics");
        Assert.True(File.Exists(Path.Combine(tmp["out"], "model.safetensors")));

        // Again: read from the cache; a chart the user put there is never replaced.
        File.WriteAllText(tmp["run.svg"], "mine");
        r = CliRunner.Run([.. args[..^2], "--save", tmp["out2"]]);
        CliAssert.Ok(r);
        Assert.Contains("from cache", r.Stdout, StringComparison.Ordinal);
        Assert.Equal("mine", File.ReadAllText(tmp["run.svg"]));

        CliResult eval = CliRunner.Run("eval", "--model", tmp["out"], "--data", tmp["data/corpus.txt"], "--split-blank-lines", "--seq-len", "128");
        CliAssert.Ok(eval);
        Assert.Contains("\"perplexity\"", eval.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public void TrainOnData_KilledAtRandomPoints_Resumed_FinalModelBitIdentical()
    {
        using var tmp = new TempDir();
        string model = InitModel(tmp);
        File.WriteAllText(tmp["corpus.txt"], Text(40, 2));
        string[] Args(string save, params string[] extra) => ["train", "--model", model, "--data", tmp["corpus.txt"], "--split-blank-lines", "--seq-len", "64", "--batch", "2", "--steps", "60", "--save-every", "4", "--lr", "1e-3", "--schedule", "cosine", "--save", save, .. extra];
        CliAssert.Ok(CliRunner.Run(Args(tmp["ref"])));

        var random = new Random(Environment.TickCount);
        var log = new List<string>();
        for (int i = 0; i < 3; i++)
        {
            string save = tmp["run"];
            int before = Directory.Exists(save) ? Checkpoints.List(save).Count : 0;
            using Process process = CliRunner.StartBackground(i == 0 ? Args(save) : Args(save, "--resume", save));
            var clock = Stopwatch.StartNew();
            while (!process.HasExited && (!Directory.Exists(save) || Checkpoints.List(save).Count <= before) && clock.Elapsed < TimeSpan.FromMinutes(2))
            {
                Thread.Sleep(1);
            }

            Thread.Sleep(random.Next(0, 150));
            bool killed = !process.HasExited;
            if (killed)
            {
                process.Kill();
            }

            process.WaitForExit();
            log.Add($"killed={killed}");
        }

        Assert.Contains("killed=True", log);
        CliAssert.Ok(CliRunner.Run(Args(tmp["run"], "--resume", tmp["run"])));
        Assert.Equal(File.ReadAllBytes(Path.Combine(tmp["ref"], "model.safetensors")), File.ReadAllBytes(Path.Combine(tmp["run"], "model.safetensors")));

        // The same run on other data, or with another tokenizer, is refused in one line.
        File.AppendAllText(tmp["corpus.txt"], "\n\nA new paragraph.\n");
        CliAssert.OneLineError(CliRunner.Run(Args(tmp["run"], "--resume", tmp["run"])), "training_data is ");
        CliAssert.OneLineError(CliRunner.Run(Args(tmp["run"], "--resume", tmp["run"], "--tokenizer", TokenizerFiles.Directory("llama3"))), "tokenizer");
    }

    [Fact]
    public void ChatData_TrainsOnAssistantTurns_AndGenerateChatUsesTheTemplate()
    {
        using var tmp = new TempDir();
        CliAssert.Ok(CliRunner.Run("init", "--config", "tiny", "--tokenizer", TokenizerFiles.Directory("qwen3"), "--out", tmp["m"]));
        var lines = Enumerable.Range(0, 12).Select(i =>
            $$"""{"messages": [{"role": "user", "content": "What is {{i}} + {{i}}?"}, {"role": "assistant", "content": "{{2 * i}}"}]}""");
        File.WriteAllLines(tmp["chat.jsonl"], lines);
        CliResult r = CliRunner.Run("train", "--model", tmp["m"], "--data", tmp["chat.jsonl"], "--seq-len", "64", "--steps", "3", "--save", tmp["out"]);
        CliAssert.Ok(r);
        Assert.Contains("12 documents", r.Stdout, StringComparison.Ordinal);

        CliResult eval = CliRunner.Run("eval", "--model", tmp["out"], "--data", tmp["chat.jsonl"], "--seq-len", "64");
        CliAssert.Ok(eval);
        Assert.Contains("\"perplexity\"", eval.Stdout, StringComparison.Ordinal);

        CliResult g = CliRunner.Run("generate", "--model", tmp["out"], "--chat", "--prompt", "What is 2 + 2?", "--max-new-tokens", "4");
        CliAssert.Ok(g);
        Assert.Contains("16 prompt tokens", g.Stderr, StringComparison.Ordinal); // <|im_start|>user\n…<|im_end|>\n<|im_start|>assistant\n
    }

    [Fact]
    public void InitAndSave_WithTokenizer_NeverReplaceTheUsersTokenizerFiles()
    {
        using var tmp = new TempDir();
        Directory.CreateDirectory(tmp["m"]);
        File.WriteAllText(tmp["m/tokenizer.json"], "mine");
        CliAssert.OneLineError(CliRunner.Run("init", "--config", "tiny", "--tokenizer", TokenizerFiles.Directory("llama2"), "--out", tmp["m"]), "--overwrite");
        CliResult r = CliRunner.Run("init", "--config", "tiny", "--tokenizer", TokenizerFiles.Directory("llama2"), "--out", tmp["m"], "--overwrite");
        CliAssert.Ok(r);
        Assert.Contains("kept the existing", r.Stdout, StringComparison.Ordinal);
        Assert.Equal("mine", File.ReadAllText(tmp["m/tokenizer.json"]));
        Assert.True(File.Exists(tmp["m/tokenizer_config.json"]));
        Assert.True(File.Exists(tmp["m/config.json"]));
    }

    [Fact]
    public void Epochs_SetTheStepCountFromTheTrainingTokens()
    {
        using var tmp = new TempDir();
        string model = InitModel(tmp);
        File.WriteAllText(tmp["corpus.txt"], Text(30, 4));
        CliResult one = CliRunner.Run("train", "--model", model, "--data", tmp["corpus.txt"], "--split-blank-lines", "--seq-len", "64", "--steps", "1");
        CliAssert.Ok(one);
        long tokens = long.Parse(System.Text.RegularExpressions.Regex.Match(one.Stdout, @"documents, ([\d,]+) tokens per epoch").Groups[1].Value.Replace(",", "", StringComparison.Ordinal), System.Globalization.CultureInfo.InvariantCulture);
        long expected = (long)Math.Ceiling(2.5 * tokens / (2.0 * 64));
        CliResult r = CliRunner.Run("train", "--model", model, "--data", tmp["corpus.txt"], "--split-blank-lines", "--seq-len", "64", "--batch", "2", "--epochs", "2.5");
        CliAssert.Ok(r);
        Assert.Contains($"step {expected}/{expected}", r.Stdout, StringComparison.Ordinal);
        CliAssert.OneLineError(CliRunner.Run("train", "--model", model, "--data", tmp["corpus.txt"], "--epochs", "1", "--steps", "3"), "--epochs");
    }

    [Fact]
    public void BadData_OneLineErrors()
    {
        using var tmp = new TempDir();
        string model = InitModel(tmp);
        File.WriteAllText(tmp["bad.jsonl"], "{\"text\": \"fine\"}\n{\"text\": \"also fine\"}\nnot json\n");
        CliAssert.OneLineError(CliRunner.Run("train", "--model", model, "--data", tmp["bad.jsonl"], "--seq-len", "32", "--save", tmp["out"]), "line 3");
        Assert.False(Directory.Exists(tmp["out"]));

        File.WriteAllBytes(tmp["shard.u16"], [1, 0, 2]); // 1.5 tokens
        CliAssert.OneLineError(CliRunner.Run("train", "--model", model, "--data", tmp["shard.u16"], "--seq-len", "32"), "shard.u16");

        File.WriteAllText(tmp["a.txt"], "text");
        CliAssert.OneLineError(CliRunner.Run("train", "--model", model, "--data", tmp["a.txt"], "--tokens", tmp["a.txt"]), "alternatives");
        CliAssert.OneLineError(CliRunner.Run("train", "--model", model, "--data", tmp["a.txt"], "--val-every", "2"), "--val-every");
    }
}
