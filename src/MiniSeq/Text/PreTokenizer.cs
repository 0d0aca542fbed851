using System.Text.Json;

namespace MiniSeq.Text;

/// <summary>A piece of text between pre-tokenizer steps; <see cref="AtStart"/>: it starts at offset 0 of the input.</summary>
internal readonly record struct Piece(string Text, bool AtStart);

/// <summary>
/// A pre-tokenizer splits each piece into smaller pieces (and may rewrite them); empty pieces are dropped, as in Rust's
/// <c>PreTokenizedString::split</c>.
/// </summary>
internal abstract class PreTokenizer
{
    public void PreTokenize(List<Piece> pieces)
    {
        var output = new List<Piece>(pieces.Count * 2);
        foreach (Piece p in pieces)
        {
            Split(p, output);
        }
        pieces.Clear();
        foreach (Piece p in output)
        {
            if (p.Text.Length > 0)
            {
                pieces.Add(p);
            }
        }
    }

    protected abstract void Split(Piece piece, List<Piece> output);

    public static PreTokenizer? FromJson(JsonElement e)
    {
        if (TokenizerJson.IsNull(e))
        {
            return null;
        }
        string type = TokenizerJson.TypeOf(e);
        return type switch
        {
            "Sequence" => new SequencePreTokenizer(e.GetProperty("pretokenizers").EnumerateArray()
                .Select(p => FromJson(p) ?? throw TokenizerJson.Unsupported("pre_tokenizer", "null")).ToArray()),
            "ByteLevel" => new ByteLevelPreTokenizer(TokenizerJson.GetBool(e, "add_prefix_space", true),
                TokenizerJson.GetBool(e, "use_regex", true)),
            "Split" => SplitPreTokenizer.Parse(e),
            "Metaspace" => MetaspacePreTokenizer.Parse(e),
            "Digits" => new DigitsPreTokenizer(TokenizerJson.GetBool(e, "individual_digits", false)),
            _ => throw TokenizerJson.Unsupported("pre_tokenizer", type),
        };
    }

    /// <summary>Splits by a list of (start, end, isMatch) spans that cover the text, as Rust's <c>NormalizedString::split</c>.</summary>
    internal static void SplitBySpans(Piece piece, List<(int Start, int End, bool IsMatch)> spans, SplitBehavior behavior,
        List<Piece> output)
    {
        var merged = new List<(int Start, int End, bool Keep)>(spans.Count);
        bool previousMatch = false;
        switch (behavior)
        {
            case SplitBehavior.Removed:
                foreach ((int s, int e, bool m) in spans)
                {
                    merged.Add((s, e, !m));
                }
                break;
            case SplitBehavior.Isolated:
                foreach ((int s, int e, bool _) in spans)
                {
                    merged.Add((s, e, true));
                }
                break;
            case SplitBehavior.MergedWithPrevious:
                foreach ((int s, int e, bool m) in spans)
                {
                    if (m && !previousMatch && merged.Count > 0)
                    {
                        merged[^1] = (merged[^1].Start, e, true);
                    }
                    else
                    {
                        merged.Add((s, e, true));
                    }
                    previousMatch = m;
                }
                break;
            case SplitBehavior.MergedWithNext:
                for (int i = spans.Count - 1; i >= 0; i--)
                {
                    (int s, int e, bool m) = spans[i];
                    if (m && !previousMatch && merged.Count > 0)
                    {
                        merged[^1] = (s, merged[^1].End, true);
                    }
                    else
                    {
                        merged.Add((s, e, true));
                    }
                    previousMatch = m;
                }
                merged.Reverse();
                break;
            case SplitBehavior.Contiguous:
                foreach ((int s, int e, bool m) in spans)
                {
                    if (m == previousMatch && merged.Count > 0)
                    {
                        merged[^1] = (merged[^1].Start, e, true);
                    }
                    else
                    {
                        merged.Add((s, e, true));
                    }
                    previousMatch = m;
                }
                break;
        }
        foreach ((int s, int e, bool keep) in merged)
        {
            if (keep && e > s)
            {
                output.Add(new Piece(piece.Text[s..e], piece.AtStart && s == 0));
            }
        }
    }

    internal static SplitBehavior ParseBehavior(string? name, string type) => name switch
    {
        "Removed" => SplitBehavior.Removed,
        "Isolated" => SplitBehavior.Isolated,
        "MergedWithPrevious" => SplitBehavior.MergedWithPrevious,
        "MergedWithNext" => SplitBehavior.MergedWithNext,
        "Contiguous" => SplitBehavior.Contiguous,
        _ => throw TokenizerJson.Unsupported("pre_tokenizer", type, $"behavior '{name}'"),
    };
}

internal enum SplitBehavior
{
    Removed,
    Isolated,
    MergedWithPrevious,
    MergedWithNext,
    Contiguous,
}

internal sealed class SequencePreTokenizer(PreTokenizer[] steps) : PreTokenizer
{
    protected override void Split(Piece piece, List<Piece> output)
    {
        var pieces = new List<Piece> { piece };
        foreach (PreTokenizer step in steps)
        {
            step.PreTokenize(pieces);
        }
        output.AddRange(pieces);
    }
}
