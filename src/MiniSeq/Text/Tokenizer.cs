using System.Text;
using System.Text.Json;
using MiniSeq.IO;

namespace MiniSeq.Text;

/// <summary>
/// A Hugging Face <c>tokenizers</c> tokenizer loaded from <c>tokenizer.json</c> (plus <c>tokenizer_config.json</c> for
/// BOS/EOS when present), encoding and decoding as the Rust library does: added tokens are split off first, each other
/// piece is normalized, pre-tokenized and tokenized by the BPE model, then the post-processor adds special tokens.
/// Supported: BPE model; normalizers Sequence, Prepend, Replace, NFC/NFD/NFKC/NFKD, Lowercase, Strip; pre-tokenizers
/// Sequence, ByteLevel, Split, Metaspace, Digits; post-processors TemplateProcessing (single), ByteLevel, Sequence;
/// decoders Sequence, ByteLevel, ByteFallback, Fuse, Strip, Replace, Metaspace. Anything else is an
/// <see cref="InvalidDataException"/> naming the component. Thread-safe after loading.
/// </summary>
public sealed class Tokenizer
{
    private readonly BpeModel _model;
    private readonly AddedVocabulary _added;
    private readonly Normalizer? _normalizer;
    private readonly PreTokenizer? _preTokenizer;
    private readonly PostProcessor? _postProcessor;
    private readonly Decoder? _decoder;
    private ulong _fingerprint;

    private Tokenizer(BpeModel model, AddedVocabulary added, Normalizer? normalizer, PreTokenizer? preTokenizer,
        PostProcessor? postProcessor, Decoder? decoder)
    {
        _model = model;
        _added = added;
        _normalizer = normalizer;
        _preTokenizer = preTokenizer;
        _postProcessor = postProcessor;
        _decoder = decoder;
        int size = model.VocabSize;
        foreach (AddedToken t in added.Tokens)
        {
            size = Math.Max(size, t.Id + 1);
        }
        VocabSize = size;
    }

    /// <summary>Ids run from 0 to VocabSize − 1: the model vocabulary and the added tokens.</summary>
    public int VocabSize { get; }

    /// <summary>The BOS token id from <c>tokenizer_config.json</c> (<c>bos_token</c>), if any.</summary>
    public int? BosId { get; private set; }

    /// <summary>The EOS token id from <c>tokenizer_config.json</c> (<c>eos_token</c>), if any.</summary>
    public int? EosId { get; private set; }

    /// <summary><c>add_bos_token</c> of <c>tokenizer_config.json</c> (informative: <see cref="Encode"/> follows the
    /// post-processor of <c>tokenizer.json</c>, as the Rust library does).</summary>
    public bool? AddBosToken { get; private set; }

    /// <summary>FNV-1a 64 (hex) of the files the tokenizer was loaded from: <c>tokenizer.json</c>, and with
    /// <see cref="Load(string)"/> also <c>tokenizer_config.json</c> and <c>chat_template.jinja</c> when present (they hold
    /// BOS/EOS and the chat template). Token caches and run fingerprints use it to tell a changed tokenizer.</summary>
    public string Fingerprint => Fnv1a.Hex(_fingerprint);

    /// <summary><c>add_eos_token</c> of <c>tokenizer_config.json</c> (informative, as <see cref="AddBosToken"/>).</summary>
    public bool? AddEosToken { get; private set; }

    /// <summary>The <c>tokenizer.json</c> a path names (the file itself, or the one in a directory) and the
    /// <c>tokenizer_config.json</c> beside it (which may not exist).</summary>
    public static (string Json, string Config) Files(string pathOrDirectory)
    {
        ArgumentException.ThrowIfNullOrEmpty(pathOrDirectory);
        string file = Directory.Exists(pathOrDirectory) ? Path.Combine(pathOrDirectory, "tokenizer.json") : pathOrDirectory;
        return (file, Path.Combine(Path.GetDirectoryName(Path.GetFullPath(file))!, "tokenizer_config.json"));
    }

    /// <summary><paramref name="given"/>, else <paramref name="modelDirectory"/> when it holds a <c>tokenizer.json</c>
    /// (the Hugging Face layout), else null.</summary>
    public static string? PathOrModelDefault(string? given, string modelDirectory)
        => given ?? (File.Exists(Path.Combine(modelDirectory, "tokenizer.json")) ? modelDirectory : null);

    /// <summary>Loads <c>tokenizer.json</c> from a file, or from a directory (with its <c>tokenizer_config.json</c>).</summary>
    public static Tokenizer Load(string pathOrDirectory)
    {
        (string file, string config) = Files(pathOrDirectory);
        if (!File.Exists(file))
        {
            throw new FileNotFoundException($"tokenizer.json not found: {file}", file);
        }
        Tokenizer tokenizer;
        using (FileStream stream = File.OpenRead(file))
        {
            tokenizer = Load(stream);
        }
        string directory = Path.GetDirectoryName(Path.GetFullPath(file))!;
        ulong hash = tokenizer._fingerprint;
        if (File.Exists(config))
        {
            byte[] configBytes = File.ReadAllBytes(config);
            hash = Fnv1a.Append(Fnv1a.Append(hash, "tokenizer_config.json"), configBytes);
            tokenizer.ReadConfig(Encoding.UTF8.GetString(configBytes));
        }
        string template = Path.Combine(directory, "chat_template.jinja");
        if (File.Exists(template))
        {
            hash = Fnv1a.Append(Fnv1a.Append(hash, "chat_template.jinja"), File.ReadAllBytes(template));
        }
        tokenizer._fingerprint = hash;
        return tokenizer;
    }

    /// <summary>Loads the content of a <c>tokenizer.json</c>.</summary>
    public static Tokenizer Load(Stream tokenizerJson)
    {
        ArgumentNullException.ThrowIfNull(tokenizerJson);
        using var buffer = new MemoryStream();
        tokenizerJson.CopyTo(buffer);
        byte[] bytes = buffer.ToArray();
        using JsonDocument doc = JsonDocument.Parse(bytes, new JsonDocumentOptions { MaxDepth = 256 });
        JsonElement root = doc.RootElement;
        foreach (string unsupported in new[] { "truncation", "padding" })
        {
            if (root.TryGetProperty(unsupported, out JsonElement v) && !TokenizerJson.IsNull(v))
            {
                throw TokenizerJson.Unsupported(unsupported, v.ValueKind == JsonValueKind.Object ? TokenizerJson.TypeOf(v) : v.ValueKind.ToString(),
                    "only null is supported");
            }
        }
        BpeModel model = BpeModel.FromJson(root.GetProperty("model"));
        Normalizer? normalizer = Normalizer.FromJson(Get(root, "normalizer"));
        PreTokenizer? preTokenizer = PreTokenizer.FromJson(Get(root, "pre_tokenizer"));
        PostProcessor? postProcessor = PostProcessor.FromJson(Get(root, "post_processor"));
        Decoder? decoder = Decoder.FromJson(Get(root, "decoder"));
        var added = new AddedVocabulary(AddedVocabulary.ReadJson(Get(root, "added_tokens")), normalizer, model);
        return new Tokenizer(model, added, normalizer, preTokenizer, postProcessor, decoder)
        {
            _fingerprint = Fnv1a.Append(Fnv1a.Offset, bytes),
        };
    }

    private static JsonElement Get(JsonElement root, string name) => root.TryGetProperty(name, out JsonElement e) ? e : default;

    private void ReadConfig(string json)
    {
        using JsonDocument doc = JsonDocument.Parse(json);
        JsonElement root = doc.RootElement;
        BosId = SpecialId(root, "bos_token");
        EosId = SpecialId(root, "eos_token");
        AddBosToken = root.TryGetProperty("add_bos_token", out JsonElement b) && b.ValueKind is JsonValueKind.True or JsonValueKind.False ? b.GetBoolean() : null;
        AddEosToken = root.TryGetProperty("add_eos_token", out JsonElement e) && e.ValueKind is JsonValueKind.True or JsonValueKind.False ? e.GetBoolean() : null;
    }

    private int? SpecialId(JsonElement root, string name)
    {
        if (!root.TryGetProperty(name, out JsonElement v))
        {
            return null;
        }
        string? content = v.ValueKind switch
        {
            JsonValueKind.String => v.GetString(),
            JsonValueKind.Object => TokenizerJson.GetString(v, "content"),
            _ => null,
        };
        return content is null ? null : TokenToId(content);
    }

    /// <summary>The id of a token string (added tokens first, then the model vocabulary), or null.</summary>
    public int? TokenToId(string token) => _added.ByContent(token)?.Id ?? _model.TokenToId(token);

    /// <summary>The token string of an id (added tokens first, then the model vocabulary), or null.</summary>
    public string? IdToToken(int id) => _added.ById(id)?.Content ?? _model.IdToToken(id);

    /// <summary>Encodes text to ids; <paramref name="addSpecialTokens"/> lets the post-processor add BOS/EOS.</summary>
    public int[] Encode(string text, bool addSpecialTokens = true)
    {
        ArgumentNullException.ThrowIfNull(text);
        text = ReplaceLoneSurrogates(text);
        var ids = new List<int>();
        var pieces = new List<Piece>();
        foreach ((int start, int end, AddedToken? token) in _added.Split(text, normalizedTokens: false))
        {
            if (token is not null)
            {
                ids.Add(token.Id);
                continue;
            }
            if (end == start)
            {
                continue;
            }
            string segment = text[start..end];
            string normalized = _normalizer?.Normalize(segment) ?? segment;
            foreach ((int s, int e, AddedToken? t) in _added.Split(normalized, normalizedTokens: true))
            {
                if (t is not null)
                {
                    ids.Add(t.Id);
                    continue;
                }
                if (e == s)
                {
                    continue;
                }
                pieces.Clear();
                pieces.Add(new Piece(normalized[s..e], start == 0 && s == 0));
                _preTokenizer?.PreTokenize(pieces);
                foreach (Piece p in pieces)
                {
                    _model.Tokenize(p.Text, ids);
                }
            }
        }
        return (_postProcessor?.Process(ids, addSpecialTokens) ?? ids).ToArray();
    }

    /// <summary>Decodes ids to text; unknown ids are dropped, special tokens too with <paramref name="skipSpecialTokens"/>.</summary>
    public string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens = false)
    {
        var tokens = new List<string>(ids.Length);
        foreach (int id in ids)
        {
            string? token = IdToToken(id);
            if (token is null || (skipSpecialTokens && _added.ByContent(token) is { Special: true }))
            {
                continue;
            }
            tokens.Add(token);
        }
        return _decoder is null ? string.Join(' ', tokens) : _decoder.Decode(tokens);
    }

    /// <summary>Rust strings are UTF-8, so a lone surrogate reaches the library as U+FFFD.</summary>
    private static string ReplaceLoneSurrogates(string text)
    {
        if (!text.AsSpan().ContainsAnyInRange('\uD800', '\uDFFF'))
        {
            return text;
        }
        return Encoding.UTF8.GetString(Encoding.UTF8.GetBytes(text));
    }
}
