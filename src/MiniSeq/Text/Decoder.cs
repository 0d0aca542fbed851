using System.Globalization;
using System.Text;
using System.Text.Json;

namespace MiniSeq.Text;

/// <summary>A decoder turns the token strings of a decode into text, step by step (Rust <c>Decoder::decode_chain</c>).</summary>
internal abstract class Decoder
{
    public abstract List<string> DecodeChain(List<string> tokens);

    public string Decode(List<string> tokens) => string.Concat(DecodeChain(tokens));

    public static Decoder? FromJson(JsonElement e)
    {
        if (TokenizerJson.IsNull(e))
        {
            return null;
        }
        string type = TokenizerJson.TypeOf(e);
        switch (type)
        {
            case "Sequence":
                return new SequenceDecoder(e.GetProperty("decoders").EnumerateArray()
                    .Select(d => FromJson(d) ?? throw TokenizerJson.Unsupported("decoder", "null")).ToArray());
            case "ByteLevel":
                return new ByteLevelDecoder();
            case "ByteFallback":
                return new ByteFallbackDecoder();
            case "Fuse":
                return new FuseDecoder();
            case "Strip":
                string content = TokenizerJson.GetString(e, "content") ?? " ";
                if (content.Length != 1)
                {
                    throw TokenizerJson.Unsupported("decoder", type, "content must be one UTF-16 character");
                }
                return new StripDecoder(content[0], TokenizerJson.GetInt(e, "start", 0), TokenizerJson.GetInt(e, "stop", 0));
            case "Replace":
                (string pattern, bool isRegex) = TokenizerJson.GetPattern(e, "decoder", type);
                if (isRegex)
                {
                    throw TokenizerJson.Unsupported("decoder", type, "Regex pattern");
                }
                return new ReplaceDecoder(pattern, TokenizerJson.GetString(e, "content") ?? "");
            case "Metaspace":
                (char replacement, string scheme) = MetaspacePreTokenizer.ReadReplacementAndScheme(e, "decoder");
                return new MetaspaceDecoder(replacement, scheme != "never");
            default:
                throw TokenizerJson.Unsupported("decoder", type);
        }
    }
}

internal sealed class SequenceDecoder(Decoder[] steps) : Decoder
{
    public override List<string> DecodeChain(List<string> tokens)
    {
        foreach (Decoder step in steps)
        {
            tokens = step.DecodeChain(tokens);
        }
        return tokens;
    }
}

/// <summary>Maps characters back to bytes (a token with an unmapped character keeps its own UTF-8), then lossy UTF-8.</summary>
internal sealed class ByteLevelDecoder : Decoder
{
    public override List<string> DecodeChain(List<string> tokens)
    {
        var bytes = new List<byte>();
        foreach (string token in tokens)
        {
            bool mapped = true;
            foreach (char c in token)
            {
                if (c >= ByteLevel.CharToByte.Length || ByteLevel.CharToByte[c] < 0)
                {
                    mapped = false;
                    break;
                }
            }
            if (mapped)
            {
                foreach (char c in token)
                {
                    bytes.Add((byte)ByteLevel.CharToByte[c]);
                }
            }
            else
            {
                bytes.AddRange(Encoding.UTF8.GetBytes(token));
            }
        }
        return [Encoding.UTF8.GetString(bytes.ToArray())];
    }
}

/// <summary>Runs of <c>&lt;0xNN&gt;</c> tokens become their UTF-8 text, or one U+FFFD per byte if it is not valid UTF-8.</summary>
internal sealed class ByteFallbackDecoder : Decoder
{
    private static readonly UTF8Encoding s_strict = new(false, true);

    public override List<string> DecodeChain(List<string> tokens)
    {
        var output = new List<string>(tokens.Count);
        var pending = new List<byte>();
        foreach (string token in tokens)
        {
            if (token.Length == 6 && token.StartsWith("<0x", StringComparison.Ordinal) && token[5] == '>'
                && byte.TryParse(token.AsSpan(3, 2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out byte b))
            {
                pending.Add(b);
                continue;
            }
            Flush(pending, output);
            output.Add(token);
        }
        Flush(pending, output);
        return output;
    }

    private static void Flush(List<byte> pending, List<string> output)
    {
        if (pending.Count == 0)
        {
            return;
        }
        try
        {
            output.Add(s_strict.GetString(pending.ToArray()));
        }
        catch (DecoderFallbackException)
        {
            for (int i = 0; i < pending.Count; i++)
            {
                output.Add("\uFFFD");
            }
        }
        pending.Clear();
    }
}

internal sealed class FuseDecoder : Decoder
{
    public override List<string> DecodeChain(List<string> tokens) => [string.Concat(tokens)];
}

/// <summary>Removes up to <c>start</c> leading and <c>stop</c> trailing occurrences of a character from each token.</summary>
internal sealed class StripDecoder(char content, int start, int stop) : Decoder
{
    public override List<string> DecodeChain(List<string> tokens)
    {
        var output = new List<string>(tokens.Count);
        foreach (string token in tokens)
        {
            int s = 0;
            while (s < start && s < token.Length && token[s] == content)
            {
                s++;
            }
            int e = token.Length;
            for (int i = 0; i < stop && e > s && token[e - 1] == content; i++)
            {
                e--;
            }
            output.Add(token[s..e]);
        }
        return output;
    }
}

internal sealed class ReplaceDecoder(string pattern, string content) : Decoder
{
    public override List<string> DecodeChain(List<string> tokens) =>
        tokens.Select(t => pattern.Length == 0 ? t : t.Replace(pattern, content, StringComparison.Ordinal)).ToList();
}

/// <summary>Replacement → space; in the first token (when a prefix was prepended) every replacement is dropped, as in Rust.</summary>
internal sealed class MetaspaceDecoder(char replacement, bool prepended) : Decoder
{
    public override List<string> DecodeChain(List<string> tokens)
    {
        var output = new List<string>(tokens.Count);
        for (int i = 0; i < tokens.Count; i++)
        {
            output.Add(i == 0 && prepended
                ? tokens[i].Replace(replacement.ToString(), "", StringComparison.Ordinal)
                : tokens[i].Replace(replacement, ' '));
        }
        return output;
    }
}
