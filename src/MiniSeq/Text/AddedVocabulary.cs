using System.Text.Json;

namespace MiniSeq.Text;

/// <summary>One entry of <c>added_tokens</c>.</summary>
internal sealed record AddedToken(int Id, string Content, bool Special, bool SingleWord, bool LStrip, bool RStrip, bool Normalized);

/// <summary>
/// The added tokens (Rust <c>AddedVocabulary</c>): never split by the model, found before pre-tokenization by a
/// leftmost-longest match — tokens with <c>normalized: false</c> on the raw text, the others on the normalized text
/// (their own content normalized too) — with the <c>single_word</c>, <c>lstrip</c> and <c>rstrip</c> rules.
/// </summary>
internal sealed class AddedVocabulary
{
    private readonly Dictionary<int, AddedToken> _byId = [];
    private readonly Dictionary<string, AddedToken> _byContent = new(StringComparer.Ordinal);
    private readonly Matcher _raw;
    private readonly Matcher _normalized;

    /// <summary>
    /// As Rust's deserializer, which calls <c>add_tokens</c>: the ids in the file are not used; a token already in the
    /// model vocabulary takes that id, any other the next id from the model's vocabulary size on.
    /// </summary>
    public AddedVocabulary(IEnumerable<AddedToken> tokens, Normalizer? normalizer, BpeModel model)
    {
        var raw = new List<(string, AddedToken)>();
        var normalized = new List<(string, AddedToken)>();
        int maxAddedId = -1;
        foreach (AddedToken fromFile in tokens)
        {
            if (fromFile.Content.Length == 0 || _byContent.ContainsKey(fromFile.Content))
            {
                continue; // Rust compares added tokens by content
            }
            int id = model.TokenToId(fromFile.Content) is int inVocab ? inVocab
                : maxAddedId < 0 ? model.VocabSize
                : maxAddedId >= model.VocabSize ? maxAddedId + 1
                : model.VocabSize;
            maxAddedId = Math.Max(maxAddedId, id);
            AddedToken t = fromFile with { Id = id };
            _byId[t.Id] = t;
            _byContent[t.Content] = t;
            if (t.Normalized)
            {
                string pattern = normalizer?.Normalize(t.Content) ?? t.Content;
                if (pattern.Length > 0)
                {
                    normalized.Add((pattern, t));
                }
            }
            else
            {
                raw.Add((t.Content, t));
            }
        }
        _raw = new Matcher(raw);
        _normalized = new Matcher(normalized);
    }

    public static IEnumerable<AddedToken> ReadJson(JsonElement array)
    {
        if (TokenizerJson.IsNull(array))
        {
            yield break;
        }
        foreach (JsonElement t in array.EnumerateArray())
        {
            bool special = TokenizerJson.GetBool(t, "special", false);
            yield return new AddedToken(t.GetProperty("id").GetInt32(), t.GetProperty("content").GetString()!, special,
                TokenizerJson.GetBool(t, "single_word", false), TokenizerJson.GetBool(t, "lstrip", false),
                TokenizerJson.GetBool(t, "rstrip", false), TokenizerJson.GetBool(t, "normalized", !special));
        }
    }

    public IEnumerable<AddedToken> Tokens => _byId.Values;

    public AddedToken? ById(int id) => _byId.GetValueOrDefault(id);

    public AddedToken? ByContent(string content) => _byContent.GetValueOrDefault(content);

    /// <summary>Splits text into (start, end, token or null) on the added tokens (Rust <c>find_matches</c>).</summary>
    public List<(int Start, int End, AddedToken? Token)> Split(string text, bool normalizedTokens) =>
        (normalizedTokens ? _normalized : _raw).FindMatches(text);

    private sealed class Matcher
    {
        /// <summary>Patterns by first character, longest first.</summary>
        private readonly Dictionary<char, (string Pattern, AddedToken Token)[]> _byFirst;

        public Matcher(List<(string Pattern, AddedToken Token)> patterns)
        {
            // Aho-Corasick in Rust keeps the first pattern among duplicates: keep the order stable, then longest first.
            _byFirst = patterns
                .Select((p, i) => (p, i))
                .GroupBy(x => x.p.Pattern[0])
                .ToDictionary(g => g.Key, g => g.OrderByDescending(x => x.p.Pattern.Length).ThenBy(x => x.i).Select(x => x.p).ToArray());
        }

        public List<(int Start, int End, AddedToken? Token)> FindMatches(string text)
        {
            var splits = new List<(int, int, AddedToken?)>();
            if (_byFirst.Count == 0)
            {
                splits.Add((0, text.Length, null));
                return splits;
            }
            int startOffset = 0;
            int position = 0;
            while (position < text.Length)
            {
                (int start, int stop, AddedToken? token) = NextMatch(text, position);
                if (token is null)
                {
                    break;
                }
                position = stop; // aho-corasick continues after the raw match
                if (token.SingleWord)
                {
                    bool startSpace = start == 0 || !IsWordChar(text, start - 1, before: true);
                    bool stopSpace = stop == text.Length || !IsWordChar(text, stop, before: false);
                    if (!startSpace || !stopSpace)
                    {
                        continue;
                    }
                }
                if (token.LStrip)
                {
                    int s = start;
                    while (s > 0 && char.IsWhiteSpace(text[s - 1]))
                    {
                        s--;
                    }
                    start = Math.Max(s, startOffset);
                }
                if (token.RStrip)
                {
                    while (stop < text.Length && char.IsWhiteSpace(text[stop]))
                    {
                        stop++;
                    }
                }
                if (startOffset < start)
                {
                    splits.Add((startOffset, start, null));
                }
                splits.Add((start, stop, token));
                startOffset = stop;
                position = Math.Max(position, stop);
            }
            if (startOffset != text.Length)
            {
                splits.Add((startOffset, text.Length, null));
            }
            return splits;
        }

        private (int Start, int Stop, AddedToken? Token) NextMatch(string text, int from)
        {
            for (int i = from; i < text.Length; i++)
            {
                if (!_byFirst.TryGetValue(text[i], out (string Pattern, AddedToken Token)[]? candidates))
                {
                    continue;
                }
                foreach ((string pattern, AddedToken token) in candidates)
                {
                    if (string.CompareOrdinal(text, i, pattern, 0, pattern.Length) == 0)
                    {
                        return (i, i + pattern.Length, token);
                    }
                }
            }
            return (0, 0, null);
        }

        private static bool IsWordChar(string text, int index, bool before)
        {
            int cp;
            if (before && char.IsLowSurrogate(text[index]) && index > 0 && char.IsHighSurrogate(text[index - 1]))
            {
                cp = char.ConvertToUtf32(text[index - 1], text[index]);
            }
            else if (!before && char.IsHighSurrogate(text[index]) && index + 1 < text.Length && char.IsLowSurrogate(text[index + 1]))
            {
                cp = char.ConvertToUtf32(text[index], text[index + 1]);
            }
            else
            {
                cp = text[index];
            }
            return cp == '_' || System.Text.Rune.IsLetterOrDigit(new System.Text.Rune(cp));
        }
    }
}
