// The Jinja2 lexer for chat templates: splits a template into text, {{ }} output tags, {% %} statement tags and
// {# #} comments, applying Jinja's whitespace rules as transformers configures them (trim_blocks, lstrip_blocks,
// "-" and "+" markers, newlines normalised to \n, one trailing newline dropped), and cuts tag contents into
// expression tokens. It does not know the grammar (JinjaParser does) and has no line statements or custom delimiters.

using System.Globalization;
using System.Text;

namespace MiniSeq.Text;

internal enum JinjaTokenKind
{
    Text,
    OutputStart,
    OutputEnd,
    StatementStart,
    StatementEnd,
    Name,
    String,
    Integer,
    Float,
    Operator,
    End,
}

internal readonly record struct JinjaToken(JinjaTokenKind Kind, string Value, int Line);

internal static class JinjaLexer
{
    // Longest first, so "//" wins over "/" and "**" over "*".
    private static readonly string[] s_operators =
    [
        "//", "**", "==", "!=", "<=", ">=",
        "+", "-", "/", "*", "%", "~", "[", "]", "(", ")", "{", "}", "<", ">", "=", ".", ":", "|", ",", ";",
    ];

    public static List<JinjaToken> Tokenize(string template)
    {
        string source = NormalizeNewlines(template);
        var tokens = new List<JinjaToken>();
        var lines = new LineTable(source);
        int pos = 0;
        bool lineStarting = true;
        // Set by a closing "-%}", "-}}" or "-#}": the next text loses its leading whitespace.
        bool stripNextLeading = false;
        while (pos < source.Length)
        {
            int tagStart = FindTagStart(source, pos);
            string text = source[pos..(tagStart < 0 ? source.Length : tagStart)];
            if (stripNextLeading)
            {
                text = text.TrimStart(s_pyWhitespace);
                stripNextLeading = false;
            }
            if (tagStart < 0)
            {
                AddText(tokens, text, lines.LineOf(pos));
                break;
            }

            char kind = source[tagStart + 1];
            int inner = tagStart + 2;
            char marker = inner < source.Length ? source[inner] : '\0';
            if (marker == '-')
            {
                text = text.TrimEnd(s_pyWhitespace);
            }
            else if (marker != '+' && kind != '{')
            {
                // lstrip_blocks: whitespace between the start of the line and a block or comment tag goes.
                int lineStart = text.LastIndexOf('\n') + 1;
                if ((lineStart > 0 || lineStarting) && lineStart < text.Length && IsBlank(text, lineStart))
                {
                    text = text[..lineStart];
                }
            }
            if (marker is '-' or '+')
            {
                inner++;
            }
            AddText(tokens, text, lines.LineOf(pos));
            int tagLine = lines.LineOf(tagStart);

            int after;
            if (kind == '#')
            {
                int close = source.IndexOf("#}", inner, StringComparison.Ordinal);
                if (close < 0)
                {
                    throw Syntax("unclosed comment", tagLine);
                }
                after = close + 2;
                (after, stripNextLeading) = CloseMarker(source, close, after, trimBlock: true);
            }
            else
            {
                bool isOutput = kind == '{';
                tokens.Add(new JinjaToken(isOutput ? JinjaTokenKind.OutputStart : JinjaTokenKind.StatementStart, "", tagLine));
                int close = LexExpression(source, inner, isOutput ? '}' : '%', tokens, lines);
                after = close + 2;
                (after, stripNextLeading) = CloseMarker(source, close, after, trimBlock: !isOutput);
                tokens.Add(new JinjaToken(isOutput ? JinjaTokenKind.OutputEnd : JinjaTokenKind.StatementEnd, "", lines.LineOf(close)));
            }
            lineStarting = after > 0 && source[after - 1] == '\n';
            pos = after;
        }
        tokens.Add(new JinjaToken(JinjaTokenKind.End, "", lines.LineOf(source.Length)));
        return tokens;
    }

    /// <summary>1-based line numbers of source offsets, for error messages.</summary>
    private sealed class LineTable(string source)
    {
        private readonly int[] _newlines = [.. Enumerable.Range(0, source.Length).Where(i => source[i] == '\n')];

        public int LineOf(int index)
        {
            int i = Array.BinarySearch(_newlines, index);
            return 1 + (i >= 0 ? i : ~i);
        }
    }

    // Python's str.isspace set for the characters templates meet (strip() and rstrip() in Jinja's lexer use it).
    private static readonly char[] s_pyWhitespace =
    [
        ' ', '\t', '\n', '\v', '\f', '\r', '\x1c', '\x1d', '\x1e', '\x1f', '\x85', '\xa0', '\u1680',
        '\u2000', '\u2001', '\u2002', '\u2003', '\u2004', '\u2005', '\u2006', '\u2007', '\u2008', '\u2009', '\u200a',
        '\u2028', '\u2029', '\u202f', '\u205f', '\u3000',
    ];

    public static ReadOnlySpan<char> PyWhitespace => s_pyWhitespace;

    private static string NormalizeNewlines(string template)
    {
        string s = template.Replace("\r\n", "\n", StringComparison.Ordinal).Replace('\r', '\n');
        // keep_trailing_newline=False: Jinja drops one newline at the very end of the source.
        return s.EndsWith('\n') ? s[..^1] : s;
    }

    private static int FindTagStart(string source, int from)
    {
        for (int i = source.IndexOf('{', from); i >= 0 && i + 1 < source.Length; i = source.IndexOf('{', i + 1))
        {
            char c = source[i + 1];
            if (c is '{' or '%' or '#')
            {
                if (c == '%' && IsRawTag(source, i))
                {
                    throw new NotSupportedException($"chat template: unsupported Jinja tag 'raw' at line {1 + source.AsSpan(0, i).Count('\n')}");
                }
                return i;
            }
        }
        return -1;
    }

    private static bool IsRawTag(string source, int i)
    {
        int j = i + 2;
        while (j < source.Length && (source[j] is '-' or '+' || char.IsWhiteSpace(source[j])))
        {
            j++;
        }
        return string.CompareOrdinal(source, j, "raw", 0, 3) == 0 && (j + 3 >= source.Length || !IsNameChar(source[j + 3]));
    }

    private static (int After, bool StripNext) CloseMarker(string source, int close, int after, bool trimBlock)
    {
        char before = close > 0 ? source[close - 1] : '\0';
        if (before == '-')
        {
            return (after, true);
        }
        if (trimBlock && before != '+' && after < source.Length && source[after] == '\n')
        {
            return (after + 1, false); // trim_blocks: the first newline after a block tag goes
        }
        return (after, false);
    }

    private static bool IsBlank(string text, int from)
    {
        for (int i = from; i < text.Length; i++)
        {
            if (Array.IndexOf(s_pyWhitespace, text[i]) < 0)
            {
                return false;
            }
        }
        return true;
    }

    private static void AddText(List<JinjaToken> tokens, string text, int line)
    {
        if (text.Length > 0)
        {
            tokens.Add(new JinjaToken(JinjaTokenKind.Text, text, line));
        }
    }

    private static bool IsNameChar(char c) => c == '_' || char.IsAsciiLetterOrDigit(c);

    /// <summary>Lexes the inside of a tag up to its closing delimiter; returns the index of the closing "}}" / "%}".</summary>
    private static int LexExpression(string s, int pos, char closer, List<JinjaToken> tokens, LineTable lines)
    {
        int depth = 0;
        while (true)
        {
            while (pos < s.Length && char.IsWhiteSpace(s[pos]))
            {
                pos++;
            }
            int line = lines.LineOf(pos);
            if (pos >= s.Length)
            {
                throw Syntax(closer == '}' ? "unclosed '{{'" : "unclosed '{%'", line);
            }
            if (depth == 0)
            {
                // "-}}" / "+%}" and the plain closers; the marker char is checked by CloseMarker.
                int p = s[pos] is '-' or '+' ? pos + 1 : pos;
                if (p + 1 < s.Length && s[p] == closer && s[p + 1] == '}')
                {
                    return p;
                }
            }
            char c = s[pos];
            if (char.IsAsciiLetter(c) || c == '_')
            {
                int start = pos;
                while (pos < s.Length && IsNameChar(s[pos]))
                {
                    pos++;
                }
                tokens.Add(new JinjaToken(JinjaTokenKind.Name, s[start..pos], line));
            }
            else if (char.IsAsciiDigit(c))
            {
                pos = LexNumber(s, pos, tokens, line);
            }
            else if (c is '\'' or '"')
            {
                pos = LexString(s, pos, tokens, line);
            }
            else
            {
                string? op = null;
                foreach (string candidate in s_operators)
                {
                    if (string.CompareOrdinal(s, pos, candidate, 0, candidate.Length) == 0)
                    {
                        op = candidate;
                        break;
                    }
                }
                if (op is null)
                {
                    throw Syntax($"unexpected character '{c}'", line);
                }
                if (op is "(" or "[" or "{")
                {
                    depth++;
                }
                else if (op is ")" or "]" or "}")
                {
                    depth--;
                }
                tokens.Add(new JinjaToken(JinjaTokenKind.Operator, op, line));
                pos += op.Length;
            }
        }
    }

    private static int LexNumber(string s, int pos, List<JinjaToken> tokens, int line)
    {
        int start = pos;
        while (pos < s.Length && (char.IsAsciiDigit(s[pos]) || s[pos] == '_'))
        {
            pos++;
        }
        bool isFloat = false;
        if (pos + 1 < s.Length && s[pos] == '.' && char.IsAsciiDigit(s[pos + 1]))
        {
            isFloat = true;
            pos++;
            while (pos < s.Length && (char.IsAsciiDigit(s[pos]) || s[pos] == '_'))
            {
                pos++;
            }
        }
        if (pos < s.Length && s[pos] is 'e' or 'E')
        {
            int p = pos + 1;
            if (p < s.Length && s[p] is '+' or '-')
            {
                p++;
            }
            if (p < s.Length && char.IsAsciiDigit(s[p]))
            {
                isFloat = true;
                pos = p;
                while (pos < s.Length && char.IsAsciiDigit(s[pos]))
                {
                    pos++;
                }
            }
        }
        string text = s[start..pos].Replace("_", "", StringComparison.Ordinal);
        tokens.Add(new JinjaToken(isFloat ? JinjaTokenKind.Float : JinjaTokenKind.Integer, text, line));
        return pos;
    }

    // Python string-literal escapes, as Jinja decodes them ("unicode-escape"); an unknown escape keeps its backslash.
    private static int LexString(string s, int pos, List<JinjaToken> tokens, int startLine)
    {
        char quote = s[pos];
        var sb = new StringBuilder();
        pos++;
        while (true)
        {
            if (pos >= s.Length)
            {
                throw Syntax("unterminated string", startLine);
            }
            char c = s[pos];
            if (c == quote)
            {
                pos++;
                break;
            }
            if (c != '\\' || pos + 1 >= s.Length)
            {
                sb.Append(c);
                pos++;
                continue;
            }
            char e = s[pos + 1];
            pos += 2;
            switch (e)
            {
                case 'n': sb.Append('\n'); break;
                case 't': sb.Append('\t'); break;
                case 'r': sb.Append('\r'); break;
                case '\\': sb.Append('\\'); break;
                case '\'': sb.Append('\''); break;
                case '"': sb.Append('"'); break;
                case 'a': sb.Append('\a'); break;
                case 'b': sb.Append('\b'); break;
                case 'f': sb.Append('\f'); break;
                case 'v': sb.Append('\v'); break;
                case '0': sb.Append('\0'); break;
                case '\n': break; // line continuation
                case 'x': pos = AppendHex(s, pos, 2, sb, startLine); break;
                case 'u': pos = AppendHex(s, pos, 4, sb, startLine); break;
                case 'U': pos = AppendHex(s, pos, 8, sb, startLine); break;
                default: sb.Append('\\').Append(e); break;
            }
        }
        tokens.Add(new JinjaToken(JinjaTokenKind.String, sb.ToString(), startLine));
        return pos;
    }

    private static int AppendHex(string s, int pos, int digits, StringBuilder sb, int line)
    {
        if (pos + digits > s.Length || !int.TryParse(s.AsSpan(pos, digits), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out int code))
        {
            throw Syntax("bad escape in string", line);
        }
        sb.Append(char.ConvertFromUtf32(code));
        return pos + digits;
    }

    public static NotSupportedException Syntax(string what, int line) => new($"chat template: {what} at line {line}");
}
