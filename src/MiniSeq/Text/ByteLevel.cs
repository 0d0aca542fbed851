using System.Text;

namespace MiniSeq.Text;

/// <summary>
/// GPT-2's reversible byte ↔ character map (Rust <c>bytes_char</c>): printable Latin-1 bytes map to themselves, the
/// other 68 bytes to U+0100.. in byte order, so every byte string is a string of visible characters.
/// </summary>
internal static class ByteLevel
{
    public static readonly char[] ByteToChar = BuildByteToChar();
    /// <summary>Character → byte, or -1 for characters outside the map.</summary>
    public static readonly short[] CharToByte = BuildCharToByte();

    /// <summary>The GPT-2 pre-tokenization regex used by ByteLevel with <c>use_regex</c>.</summary>
    public const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    private static char[] BuildByteToChar()
    {
        var map = new char[256];
        int next = 256;
        for (int b = 0; b < 256; b++)
        {
            bool printable = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
            map[b] = printable ? (char)b : (char)next++;
        }
        return map;
    }

    private static short[] BuildCharToByte()
    {
        var map = new short[512];
        Array.Fill(map, (short)-1);
        for (int b = 0; b < 256; b++)
        {
            map[ByteToChar[b]] = (short)b;
        }
        return map;
    }

    /// <summary>The UTF-8 bytes of <paramref name="text"/>, each as its mapped character.</summary>
    public static string Encode(string text)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(text);
        return string.Create(bytes.Length, bytes, static (span, b) =>
        {
            for (int i = 0; i < span.Length; i++)
            {
                span[i] = ByteToChar[b[i]];
            }
        });
    }
}

/// <summary>ByteLevel pre-tokenizer: optional leading space per piece, optional GPT-2 regex split, then byte mapping.</summary>
internal sealed class ByteLevelPreTokenizer(bool addPrefixSpace, bool useRegex) : PreTokenizer
{
    private static readonly RegexSplitter s_gpt2 = new(ByteLevel.Gpt2Pattern);

    protected override void Split(Piece piece, List<Piece> output)
    {
        string text = piece.Text;
        if (addPrefixSpace && !text.StartsWith(' '))
        {
            text = " " + text;
        }
        var split = new List<Piece>();
        if (useRegex)
        {
            SplitBySpans(piece with { Text = text }, s_gpt2.FindSpans(text, invert: false), SplitBehavior.Isolated, split);
        }
        else
        {
            split.Add(piece with { Text = text });
        }
        foreach (Piece p in split)
        {
            output.Add(p with { Text = ByteLevel.Encode(p.Text) });
        }
    }
}
