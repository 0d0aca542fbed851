using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace MiniSeq.Text;

/// <summary>A normalizer rewrites each piece of input text that is not an added token (Rust <c>normalizers</c>).</summary>
internal abstract class Normalizer
{
    public abstract string Normalize(string text);

    public static Normalizer? FromJson(JsonElement e)
    {
        if (TokenizerJson.IsNull(e))
        {
            return null;
        }
        string type = TokenizerJson.TypeOf(e);
        return type switch
        {
            "Sequence" => new SequenceNormalizer(e.GetProperty("normalizers").EnumerateArray()
                .Select(n => FromJson(n) ?? throw TokenizerJson.Unsupported("normalizer", "null")).ToArray()),
            "Prepend" => new PrependNormalizer(TokenizerJson.GetString(e, "prepend") ?? ""),
            "Replace" => ReplaceNormalizer.Parse(e),
            "NFC" => new UnicodeNormalizer(NormalizationForm.FormC),
            "NFD" => new UnicodeNormalizer(NormalizationForm.FormD),
            "NFKC" => new UnicodeNormalizer(NormalizationForm.FormKC),
            "NFKD" => new UnicodeNormalizer(NormalizationForm.FormKD),
            "Lowercase" => new LowercaseNormalizer(),
            "Strip" => new StripNormalizer(TokenizerJson.GetBool(e, "strip_left", true), TokenizerJson.GetBool(e, "strip_right", true)),
            _ => throw TokenizerJson.Unsupported("normalizer", type),
        };
    }
}

internal sealed class SequenceNormalizer(Normalizer[] steps) : Normalizer
{
    public override string Normalize(string text)
    {
        foreach (Normalizer step in steps)
        {
            text = step.Normalize(text);
        }
        return text;
    }
}

/// <summary>Prepends a string to non-empty text (Llama 2: "▁").</summary>
internal sealed class PrependNormalizer(string prepend) : Normalizer
{
    public override string Normalize(string text) => text.Length == 0 ? text : prepend + text;
}

/// <summary>Replaces every occurrence of a literal or regex pattern.</summary>
internal sealed class ReplaceNormalizer(string pattern, bool isRegex, string content) : Normalizer
{
    private readonly Regex? _regex = isRegex ? new Regex(pattern, RegexOptions.CultureInvariant) : null;

    public static ReplaceNormalizer Parse(JsonElement e)
    {
        (string text, bool isRegex) = TokenizerJson.GetPattern(e, "normalizer", "Replace");
        return new ReplaceNormalizer(text, isRegex, TokenizerJson.GetString(e, "content") ?? "");
    }

    public override string Normalize(string text) =>
        _regex is not null ? _regex.Replace(text, content.Replace("$", "$$", StringComparison.Ordinal))
        : pattern.Length == 0 ? text
        : text.Replace(pattern, content, StringComparison.Ordinal);
}

/// <summary>NFC/NFD/NFKC/NFKD, computed by <see cref="UnicodeNormalization"/> (string.Normalize is a no-op under invariant globalization).</summary>
internal sealed class UnicodeNormalizer(NormalizationForm form) : Normalizer
{
    public override string Normalize(string text) => UnicodeNormalization.Normalize(text, form);
}

/// <summary>
/// Rust's <c>NormalizedString::lowercase</c>: <c>char::to_lowercase</c> character by character (no final-sigma
/// context), so the one multi-character mapping is U+0130 → "i̇".
/// </summary>
internal sealed class LowercaseNormalizer : Normalizer
{
    public override string Normalize(string text)
    {
        var sb = new StringBuilder(text.Length);
        int i = 0;
        while (i < text.Length)
        {
            Rune.DecodeFromUtf16(text.AsSpan(i), out Rune r, out int used);
            used = Math.Max(used, 1);
            if (r.Value == 0x130)
            {
                sb.Append("i\u0307");
            }
            else
            {
                sb.Append(Rune.ToLowerInvariant(r).ToString());
            }
            i += used;
        }
        return sb.ToString();
    }
}

/// <summary>Strips leading and/or trailing whitespace.</summary>
internal sealed class StripNormalizer(bool left, bool right) : Normalizer
{
    public override string Normalize(string text) =>
        left && right ? text.Trim() : left ? text.TrimStart() : right ? text.TrimEnd() : text;
}
