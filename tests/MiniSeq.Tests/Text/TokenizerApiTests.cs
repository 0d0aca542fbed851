using System.Text;
using MiniSeq.Text;

namespace MiniSeq.Tests.Text;

/// <summary>The public API around encode/decode, and the one-line errors for components MiniSeq does not support.</summary>
public sealed class TokenizerApiTests
{
    private const string TinyBpe = """
        "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "<unk>": 3}, "merges": ["a b"], "unk_token": "<unk>"}
        """;

    private static Tokenizer LoadJson(string json) => Tokenizer.Load(new MemoryStream(Encoding.UTF8.GetBytes(json)));

    [Fact]
    public void Special_ids_and_vocabulary_come_from_the_files()
    {
        Tokenizer llama3 = TokenizerFiles.Ours("llama3");
        Assert.Equal(128000, llama3.BosId);
        Assert.Equal(128001, llama3.EosId);
        Assert.Equal(128256, llama3.VocabSize);
        Assert.Equal(128000, llama3.TokenToId("<|begin_of_text|>"));
        Assert.Equal("<|begin_of_text|>", llama3.IdToToken(128000));
        Assert.Equal("Hello", llama3.IdToToken(9906));
        Assert.Null(llama3.TokenToId("no such token"));
        Assert.Null(llama3.IdToToken(-1));
        Assert.Null(llama3.IdToToken(1_000_000));

        Tokenizer llama2 = TokenizerFiles.Ours("llama2");
        Assert.Equal(1, llama2.BosId);
        Assert.Equal(2, llama2.EosId);
        Assert.True(llama2.AddBosToken);
        Assert.False(llama2.AddEosToken);
        Assert.Equal(32000, llama2.VocabSize);

        Tokenizer qwen3 = TokenizerFiles.Ours("qwen3");
        Assert.Null(qwen3.BosId);
        Assert.Equal(151645, qwen3.EosId);
    }

    [Fact]
    public void Add_special_tokens_and_skip_special_tokens()
    {
        Tokenizer llama2 = TokenizerFiles.Ours("llama2");
        int[] withBos = llama2.Encode("Hello world");
        int[] without = llama2.Encode("Hello world", addSpecialTokens: false);
        Assert.Equal([1, .. without], withBos);
        Assert.Equal("<s> Hello world", llama2.Decode(withBos));
        Assert.Equal("Hello world", llama2.Decode(withBos, skipSpecialTokens: true));

        Tokenizer llama3 = TokenizerFiles.Ours("llama3");
        int[] ids = llama3.Encode("<|begin_of_text|>Hi there");
        Assert.Equal(128000, ids[0]);
        Assert.Equal("<|begin_of_text|>Hi there", llama3.Decode(ids));
        Assert.Equal("Hi there", llama3.Decode(ids, skipSpecialTokens: true));
    }

    [Fact]
    public void Load_accepts_a_file_or_a_directory()
    {
        string dir = TokenizerFiles.Directory("llama2");
        Tokenizer fromFile = Tokenizer.Load(Path.Combine(dir, "tokenizer.json"));
        Tokenizer fromDir = Tokenizer.Load(dir);
        Assert.Equal(fromDir.Encode("files and directories"), fromFile.Encode("files and directories"));
        Assert.Equal(1, fromFile.BosId); // tokenizer_config.json next to the file is read too
        Assert.Throws<FileNotFoundException>(() => Tokenizer.Load(Path.Combine(dir, "missing.json")));
    }

    [Fact]
    public void A_minimal_bpe_file_with_unknown_characters()
    {
        Tokenizer t = LoadJson("{" + TinyBpe + "}");
        Assert.Equal([2, 0, 3, 3, 1], t.Encode("abaxyb")); // fuse_unk is false by default
        Assert.Equal("ab a <unk> b", t.Decode([2, 0, 3, 1])); // no decoder: tokens joined by spaces
        Tokenizer fused = LoadJson("{" + TinyBpe.Replace("\"unk_token\"", "\"fuse_unk\": true, \"unk_token\"", StringComparison.Ordinal) + "}");
        Assert.Equal([2, 0, 3, 1], fused.Encode("abaxyb"));
    }

    [Theory]
    [InlineData("\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}", "model", "WordPiece")]
    [InlineData("\"model\": {\"type\": \"Unigram\", \"vocab\": []}", "model", "Unigram")]
    [InlineData("\"model\": {\"type\": \"WordLevel\", \"vocab\": {}}", "model", "WordLevel")]
    [InlineData(TinyBpe + ", \"normalizer\": {\"type\": \"BertNormalizer\"}", "normalizer", "BertNormalizer")]
    [InlineData(TinyBpe + ", \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"Precompiled\"}]}", "normalizer", "Precompiled")]
    [InlineData(TinyBpe + ", \"pre_tokenizer\": {\"type\": \"Whitespace\"}", "pre_tokenizer", "Whitespace")]
    [InlineData(TinyBpe + ", \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"BertPreTokenizer\"}]}", "pre_tokenizer", "BertPreTokenizer")]
    [InlineData(TinyBpe + ", \"post_processor\": {\"type\": \"RobertaProcessing\"}", "post_processor", "RobertaProcessing")]
    [InlineData(TinyBpe + ", \"post_processor\": {\"type\": \"BertProcessing\"}", "post_processor", "BertProcessing")]
    [InlineData(TinyBpe + ", \"decoder\": {\"type\": \"WordPiece\"}", "decoder", "WordPiece")]
    [InlineData(TinyBpe + ", \"decoder\": {\"type\": \"CTC\"}", "decoder", "CTC")]
    [InlineData(TinyBpe + ", \"truncation\": {\"max_length\": 8}", "truncation", "")]
    public void Unsupported_components_are_one_line_errors(string fields, string component, string type)
    {
        var e = Assert.Throws<InvalidDataException>(() => LoadJson("{" + fields + "}"));
        Assert.Contains(component, e.Message, StringComparison.Ordinal);
        Assert.Contains(type, e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void Bpe_dropout_is_refused()
    {
        string json = "{" + TinyBpe.Replace("\"unk_token\"", "\"dropout\": 0.1, \"unk_token\"", StringComparison.Ordinal) + "}";
        var e = Assert.Throws<InvalidDataException>(() => LoadJson(json));
        Assert.Contains("dropout", e.Message, StringComparison.Ordinal);
    }
}
