using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace MiniSeq.Text;

/// <summary>Split pre-tokenizer: a literal or regex pattern, a split behavior, optionally inverted.</summary>
internal sealed class SplitPreTokenizer(RegexSplitter splitter, SplitBehavior behavior, bool invert) : PreTokenizer
{
    public static SplitPreTokenizer Parse(JsonElement e)
    {
        (string text, bool isRegex) = TokenizerJson.GetPattern(e, "pre_tokenizer", "Split");
        SplitBehavior behavior = ParseBehavior(TokenizerJson.GetString(e, "behavior"), "Split");
        return new SplitPreTokenizer(new RegexSplitter(isRegex ? text : Regex.Escape(text)), behavior,
            TokenizerJson.GetBool(e, "invert", false));
    }

    protected override void Split(Piece piece, List<Piece> output) =>
        SplitBySpans(piece, splitter.FindSpans(piece.Text, invert), behavior, output);
}

/// <summary>
/// Finds regex matches with Oniguruma's code-point semantics. .NET's Regex works on UTF-16 code units, so a
/// character outside the BMP (two surrogates) would never match <c>\p{L}</c> or <c>\p{N}</c>. Text with surrogates is
/// therefore matched as a proxy string in which each such character is replaced by one BMP character of the same
/// Unicode general category; the match offsets are mapped back. Exact for patterns that only test non-BMP
/// characters through categories (as the GPT-2, Llama 3 and Qwen2 patterns do).
/// </summary>
internal sealed class RegexSplitter(string pattern)
{
    private readonly Regex _regex = new(pattern, RegexOptions.CultureInvariant | RegexOptions.Compiled);

    /// <summary>Spans (start, end, isMatch) covering <paramref name="text"/>, as Rust's <c>Pattern::find_matches</c>.</summary>
    public List<(int Start, int End, bool IsMatch)> FindSpans(string text, bool invert)
    {
        var spans = new List<(int, int, bool)>();
        if (text.Length == 0)
        {
            spans.Add((0, 0, invert));
            return spans;
        }
        int[]? map = null;
        string subject = text;
        if (text.AsSpan().ContainsAnyInRange('\uD800', '\uDFFF'))
        {
            (subject, map) = Proxy(text);
        }
        int previous = 0;
        for (Match m = _regex.Match(subject); m.Success; m = m.NextMatch())
        {
            int start = map is null ? m.Index : map[m.Index];
            int end = map is null ? m.Index + m.Length : map[m.Index + m.Length];
            if (start != previous)
            {
                spans.Add((previous, start, invert));
            }
            spans.Add((start, end, !invert));
            previous = end;
        }
        if (previous != text.Length)
        {
            spans.Add((previous, text.Length, invert));
        }
        return spans;
    }

    private static (string Proxy, int[] Map) Proxy(string text)
    {
        var sb = new StringBuilder(text.Length);
        var map = new List<int>(text.Length + 1);
        int i = 0;
        while (i < text.Length)
        {
            map.Add(i);
            if (Rune.DecodeFromUtf16(text.AsSpan(i), out Rune r, out int used) == System.Buffers.OperationStatus.Done && used == 2)
            {
                sb.Append(Representative(Rune.GetUnicodeCategory(r)));
            }
            else
            {
                sb.Append(text[i]);
            }
            i += used == 0 ? 1 : used;
        }
        map.Add(text.Length);
        return (sb.ToString(), map.ToArray());
    }

    /// <summary>A BMP, non-ASCII character of the given general category.</summary>
    private static char Representative(UnicodeCategory category) => category switch
    {
        UnicodeCategory.UppercaseLetter => '\u0391',
        UnicodeCategory.LowercaseLetter => '\u03B1',
        UnicodeCategory.TitlecaseLetter => '\u01C5',
        UnicodeCategory.ModifierLetter => '\u02B0',
        UnicodeCategory.OtherLetter => '\u05D0',
        UnicodeCategory.NonSpacingMark => '\u0300',
        UnicodeCategory.SpacingCombiningMark => '\u0903',
        UnicodeCategory.EnclosingMark => '\u20DD',
        UnicodeCategory.DecimalDigitNumber => '\u0660',
        UnicodeCategory.LetterNumber => '\u2160',
        UnicodeCategory.OtherNumber => '\u00B2',
        UnicodeCategory.SpaceSeparator => '\u2000',
        UnicodeCategory.Format => '\u200B',
        UnicodeCategory.PrivateUse => '\uE000',
        UnicodeCategory.ConnectorPunctuation => '\u203F',
        UnicodeCategory.DashPunctuation => '\u2010',
        UnicodeCategory.OpenPunctuation => '\u2045',
        UnicodeCategory.ClosePunctuation => '\u2046',
        UnicodeCategory.InitialQuotePunctuation => '\u00AB',
        UnicodeCategory.FinalQuotePunctuation => '\u00BB',
        UnicodeCategory.OtherPunctuation => '\u00A1',
        UnicodeCategory.MathSymbol => '\u00D7',
        UnicodeCategory.CurrencySymbol => '\u00A2',
        UnicodeCategory.ModifierSymbol => '\u00B4',
        UnicodeCategory.OtherSymbol => '\u00A6',
        _ => '\u0378', // unassigned
    };
}

/// <summary>Metaspace pre-tokenizer (SentencePiece style): spaces → replacement, optional prepend, split before each replacement.</summary>
internal sealed class MetaspacePreTokenizer(char replacement, string prependScheme, bool split) : PreTokenizer
{
    public char Replacement => replacement;

    public string PrependScheme => prependScheme;

    public static MetaspacePreTokenizer Parse(JsonElement e)
    {
        (char replacement, string scheme) = ReadReplacementAndScheme(e, "pre_tokenizer");
        return new MetaspacePreTokenizer(replacement, scheme, TokenizerJson.GetBool(e, "split", true));
    }

    /// <summary>Shared with the Metaspace decoder; old files use <c>add_prefix_space</c> instead of <c>prepend_scheme</c>.</summary>
    internal static (char Replacement, string Scheme) ReadReplacementAndScheme(JsonElement e, string component)
    {
        string r = TokenizerJson.GetString(e, "replacement") ?? TokenizerJson.GetString(e, "str_rep") ?? "\u2581";
        if (r.Length != 1)
        {
            throw TokenizerJson.Unsupported(component, "Metaspace", "replacement must be one UTF-16 character");
        }
        string? scheme = TokenizerJson.GetString(e, "prepend_scheme");
        scheme ??= TokenizerJson.GetBool(e, "add_prefix_space", true) ? "always" : "never";
        if (scheme is not ("always" or "first" or "never"))
        {
            throw TokenizerJson.Unsupported(component, "Metaspace", $"prepend_scheme '{scheme}'");
        }
        return (r[0], scheme);
    }

    protected override void Split(Piece piece, List<Piece> output)
    {
        string text = piece.Text.Replace(' ', replacement);
        bool prepend = prependScheme switch
        {
            "always" => true,
            "first" => piece.AtStart,
            _ => false,
        };
        if (prepend && !text.StartsWith(replacement))
        {
            text = replacement + text;
        }
        var p = piece with { Text = text };
        if (!split)
        {
            output.Add(p);
            return;
        }
        var spans = new List<(int, int, bool)>();
        int previous = 0;
        for (int i = 0; i < text.Length; i++)
        {
            if (text[i] == replacement)
            {
                if (i != previous)
                {
                    spans.Add((previous, i, false));
                }
                spans.Add((i, i + 1, true));
                previous = i + 1;
            }
        }
        if (previous != text.Length)
        {
            spans.Add((previous, text.Length, false));
        }
        SplitBySpans(p, spans, SplitBehavior.MergedWithNext, output);
    }
}

/// <summary>Digits pre-tokenizer: numeric characters isolated one by one, or grouped into runs.</summary>
internal sealed class DigitsPreTokenizer(bool individualDigits) : PreTokenizer
{
    protected override void Split(Piece piece, List<Piece> output)
    {
        string text = piece.Text;
        var spans = new List<(int, int, bool)>();
        int previous = 0;
        int i = 0;
        while (i < text.Length)
        {
            Rune.DecodeFromUtf16(text.AsSpan(i), out Rune r, out int used);
            used = Math.Max(used, 1);
            UnicodeCategory c = Rune.GetUnicodeCategory(r);
            if (c is UnicodeCategory.DecimalDigitNumber or UnicodeCategory.LetterNumber or UnicodeCategory.OtherNumber)
            {
                if (i != previous)
                {
                    spans.Add((previous, i, false));
                }
                spans.Add((i, i + used, true));
                previous = i + used;
            }
            i += used;
        }
        if (previous != text.Length)
        {
            spans.Add((previous, text.Length, false));
        }
        SplitBySpans(piece, spans, individualDigits ? SplitBehavior.Isolated : SplitBehavior.Contiguous, output);
    }
}
