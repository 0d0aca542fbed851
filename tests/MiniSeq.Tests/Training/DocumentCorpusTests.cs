// The document corpus: every input kind, its one-line errors, the token cache (hit, invalidation, foreign files,
// temporaries of dead writers), directory expansion and the 64-bit offset arithmetic.
using System.Buffers.Binary;
using System.Text;
using System.Text.Json.Nodes;
using MiniSeq.Tests.Helpers;
using MiniSeq.Tests.Text;
using MiniSeq.Text;
using MiniSeq.Training.Data;

namespace MiniSeq.Tests.Training;

public sealed class DocumentCorpusTests
{
    private const int Bos = 128000, Eos = 128001;

    private static Tokenizer Llama3 => TokenizerFiles.Ours("llama3");

    // The committed Llama 3 tokenizer adds no BOS (post-processor ByteLevel only); Meta's own adds it with a template.
    private static readonly Lazy<string> s_llama3WithBosJson = new(() =>
    {
        JsonNode json = JsonNode.Parse(File.ReadAllText(Path.Combine(TokenizerFiles.Directory("llama3"), "tokenizer.json")))!;
        JsonNode byteLevel = json["post_processor"]!.DeepClone();
        json["post_processor"] = JsonNode.Parse("""
            {"type": "Sequence", "processors": [
              {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
               "pair": [], "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [128000], "tokens": ["<|begin_of_text|>"]}}}]}
            """);
        json["post_processor"]!["processors"]!.AsArray().Insert(0, byteLevel);
        return json.ToJsonString();
    });

    /// <summary>Llama 3 with Meta's BOS template, written into <paramref name="tmp"/> (so removed with it).</summary>
    private static Tokenizer Llama3WithBos(TempDir tmp)
    {
        string directory = tmp["tokenizer-bos"];
        Directory.CreateDirectory(directory);
        File.WriteAllText(Path.Combine(directory, "tokenizer.json"), s_llama3WithBosJson.Value);
        File.Copy(Path.Combine(TokenizerFiles.Directory("llama3"), "tokenizer_config.json"), Path.Combine(directory, "tokenizer_config.json"));
        return Tokenizer.Load(directory);
    }

    private static CorpusOptions Options(int vocabSize = 128256) => new() { VocabSize = vocabSize };

    private static DocumentCorpus Load(string path, CorpusOptions? options = null, Tokenizer? tokenizer = null, IProgress<CorpusProgress>? progress = null)
        => DocumentCorpus.Load([path], tokenizer ?? Llama3, options ?? Options(), progress);

    private static int[] Expected(string text) => [.. Llama3.Encode(text, addSpecialTokens: true), Eos];

    private static int[][] Documents(DocumentCorpus corpus)
    {
        var documents = new int[corpus.DocumentCount][];
        for (long i = 0; i < corpus.DocumentCount; i++)
        {
            documents[i] = corpus.Document(i).ToArray();
        }

        return documents;
    }

    private static string LlmcShard(string path, int magic, int version, int[] tokens, int? headerCount = null, int dropBytes = 0)
    {
        int size = version == 1 ? 2 : 4;
        byte[] bytes = new byte[1024 + (tokens.Length * size)];
        BinaryPrimitives.WriteInt32LittleEndian(bytes, magic);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(4), version);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(8), headerCount ?? tokens.Length);
        for (int i = 0; i < tokens.Length; i++)
        {
            if (size == 2)
            {
                BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(1024 + (2 * i)), (ushort)tokens[i]);
            }
            else
            {
                BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(1024 + (4 * i)), (uint)tokens[i]);
            }
        }

        File.WriteAllBytes(path, bytes[..^dropBytes]);
        return path;
    }

    private static string Raw(string path, int size, params int[] tokens)
    {
        byte[] bytes = new byte[tokens.Length * size];
        for (int i = 0; i < tokens.Length; i++)
        {
            if (size == 2)
            {
                BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(2 * i), (ushort)tokens[i]);
            }
            else
            {
                BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(4 * i), (uint)tokens[i]);
            }
        }

        File.WriteAllBytes(path, bytes);
        return path;
    }

    private sealed class Recorder : IProgress<CorpusProgress>
    {
        public List<string> Warnings { get; } = [];

        public void Report(CorpusProgress value)
        {
            if (value.Warning is not null)
            {
                Warnings.Add(value.Warning);
            }
        }
    }

    [Fact]
    public void Load_TextFile_IsOneDocumentWithBosAndEos()
    {
        using var tmp = new TempDir();
        File.WriteAllText(tmp["a.txt"], "Hello world.\n\nSecond paragraph.\n");
        using DocumentCorpus corpus = Load(tmp["a.txt"]);
        Assert.Equal(1, corpus.DocumentCount);
        int[] tokens = corpus.Document(0).ToArray();
        Assert.Equal(Expected("Hello world.\n\nSecond paragraph.\n"), tokens);
        using DocumentCorpus withBos = Load(tmp["a.txt"], tokenizer: Llama3WithBos(tmp));
        Assert.Equal([Bos, .. tokens], withBos.Document(0).ToArray());
        Assert.Equal(tokens.Length, corpus.TokenCount);
        Assert.False(corpus.HasTrainableMask);
        Assert.All(corpus.Trainable(0).ToArray(), b => Assert.Equal(1, b));
        Assert.Equal(tokens.Length, corpus.Trainable(0).Length);
        Assert.Equal(CorpusSourceKind.Text, corpus.Sources[0].Kind);
    }

    [Fact]
    public void Load_SplitOnBlankLines_SeparatesDocumentsAtOneOrMoreBlankLines()
    {
        using var tmp = new TempDir();
        File.WriteAllBytes(tmp["a.txt"], Encoding.UTF8.GetBytes("\uFEFFfirst line\nstill first\n\n\r\n\nsecond\r\n\r\nthird\r\nend"));
        using DocumentCorpus corpus = Load(tmp["a.txt"], Options() with { SplitOnBlankLines = true });
        Assert.Equal([Expected("first line\nstill first"), Expected("second"), Expected("third\r\nend")], Documents(corpus));
    }

    [Fact]
    public void Load_InvalidUtf8_NamesTheByteOffset()
    {
        using var tmp = new TempDir();
        File.WriteAllBytes(tmp["a.txt"], [0xEF, 0xBB, 0xBF, (byte)'o', (byte)'k', (byte)'\n', (byte)'a', 0xFF, (byte)'b']);
        var e = Assert.Throws<InvalidDataException>(() => Load(tmp["a.txt"], Options() with { SplitOnBlankLines = true }));
        Assert.Equal($"{tmp["a.txt"]}: invalid UTF-8 at byte offset 7. Save the file as UTF-8 (e.g. iconv -f LATIN1 -t UTF-8), or remove the bytes", e.Message);
        Assert.Contains("byte offset 7", Assert.Throws<InvalidDataException>(() => Load(tmp["a.txt"])).Message);
        File.WriteAllBytes(tmp["a.jsonl"], [.. "{\"text\": \"ok\"}\n{\"text\": \"a"u8, 0xC3, (byte)'"', (byte)'}']);
        Assert.StartsWith($"{tmp["a.jsonl"]} line 2: invalid UTF-8 at byte offset 26.", Assert.Throws<InvalidDataException>(() => Load(tmp["a.jsonl"])).Message);
    }

    [Fact]
    public void Load_JsonLines_TextPerLine_BlankLinesSkipped_OtherKeysIgnored()
    {
        using var tmp = new TempDir();
        File.WriteAllText(tmp["a.jsonl"], "{\"text\": \"one\"}\n\n  \r\n{\"id\": 7, \"text\": \"two \\u00e9\", \"meta\": {\"x\": [1]}}\r\n{\"text\":\"three\"}");
        using DocumentCorpus corpus = Load(tmp["a.jsonl"]);
        Assert.Equal([Expected("one"), Expected("two é"), Expected("three")], Documents(corpus));
        Assert.Equal(CorpusSourceKind.JsonLines, corpus.Sources[0].Kind);
    }

    [Theory]
    [InlineData("not json", "not valid JSON")]
    [InlineData("[1, 2]", "a JSON StartArray, not an object")]
    [InlineData("{\"txt\": \"typo\"}", "has neither a \"text\" string nor a \"messages\" list")]
    [InlineData("{\"text\": 5}", "\"text\" is a JSON Number, not a string")]
    [InlineData("{\"text\": \"a\"} {\"text\": \"b\"}", "not valid JSON")]
    [InlineData("{\"messages\": [{\"role\": \"user\"}]}", "messages[0] has no \"content\" string")]
    public void Load_JsonLines_BadLine_NamesLine3(string line, string problem)
    {
        using var tmp = new TempDir();
        File.WriteAllText(tmp["a.jsonl"], "{\"text\": \"one\"}\n\n" + line + "\n{\"text\": \"four\"}\n");
        var e = Assert.Throws<InvalidDataException>(() => Load(tmp["a.jsonl"]));
        Assert.StartsWith($"{tmp["a.jsonl"]} line 3: ", e.Message);
        Assert.Contains(problem, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void Load_ChatMessagesWithoutRenderer_SaysATokenizerWithAChatTemplateIsNeeded()
    {
        using var tmp = new TempDir();
        File.WriteAllText(tmp["a.jsonl"], "{\"text\": \"one\"}\n{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\n");
        var e = Assert.Throws<InvalidDataException>(() => Load(tmp["a.jsonl"]));
        Assert.StartsWith($"{tmp["a.jsonl"]} line 2: chat messages need a tokenizer with a chat_template (tokenizer_config.json).", e.Message);
    }

    // A stand-in for the chat template: the prompt is not trainable, the answer is.
    private static IReadOnlyList<(string, bool)> Render(IReadOnlyList<(string Role, string Content)> messages, bool withBos)
    {
        var segments = new List<(string, bool)>();
        foreach ((string role, string content) in messages)
        {
            string head = segments.Count == 0 && withBos ? "<|begin_of_text|>" : "";
            segments.Add(($"{head}<|start_header_id|>{role}<|end_header_id|>\n\n", false));
            segments.Add(($"{content}<|eot_id|>", role == "assistant"));
        }

        return segments;
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Load_ChatMessages_SegmentsTokenizedSeparately_PromptMasked_OneBos(bool templateRendersBos)
    {
        using var tmp = new TempDir();
        File.WriteAllText(tmp["a.jsonl"], """
            {"text": "plain"}
            {"messages": [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}]}
            """);
        CorpusOptions options = Options() with { RenderChat = m => Render(m, templateRendersBos) };
        using DocumentCorpus corpus = Load(tmp["a.jsonl"], options, Llama3WithBos(tmp));
        Assert.True(corpus.HasTrainableMask);
        Assert.Equal([Bos, .. Expected("plain")], corpus.Document(0).ToArray());
        Assert.All(corpus.Trainable(0).ToArray(), b => Assert.Equal(1, b));

        Tokenizer t = Llama3;
        int[] user = t.Encode("<|start_header_id|>user<|end_header_id|>\n\n", false), question = t.Encode("What is 2+2?<|eot_id|>", false);
        int[] assistant = t.Encode("<|start_header_id|>assistant<|end_header_id|>\n\n", false), answer = t.Encode("4<|eot_id|>", false);
        int[] expected = [Bos, .. user, .. question, .. assistant, .. answer, Eos];
        byte[] mask = [0, .. new byte[user.Length + question.Length + assistant.Length], .. Enumerable.Repeat((byte)1, answer.Length + 1)];
        Assert.Equal(expected, corpus.Document(1).ToArray());
        Assert.Equal(mask, corpus.Trainable(1).ToArray());
    }

    [Fact]
    public void Load_ManyDocuments_SameResultWhateverTheThreadCount()
    {
        using var tmp = new TempDir();
        File.WriteAllLines(tmp["a.jsonl"], Enumerable.Range(0, 3000).Select(i => $"{{\"text\": \"document {i} {new string('x', i % 37)}\"}}"));
        CorpusOptions options = Options() with { UseCache = false };
        using DocumentCorpus one = Load(tmp["a.jsonl"], options with { MaxDegreeOfParallelism = 1 });
        using DocumentCorpus all = Load(tmp["a.jsonl"], options);
        Assert.Equal(3000, all.DocumentCount);
        Assert.Equal(Documents(one), Documents(all));
        Assert.Equal(Expected("document 2999 " + new string('x', 2999 % 37)), all.Document(2999).ToArray());
        Assert.Equal(one.Fingerprint, all.Fingerprint);
    }

    [Fact]
    public void Load_LlmcShards_BothHeaderVersions_SplitAfterEachSeparator()
    {
        using var tmp = new TempDir();
        int[] tokens = [1, 2, 0, 3, 0, 0, 4, 5];
        LlmcShard(tmp["a.bin"], 20240520, 1, tokens);
        LlmcShard(tmp["b.bin"], 20240801, 7, [.. tokens, 70000]);
        CorpusOptions options = Options(100_000) with { DocumentSeparator = 0 };
        using DocumentCorpus corpus = DocumentCorpus.Load([tmp["a.bin"], tmp["b.bin"]], null, options);
        int[][] expected = [[1, 2, 0], [3, 0], [0], [4, 5]];
        Assert.Equal([.. expected, [1, 2, 0], [3, 0], [0], [4, 5, 70000]], Documents(corpus));
        Assert.Equal(17, corpus.TokenCount);
        Assert.Equal([CorpusSourceKind.LlmcShard, CorpusSourceKind.LlmcShard], corpus.Sources.Select(s => s.Kind));
        Assert.Equal([4L, 4L], corpus.Sources.Select(s => s.Documents));
    }

    [Fact]
    public void Load_ShardWithoutTokenizerOrSeparator_IsOneDocument_AndTheTokenizerEosSplitsIt()
    {
        using var tmp = new TempDir();
        Raw(tmp["a.u32"], 4, 5, Eos, 6, 7);
        Raw(tmp["b.u16"], 2, 5, 9, 6);
        using (DocumentCorpus corpus = DocumentCorpus.Load([tmp["a.u32"], tmp["b.u16"]], null, Options()))
        {
            Assert.Equal([[5, Eos, 6, 7], [5, 9, 6]], Documents(corpus));
            Assert.Equal(CorpusSourceKind.RawTokens, corpus.Sources[0].Kind);
        }

        using DocumentCorpus split = DocumentCorpus.Load([tmp["a.u32"]], Llama3, Options());
        Assert.Equal([[5, Eos], [6, 7]], Documents(split));
    }

    [Fact]
    public void Load_HeaderlessBin_NeedsTheTokenDtype()
    {
        using var tmp = new TempDir();
        Raw(tmp["a.bin"], 2, 1, 2, 3);
        var e = Assert.Throws<InvalidDataException>(() => DocumentCorpus.Load([tmp["a.bin"]], null, Options(10)));
        Assert.Contains("Pass --token-dtype uint16|uint32", e.Message);
        using DocumentCorpus corpus = DocumentCorpus.Load([tmp["a.bin"]], null, Options(10) with { RawTokenDtype = TokenDtype.UInt16 });
        Assert.Equal([[1, 2, 3]], Documents(corpus));
    }

    [Fact]
    public void Load_TruncatedShards_AreOneLineErrors()
    {
        using var tmp = new TempDir();
        LlmcShard(tmp["a.bin"], 20240520, 1, [1, 2, 3], dropBytes: 2);
        Assert.Contains("truncated shard: the header says 3 uint16 tokens (1030 bytes with the header) but the file has 1028 bytes",
            Assert.Throws<InvalidDataException>(() => DocumentCorpus.Load([tmp["a.bin"]], null, Options(10))).Message);
        File.WriteAllBytes(tmp["b.u32"], new byte[10]);
        Assert.Contains("truncated shard: 10 bytes is not a whole number of 4-byte tokens",
            Assert.Throws<InvalidDataException>(() => DocumentCorpus.Load([tmp["b.u32"]], null, Options(10))).Message);
        LlmcShard(tmp["c.bin"], 20240520, 2, [1]);
        Assert.Contains("unknown version 2", Assert.Throws<InvalidDataException>(() => DocumentCorpus.Load([tmp["c.bin"]], null, Options(10))).Message);
    }

    [Fact]
    public void Load_VocabularyMismatch_NamesFileAndTokenIndex()
    {
        using var tmp = new TempDir();
        Raw(tmp["a.u32"], 4, 1, 2, 999, 1000, 3);
        var e = Assert.Throws<InvalidDataException>(() => DocumentCorpus.Load([tmp["a.u32"]], null, Options(1000)));
        Assert.StartsWith($"{tmp["a.u32"]}: vocabulary mismatch: token 3 is 1000, outside the model's vocabulary [0, 1000).", e.Message);
        Assert.Contains("use the model's tokenizer", e.Message);

        File.WriteAllText(tmp["b.txt"], "x");
        e = Assert.Throws<InvalidDataException>(() => Load(tmp["b.txt"], Options(32000)));
        Assert.StartsWith("tokenizer has 128256 tokens, the model 32000:", e.Message);
    }

    [Fact]
    public void Load_SecondTime_ReadsTheCache_SameTokensAndFingerprint()
    {
        using var tmp = new TempDir();
        File.WriteAllText(tmp["a.txt"], "one\n\ntwo three\n");
        CorpusOptions options = Options() with { SplitOnBlankLines = true };
        string cache = tmp[".a.txt.miniseq-tokens"];
        int[][] first;
        string fingerprint;
        using (DocumentCorpus corpus = Load(tmp["a.txt"], options))
        {
            Assert.False(corpus.Sources[0].FromCache);
            first = Documents(corpus);
            fingerprint = corpus.Fingerprint;
        }

        Assert.True(File.Exists(cache));
        using DocumentCorpus again = Load(tmp["a.txt"], options);
        Assert.True(again.Sources[0].FromCache);
        Assert.Equal(first, Documents(again));
        Assert.Equal(fingerprint, again.Fingerprint);
        Assert.Equal([tmp["a.txt"]], DocumentCorpus.Expand([tmp.Path])); // the cache is not data

        using DocumentCorpus noEos = Load(tmp["a.txt"], options with { AppendEos = false });
        Assert.False(noEos.Sources[0].FromCache);
        Assert.NotEqual(fingerprint, noEos.Fingerprint);
        Assert.Equal(first[0][..^1], noEos.Document(0).ToArray());
    }

    [Fact]
    public void Load_ChatCache_KeepsTheMask()
    {
        using var tmp = new TempDir();
        File.WriteAllText(tmp["a.jsonl"], "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"yo\"}]}\n");
        CorpusOptions options = Options() with { RenderChat = m => Render(m, true) };
        byte[] mask;
        using (DocumentCorpus corpus = Load(tmp["a.jsonl"], options))
        {
            mask = corpus.Trainable(0).ToArray();
        }

        using DocumentCorpus again = Load(tmp["a.jsonl"], options);
        Assert.True(again.Sources[0].FromCache);
        Assert.True(again.HasTrainableMask);
        Assert.Equal(mask, again.Trainable(0).ToArray());
        Assert.Contains((byte)0, mask);
    }

    [Fact]
    public void Load_ChangedFile_InvalidatesTheCache_EvenWithTheSameSizeAndWriteTime()
    {
        using var tmp = new TempDir();
        File.WriteAllText(tmp["a.txt"], "alpha");
        DateTime written = File.GetLastWriteTimeUtc(tmp["a.txt"]);
        Load(tmp["a.txt"]).Dispose();

        File.WriteAllText(tmp["a.txt"], "gamma"); // same size; the write time put back: only the content tells
        File.SetLastWriteTimeUtc(tmp["a.txt"], written);
        using (DocumentCorpus corpus = Load(tmp["a.txt"]))
        {
            Assert.False(corpus.Sources[0].FromCache);
            Assert.Equal(Expected("gamma"), corpus.Document(0).ToArray());
        }

        File.WriteAllText(tmp["a.txt"], "gamma and more");
        using DocumentCorpus longer = Load(tmp["a.txt"]);
        Assert.False(longer.Sources[0].FromCache);
        Assert.Equal(Expected("gamma and more"), longer.Document(0).ToArray());
    }

    [Fact]
    public void Load_OldUnchangedFile_TrustsTheWriteTime_AndATouchedOneIsRehashed()
    {
        using var tmp = new TempDir();
        File.WriteAllText(tmp["a.txt"], "alpha");
        File.SetLastWriteTimeUtc(tmp["a.txt"], DateTime.UtcNow.AddMinutes(-5));
        Load(tmp["a.txt"]).Dispose();
        using (DocumentCorpus cached = Load(tmp["a.txt"]))
        {
            Assert.True(cached.Sources[0].FromCache);
        }

        File.SetLastWriteTimeUtc(tmp["a.txt"], DateTime.UtcNow.AddMinutes(-1)); // touched: same bytes
        using DocumentCorpus touched = Load(tmp["a.txt"]);
        Assert.True(touched.Sources[0].FromCache);
    }

    [Fact]
    public void Load_ChangedTokenizer_InvalidatesTheCache()
    {
        using var tmp = new TempDir();
        string copy = tmp["tokenizer"];
        Directory.CreateDirectory(copy);
        foreach (string file in Directory.GetFiles(TokenizerFiles.Directory("llama3")))
        {
            File.Copy(file, Path.Combine(copy, Path.GetFileName(file)));
        }

        File.WriteAllText(tmp["a.txt"], "alpha");
        Load(tmp["a.txt"]).Dispose();
        using (DocumentCorpus same = Load(tmp["a.txt"], tokenizer: Tokenizer.Load(copy)))
        {
            Assert.True(same.Sources[0].FromCache);
        }

        File.AppendAllText(Path.Combine(copy, "tokenizer_config.json"), "\n");
        using DocumentCorpus changed = Load(tmp["a.txt"], tokenizer: Tokenizer.Load(copy));
        Assert.False(changed.Sources[0].FromCache);
    }

    [Fact]
    public void Load_ForeignFileAtTheCachePath_IsLeftByteIdentical()
    {
        using var tmp = new TempDir();
        File.WriteAllText(tmp["a.txt"], "alpha");
        byte[] foreign = Encoding.UTF8.GetBytes("my own notes, not a cache");
        File.WriteAllBytes(tmp[".a.txt.miniseq-tokens"], foreign);
        var progress = new Recorder();
        using (DocumentCorpus corpus = Load(tmp["a.txt"], progress: progress))
        {
            Assert.Equal(Expected("alpha"), corpus.Document(0).ToArray());
            Assert.False(corpus.Sources[0].FromCache);
        }

        Assert.Equal(foreign, File.ReadAllBytes(tmp[".a.txt.miniseq-tokens"]));
        Assert.Contains(progress.Warnings, w => w.Contains("not a MiniSeq token cache; left untouched", StringComparison.Ordinal));
        Assert.Single(Directory.GetFiles(tmp.Path, ".*"));
    }

    [Fact]
    public void Load_RemovesTemporariesOfDeadWriters_KeepsThoseOfLiveOnes()
    {
        using var tmp = new TempDir();
        File.WriteAllText(tmp["a.txt"], "alpha");
        string dead = tmp[".a.txt.miniseq-tokens.tmp-2147483647-0123456789ab"];
        string live = tmp[$".b.txt.miniseq-tokens.tmp-{Environment.ProcessId}-0123456789ab"];
        File.WriteAllText(dead, "partial");
        File.WriteAllText(live, "in progress");
        using DocumentCorpus corpus = Load(tmp["a.txt"]);
        Assert.False(File.Exists(dead));
        Assert.True(File.Exists(live));
        Assert.Equal(Expected("alpha"), corpus.Document(0).ToArray());
    }

    [Fact]
    public void Load_Directory_ExpandsToDataFilesInOrdinalOrder()
    {
        using var tmp = new TempDir();
        File.WriteAllText(tmp["b.txt"], "bee");
        File.WriteAllText(tmp["a.txt"], "ay");
        File.WriteAllText(tmp["B.jsonl"], "{\"text\": \"big bee\"}");
        File.WriteAllText(tmp[".hidden.txt"], "never");
        File.WriteAllText(tmp["README.md"], "skipped");
        Directory.CreateDirectory(tmp["sub"]);
        File.WriteAllText(Path.Combine(tmp["sub"], "c.txt"), "not expanded");
        var progress = new Recorder();
        using DocumentCorpus corpus = DocumentCorpus.Load([tmp.Path], Llama3, Options(), progress);
        Assert.Equal([tmp["B.jsonl"], tmp["a.txt"], tmp["b.txt"]], corpus.Sources.Select(s => s.Path));
        Assert.Equal([Expected("big bee"), Expected("ay"), Expected("bee")], Documents(corpus));
        Assert.Contains(progress.Warnings, w => w.Contains("1 file(s) with other extensions skipped", StringComparison.Ordinal));
    }

    [Fact]
    public void Load_UnknownExtensionOrMissingPath_IsAnError()
    {
        using var tmp = new TempDir();
        File.WriteAllText(tmp["a.csv"], "x");
        Assert.Contains("unknown data file type", Assert.Throws<InvalidDataException>(() => Load(tmp["a.csv"])).Message);
        Assert.Throws<FileNotFoundException>(() => Load(tmp["missing.txt"]));
    }

    [Fact]
    public void OffsetArithmetic_IsInt64Throughout()
    {
        const long documents = 3_000_000_000, tokens = 5_000_000_000;
        Assert.Equal(96 + (8 * (documents + 1)), CorpusCache.TokensAt(documents));
        Assert.Equal(96 + (8 * (documents + 1)) + (4 * tokens) + tokens, CorpusCache.FileLength(documents, tokens, mask: true));
        Assert.Throws<OverflowException>(() => CorpusCache.FileLength(long.MaxValue / 8, 1, mask: false));

        // An llm.c header of int.MaxValue uint32 tokens: 8 GiB + 1 KiB, computed without overflow.
        byte[] head = new byte[1024];
        BinaryPrimitives.WriteInt32LittleEndian(head, 20240801);
        BinaryPrimitives.WriteInt32LittleEndian(head.AsSpan(4), 7);
        BinaryPrimitives.WriteInt32LittleEndian(head.AsSpan(8), int.MaxValue);
        long bytes = 1024 + (4L * int.MaxValue);
        Assert.Equal(int.MaxValue, TokenShards.Inspect("x.bin", bytes, head, null).TokenCount);
        Assert.Equal(3L << 31, TokenShards.TokenCount("x.u16", 3L << 32, 2));

        long[] first = [0, 3_000_000_000, 3_000_000_000, 6_000_000_000, 9_000_000_000];
        Assert.Equal(0, DocumentCorpus.PartOf(first, 2_999_999_999));
        Assert.Equal(2, DocumentCorpus.PartOf(first, 3_000_000_000)); // part 1 is empty
        Assert.Equal(2, DocumentCorpus.PartOf(first, 5_999_999_999));
        Assert.Equal(3, DocumentCorpus.PartOf(first, 8_999_999_999));
    }

    [Fact]
    public unsafe void Split_CutsAfterSeparators_AndRunsLongerThanTheLimit()
    {
        int[] tokens = [1, 2, 3, 4, 5, 0, 6, 0, 7, 8, 9];
        using var offsets = new NativeList<long>();
        fixed (int* p = tokens)
        {
            TokenShards.Split(p, tokens.Length, 0, maxDocumentTokens: 4, offsets);
        }

        Assert.Equal([0L, 4, 6, 8, 11], new ReadOnlySpan<long>(offsets.Pointer, (int)offsets.Count).ToArray());
    }
}
