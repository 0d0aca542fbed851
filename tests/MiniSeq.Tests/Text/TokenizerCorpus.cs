using System.Text;

namespace MiniSeq.Tests.Text;

/// <summary>The texts on which MiniSeq's tokenizers must give the Rust library's ids: a fixed corpus and random strings.</summary>
internal static class TokenizerCorpus
{
    public static readonly string[] Fixed =
    [
        "",
        " ",
        "  ",
        "Hello world",
        "Hello, world! How are you today?",
        "The quick brown fox jumps over the lazy dog. THE QUICK BROWN FOX.",
        "  leading spaces and trailing spaces   ",
        "multiple     spaces\tand\ttabs\t\t and\n\nnewlines\n",
        "Windows line endings\r\nsecond line\r\n\r\nthird\r",
        "\n\n\n   \n\t\n",
        "I'm sure you're right, she'll say it's John's and we've I'd they'd.",
        "I'M SURE YOU'RE RIGHT, SHE'LL SAY IT'S JOHN'S; WE'VE, I'D",
        "don’t won’t — curly quotes “like this” and ‘this’",
        "1 12 123 1234 12345 123456 3.14159 2026-12-01 1,000,000 0x7fff -42",
        "31415926535897932384626433832795028841971693993751058209749445923078164062862089986280348253421170679",
        "def f(x):\n    return x * 2  # comment\n\nclass A:\n\tpass\n",
        "for (int i = 0; i < n; i++) { sum += a[i] * b[i]; } // C#\nvar s = $\"{x,8:F2}\";",
        "<html><body class=\"x\">Hi &amp; bye</body></html>",
        "SELECT * FROM t WHERE id = 42 AND name LIKE '%a%';",
        "café naïve résumé Ångström Straße",
        "cafe\u0301 nai\u0308ve re\u0301sume\u0301 A\u030Angstro\u0308m",
        "\u00C5 \u212B \u0041\u030A \uFB01 \u2460 \u00BD x\u00B2 \uFF21\uFF22 \u3000full-width space",
        "你好，世界！这是一个测试。中文分词很有意思。",
        "日本語のテキスト、カタカナとひらがな。東京都",
        "한국어 텍스트입니다. 안녕하세요!",
        "مرحبا بالعالم، هذا اختبار.",
        "שלום עולם, זה מבחן.",
        "नमस्ते दुनिया, यह एक परीक्षण है।",
        "สวัสดีชาวโลก นี่คือการทดสอบ",
        "Привет, мир! Ελληνικά κείμενα.",
        "emoji 😀 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 ❤️ 🇫🇷 and more😀😀",
        "math 𝐀𝐁𝐂 𝟏𝟐𝟑 and old 𐌰𐌱 𠀀𠀁 astral letters",
        "<|begin_of_text|>Hello<|end_of_text|> and <|im_start|>user\nhi<|im_end|>",
        "text <s> with </s> sentencepiece <unk> markers<s>",
        "<|begin_of_text|><|begin_of_text|> doubled <|eot_id|>",
        "zero\u200Bwidth\u200Djoiner\uFEFFbom",
        "control \u0001\u0002\u0007\u001B[0m \u007F \u0085 \u00A0 nbsp",
        "tab\tseparated\tvalues\t1\t2\t3",
        "URL https://example.com/path?q=1&r=2#frag and email a.b@c.de",
        "🙂",
        "a",
        "’s 's 'S 'll 'LL 're 'Re",
        "▁already▁has▁meta▁spaces",
        "trailing newline\n",
        "ÿþ ÀÁÂ \u0100\u0101 \u00AD soft hyphen",
        new string('a', 5000),
        string.Concat(Enumerable.Repeat("Lorem ipsum dolor sit amet, consectetur adipiscing elit. ", 40)),
        new string(' ', 300) + "x" + new string('\n', 50),
    ];

    /// <summary>Random strings with a fixed seed: ASCII, whitespace, digits, special-token text and random scalar values.</summary>
    public static IEnumerable<string> Random(int count, int seed = 20261201)
    {
        var random = new Random(seed);
        string[] whitespace = [" ", " ", "  ", "\t", "\n", "\r\n", "\r", "\u00A0", "\u3000", "\u2028", "\u0085", "\v", "\f", "\u2009"];
        string[] specials = ["<s>", "</s>", "<unk>", "<|begin_of_text|>", "<|im_start|>", "<|endoftext|>", "'s", "'LL"];
        for (int n = 0; n < count; n++)
        {
            var sb = new StringBuilder();
            int length = random.Next(0, 40);
            for (int i = 0; i < length; i++)
            {
                int kind = random.Next(100);
                if (kind < 35)
                {
                    sb.Append((char)random.Next(32, 127));
                }
                else if (kind < 50)
                {
                    sb.Append(whitespace[random.Next(whitespace.Length)]);
                }
                else if (kind < 58)
                {
                    sb.Append((char)('0' + random.Next(10)));
                }
                else if (kind < 62)
                {
                    sb.Append(specials[random.Next(specials.Length)]);
                }
                else
                {
                    int max = random.Next(2) == 0 ? 0x10000 : 0x110000;
                    int cp;
                    do
                    {
                        cp = random.Next(0, max);
                    }
                    while (cp is >= 0xD800 and <= 0xDFFF);
                    sb.Append(char.ConvertFromUtf32(cp));
                }
            }
            yield return sb.ToString();
        }
    }
}
