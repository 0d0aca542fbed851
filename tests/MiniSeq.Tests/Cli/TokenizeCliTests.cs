using System.Text.Json;
using MiniSeq.Tests.Helpers;
using MiniSeq.Tests.Text;

namespace MiniSeq.Tests.Cli;

/// <summary>`miniseq tokenize`: encode and decode through the executable, checked against the library.</summary>
public sealed class TokenizeCliTests
{
    [Fact]
    public void Encodes_and_decodes_a_text_file()
    {
        string dir = TokenizerFiles.Directory("llama2");
        string work = Path.Combine(Path.GetTempPath(), $"miniseq-tokenize-cli-{Environment.ProcessId}");
        Directory.CreateDirectory(work);
        string textFile = Path.Combine(work, "text.txt");
        const string Text = "Hello world\r\n  tabs\tand émoji 😀";
        File.WriteAllText(textFile, Text);
        int[] expected = TokenizerFiles.Ours("llama2").Encode(Text);

        CliResult encoded = CliRunner.Run("tokenize", "--tokenizer", dir, "--text", textFile);
        Assert.True(encoded.ExitCode == 0, encoded.Stderr);
        int[] ids = JsonDocument.Parse(encoded.Stdout).RootElement.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        Assert.Equal(expected, ids);

        CliResult noSpecial = CliRunner.Run("tokenize", "--tokenizer", Path.Combine(dir, "tokenizer.json"), "--text", textFile, "--add-special-tokens", "false");
        Assert.True(noSpecial.ExitCode == 0, noSpecial.Stderr);
        Assert.Equal(expected[1..], JsonDocument.Parse(noSpecial.Stdout).RootElement.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()));

        string idsFile = Path.Combine(work, "ids.json");
        File.WriteAllText(idsFile, encoded.Stdout);
        CliResult decoded = CliRunner.Run("tokenize", "--tokenizer", dir, "--decode", idsFile, "--skip-special-tokens", "true");
        Assert.True(decoded.ExitCode == 0, decoded.Stderr);
        Assert.Equal(Text, JsonDocument.Parse(decoded.Stdout).RootElement.GetProperty("text").GetString());

        File.WriteAllText(idsFile, "[1, 15043]");
        CliResult list = CliRunner.Run("tokenize", "--tokenizer", dir, "--decode", idsFile);
        Assert.True(list.ExitCode == 0, list.Stderr);
        Assert.Equal(TokenizerFiles.Ours("llama2").Decode([1, 15043]), JsonDocument.Parse(list.Stdout).RootElement.GetProperty("text").GetString());
    }

    [Fact]
    public void Errors_are_one_line()
    {
        string dir = TokenizerFiles.Directory("llama2");
        string work = Path.Combine(Path.GetTempPath(), $"miniseq-tokenize-cli-errors-{Environment.ProcessId}");
        Directory.CreateDirectory(work);
        string bad = Path.Combine(work, "bad.json");
        File.WriteAllText(bad, "{\"ids\": [1, \"x\"]}");

        CliResult neither = CliRunner.Run("tokenize", "--tokenizer", dir);
        Assert.Equal(1, neither.ExitCode);
        Assert.Contains("exactly one of --text", neither.Stderr, StringComparison.Ordinal);

        CliResult badIds = CliRunner.Run("tokenize", "--tokenizer", dir, "--decode", bad);
        Assert.Equal(1, badIds.ExitCode);
        Assert.Contains("not an integer token id", badIds.Stderr, StringComparison.Ordinal);
        Assert.Single(badIds.Stderr.Trim().Split('\n'));

        File.WriteAllText(Path.Combine(work, "tokenizer.json"), "{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}");
        CliResult unigram = CliRunner.Run("tokenize", "--tokenizer", work, "--decode", bad);
        Assert.Equal(1, unigram.ExitCode);
        Assert.Contains("unsupported model type 'Unigram'", unigram.Stderr, StringComparison.Ordinal);
    }
}
