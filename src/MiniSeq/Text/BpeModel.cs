using System.Collections.Concurrent;
using System.Text;
using System.Text.Json;

namespace MiniSeq.Text;

/// <summary>
/// The BPE model of Hugging Face <c>tokenizers</c> (models/bpe): a word is split into characters (byte-fallback
/// <c>&lt;0xNN&gt;</c> tokens or the unknown token for characters outside the vocabulary), then merged pair by pair,
/// lowest merge rank first and leftmost first among equal ranks, with the same priority queue and stale-entry rule as
/// the Rust <c>Word::merge_all</c>. With <c>ignore_merges</c> a word that is itself in the vocabulary is one token.
/// </summary>
internal sealed class BpeModel
{
    private const int MaxCachedWords = 100_000;

    private readonly Dictionary<string, int> _vocab;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _vocabBySpan;
    private readonly string?[] _idToToken;
    /// <summary>(left id, right id) packed in a long → (rank, merged id).</summary>
    private readonly Dictionary<long, (int Rank, int NewId)> _merges;
    private readonly string? _unkToken;
    private readonly string? _continuingSubwordPrefix;
    private readonly string? _endOfWordSuffix;
    private readonly bool _fuseUnk;
    private readonly bool _byteFallback;
    private readonly bool _ignoreMerges;
    private readonly int[] _byteFallbackIds = new int[256];
    private readonly ConcurrentDictionary<string, int[]> _cache = new();
    private readonly ConcurrentDictionary<string, int[]>.AlternateLookup<ReadOnlySpan<char>> _cacheBySpan;

    [ThreadStatic] private static BpeWord? t_word;

    private BpeModel(Dictionary<string, int> vocab, List<(string Left, string Right)> merges, string? unkToken,
        string? continuingSubwordPrefix, string? endOfWordSuffix, bool fuseUnk, bool byteFallback, bool ignoreMerges)
    {
        _vocab = vocab;
        _vocabBySpan = vocab.GetAlternateLookup<ReadOnlySpan<char>>();
        _cacheBySpan = _cache.GetAlternateLookup<ReadOnlySpan<char>>();
        int maxId = -1;
        foreach (int id in vocab.Values)
        {
            maxId = Math.Max(maxId, id);
        }
        _idToToken = new string?[maxId + 1];
        foreach ((string token, int id) in vocab)
        {
            _idToToken[id] = token;
        }
        _unkToken = unkToken;
        _continuingSubwordPrefix = continuingSubwordPrefix;
        _endOfWordSuffix = endOfWordSuffix;
        _fuseUnk = fuseUnk;
        _byteFallback = byteFallback;
        _ignoreMerges = ignoreMerges;
        for (int b = 0; b < 256; b++)
        {
            _byteFallbackIds[b] = vocab.TryGetValue($"<0x{b:X2}>", out int id) ? id : -1;
        }

        int prefixLength = continuingSubwordPrefix?.Length ?? 0;
        _merges = new Dictionary<long, (int, int)>(merges.Count);
        for (int rank = 0; rank < merges.Count; rank++)
        {
            (string left, string right) = merges[rank];
            if (!vocab.TryGetValue(left, out int leftId) || !vocab.TryGetValue(right, out int rightId))
            {
                throw new InvalidDataException($"tokenizer.json: BPE merge '{left} {right}' uses a token outside the vocabulary");
            }
            string merged = left + (right.Length >= prefixLength ? right[prefixLength..] : right);
            if (!vocab.TryGetValue(merged, out int newId))
            {
                throw new InvalidDataException($"tokenizer.json: BPE merge '{left} {right}' makes '{merged}', which is outside the vocabulary");
            }
            _merges.TryAdd(Pack(leftId, rightId), (rank, newId));
        }
    }

    /// <summary>Rust <c>get_vocab_size</c>: the number of vocabulary entries.</summary>
    public int VocabSize => _vocab.Count;

    public static BpeModel FromJson(JsonElement model)
    {
        string type = TokenizerJson.TypeOf(model);
        if (type == "(none)" && model.TryGetProperty("merges", out _))
        {
            type = "BPE"; // old files omit the model type
        }
        if (type != "BPE")
        {
            throw TokenizerJson.Unsupported("model", type);
        }
        if (model.TryGetProperty("dropout", out JsonElement dropout) && dropout.ValueKind == JsonValueKind.Number
            && dropout.GetDouble() != 0)
        {
            throw TokenizerJson.Unsupported("model", "BPE", "dropout is not deterministic");
        }

        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (JsonProperty p in model.GetProperty("vocab").EnumerateObject())
        {
            vocab[p.Name] = p.Value.GetInt32();
        }
        var merges = new List<(string, string)>();
        foreach (JsonElement m in model.GetProperty("merges").EnumerateArray())
        {
            if (m.ValueKind == JsonValueKind.Array)
            {
                merges.Add((m[0].GetString()!, m[1].GetString()!));
            }
            else
            {
                string s = m.GetString()!;
                int space = s.IndexOf(' ', StringComparison.Ordinal);
                if (space < 0)
                {
                    throw new InvalidDataException($"tokenizer.json: BPE merge '{s}' is not 'left right'");
                }
                merges.Add((s[..space], s[(space + 1)..]));
            }
        }
        return new BpeModel(vocab, merges,
            TokenizerJson.GetString(model, "unk_token"),
            TokenizerJson.GetString(model, "continuing_subword_prefix"),
            TokenizerJson.GetString(model, "end_of_word_suffix"),
            TokenizerJson.GetBool(model, "fuse_unk", false),
            TokenizerJson.GetBool(model, "byte_fallback", false),
            TokenizerJson.GetBool(model, "ignore_merges", false));
    }

    public int? TokenToId(string token) => _vocab.TryGetValue(token, out int id) ? id : null;

    public string? IdToToken(int id) => (uint)id < (uint)_idToToken.Length ? _idToToken[id] : null;

    /// <summary>Appends the ids of one pre-tokenized word.</summary>
    public void Tokenize(ReadOnlySpan<char> word, List<int> ids)
    {
        if (word.IsEmpty)
        {
            return;
        }
        if (_ignoreMerges && _vocabBySpan.TryGetValue(word, out int whole))
        {
            ids.Add(whole);
            return;
        }
        if (_cacheBySpan.TryGetValue(word, out int[]? cached))
        {
            ids.AddRange(cached);
            return;
        }
        BpeWord w = t_word ??= new BpeWord();
        w.Clear();
        SplitIntoSymbols(word, w);
        w.MergeAll(_merges);
        int start = ids.Count;
        w.AppendIds(ids);
        if (_cache.Count < MaxCachedWords)
        {
            _cacheBySpan.TryAdd(word, ids.GetRange(start, ids.Count - start).ToArray());
        }
    }

    /// <summary>Rust <c>BPE::merge_word</c>: one symbol per character, byte fallback, (fused) unknown tokens.</summary>
    private void SplitIntoSymbols(ReadOnlySpan<char> word, BpeWord w)
    {
        int unkId = -1;
        int unkLength = 0;
        bool hasUnk = false;
        int i = 0;
        while (i < word.Length)
        {
            int charLength = char.IsHighSurrogate(word[i]) && i + 1 < word.Length && char.IsLowSurrogate(word[i + 1]) ? 2 : 1;
            ReadOnlySpan<char> c = word.Slice(i, charLength);
            bool isFirst = i == 0;
            bool isLast = i + charLength == word.Length;
            i += charLength;
            int byteLength = Encoding.UTF8.GetByteCount(c);

            ReadOnlySpan<char> key = c;
            string? prefix = isFirst ? null : _continuingSubwordPrefix;
            string? suffix = isLast ? _endOfWordSuffix : null;
            if (!string.IsNullOrEmpty(prefix) || !string.IsNullOrEmpty(suffix))
            {
                key = (prefix ?? "") + c.ToString() + (suffix ?? ""); // only for models with a prefix or suffix
            }

            if (_vocabBySpan.TryGetValue(key, out int id))
            {
                if (hasUnk)
                {
                    w.Add(unkId, unkLength);
                    hasUnk = false;
                }
                w.Add(id, byteLength);
                continue;
            }
            if (_byteFallback && TryAddByteFallback(key, w))
            {
                continue; // as in Rust, a pending unknown token is not flushed before the byte tokens
            }
            if (_unkToken is not null)
            {
                int unk = _vocab.TryGetValue(_unkToken, out int u)
                    ? u
                    : throw new InvalidDataException($"tokenizer.json: BPE unk_token '{_unkToken}' is outside the vocabulary");
                if (hasUnk && _fuseUnk)
                {
                    unkLength += byteLength;
                }
                else
                {
                    if (hasUnk)
                    {
                        w.Add(unkId, unkLength);
                    }
                    unkId = unk;
                    unkLength = byteLength;
                    hasUnk = true;
                }
            }
        }
        if (hasUnk)
        {
            w.Add(unkId, unkLength);
        }
    }

    private bool TryAddByteFallback(ReadOnlySpan<char> key, BpeWord w)
    {
        Span<byte> bytes = stackalloc byte[Encoding.UTF8.GetMaxByteCount(key.Length)];
        int n = Encoding.UTF8.GetBytes(key, bytes);
        for (int b = 0; b < n; b++)
        {
            if (_byteFallbackIds[bytes[b]] < 0)
            {
                return false;
            }
        }
        for (int b = 0; b < n; b++)
        {
            w.Add(_byteFallbackIds[bytes[b]], 1);
        }
        return true;
    }

    private static long Pack(int left, int right) => ((long)left << 32) | (uint)right;

    /// <summary>A word as a doubly linked list of symbols in flat arrays (Rust <c>bpe::word::Word</c>).</summary>
    private sealed class BpeWord
    {
        private int[] _id = new int[32];
        private int[] _prev = new int[32];
        private int[] _next = new int[32];
        private int[] _length = new int[32];
        private int _count;
        /// <summary>Priority = rank·2³² + position (min first); element = position·2³² + merged id.</summary>
        private readonly PriorityQueue<long, long> _queue = new();

        public void Clear() => _count = 0;

        public void Add(int id, int byteLength)
        {
            if (_count == _id.Length)
            {
                Array.Resize(ref _id, _count * 2);
                Array.Resize(ref _prev, _count * 2);
                Array.Resize(ref _next, _count * 2);
                Array.Resize(ref _length, _count * 2);
            }
            _id[_count] = id;
            _prev[_count] = _count - 1;
            _next[_count] = -1;
            _length[_count] = byteLength;
            if (_count > 0)
            {
                _next[_count - 1] = _count;
            }
            _count++;
        }

        public void MergeAll(Dictionary<long, (int Rank, int NewId)> merges)
        {
            PriorityQueue<long, long> queue = _queue;
            queue.Clear();
            for (int i = 0; i + 1 < _count; i++)
            {
                if (merges.TryGetValue(Pack(_id[i], _id[i + 1]), out (int Rank, int NewId) m))
                {
                    Push(queue, i, m.Rank, m.NewId);
                }
            }
            while (queue.TryDequeue(out long element, out _))
            {
                int pos = (int)(element >> 32);
                int newId = (int)element;
                if (_length[pos] == 0)
                {
                    continue;
                }
                int nextPos = _next[pos];
                if (nextPos == -1)
                {
                    continue;
                }
                if (!merges.TryGetValue(Pack(_id[pos], _id[nextPos]), out (int Rank, int NewId) current) || current.NewId != newId)
                {
                    continue; // an expired entry
                }
                _id[pos] = newId;
                _length[pos] += _length[nextPos];
                _next[pos] = _next[nextPos];
                _length[nextPos] = 0;
                if (_next[pos] != -1)
                {
                    _prev[_next[pos]] = pos;
                }
                int prev = _prev[pos];
                if (prev >= 0 && merges.TryGetValue(Pack(_id[prev], _id[pos]), out (int Rank, int NewId) left))
                {
                    Push(queue, prev, left.Rank, left.NewId);
                }
                int next = _next[pos];
                if (next >= 0 && merges.TryGetValue(Pack(_id[pos], _id[next]), out (int Rank, int NewId) right))
                {
                    Push(queue, pos, right.Rank, right.NewId);
                }
            }
        }

        private static void Push(PriorityQueue<long, long> queue, int pos, int rank, int newId) =>
            queue.Enqueue(((long)pos << 32) | (uint)newId, ((long)rank << 32) | (uint)pos);

        public void AppendIds(List<int> ids)
        {
            for (int i = 0; i < _count; i++)
            {
                if (_length[i] != 0)
                {
                    ids.Add(_id[i]);
                }
            }
        }
    }
}
