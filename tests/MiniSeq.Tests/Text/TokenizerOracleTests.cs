using MiniSeq.Text;
using Xunit.Abstractions;

namespace MiniSeq.Tests.Text;

/// <summary>
/// MiniSeq's tokenizer against the Rust <c>tokenizers</c> library (through Tokenizers.DotNet): the same ids with
/// special tokens (the oracle's <c>Encode</c> applies the post-processor), the same ids without them (the oracle's ids
/// minus the post-processor's prefix, which is the oracle's encoding of ""), and the same decoded text (the oracle
/// decodes with skip_special_tokens = true).
/// </summary>
public sealed class TokenizerOracleTests(ITestOutputHelper output)
{
    private const int RandomStrings = 400;

    public static TheoryData<string> Names() => new(TokenizerFiles.Names);

    [Theory]
    [MemberData(nameof(Names))]
    public void Encode_matches_rust_on_the_fixed_corpus(string name) =>
        AssertEncodeMatches(name, TokenizerCorpus.Fixed);

    [Theory]
    [MemberData(nameof(Names))]
    public void Encode_matches_rust_on_random_strings(string name) =>
        AssertEncodeMatches(name, TokenizerCorpus.Random(RandomStrings).ToArray());

    [Theory]
    [MemberData(nameof(Names))]
    public void Decode_matches_rust_on_random_id_sequences(string name)
    {
        Tokenizer ours = TokenizerFiles.Ours(name);
        Tokenizers.DotNet.Tokenizer oracle = TokenizerFiles.Oracle(name);
        var random = new Random(7);
        var failures = new List<string>();
        int compared = 0;
        for (int n = 0; n < 300; n++)
        {
            int[] ids = new int[random.Next(0, 12)];
            for (int i = 0; i < ids.Length; i++)
            {
                // Mostly low ids (bytes, byte-fallback tokens, short pieces), some anywhere, some added tokens.
                int kind = random.Next(10);
                ids[i] = kind < 5 ? random.Next(0, 600) : kind < 9 ? random.Next(0, ours.VocabSize) : ours.VocabSize - 1 - random.Next(0, 30);
            }
            string expected = oracle.Decode(ids.Select(i => (uint)i).ToArray());
            string actual = ours.Decode(ids, skipSpecialTokens: true);
            compared++;
            if (expected != actual && failures.Count < 10)
            {
                failures.Add($"[{string.Join(",", ids)}]: rust {Show(expected)} ours {Show(actual)}");
            }
        }
        output.WriteLine($"{name}: {compared} random id sequences decoded");
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    private void AssertEncodeMatches(string name, string[] texts)
    {
        Tokenizer ours = TokenizerFiles.Ours(name);
        Tokenizers.DotNet.Tokenizer oracle = TokenizerFiles.Oracle(name);
        int[] prefix = ToInts(oracle.Encode(""));
        var failures = new List<string>();
        int compared = 0;
        foreach (string text in texts)
        {
            int[] expected = ToInts(oracle.Encode(text));
            Check(failures, text, "add_special_tokens=true", expected, ours.Encode(text, addSpecialTokens: true));
            Assert.True(expected.AsSpan().StartsWith(prefix), $"oracle ids of {Show(text)} do not start with the template prefix");
            Check(failures, text, "add_special_tokens=false", expected[prefix.Length..], ours.Encode(text, addSpecialTokens: false));
            string expectedText = oracle.Decode(oracle.Encode(text));
            Check(failures, text, "decode", expectedText, ours.Decode(expected, skipSpecialTokens: true));
            compared++;
        }
        output.WriteLine($"{name}: {compared} texts, {3 * compared} comparisons (ids with and without special tokens, decoded text)");
        Assert.True(failures.Count == 0, $"{failures.Count} mismatches:\n" + string.Join("\n", failures.Take(10)));
    }

    private static void Check(List<string> failures, string text, string what, int[] expected, int[] actual)
    {
        if (!expected.AsSpan().SequenceEqual(actual))
        {
            failures.Add($"{what} {Show(text)}:\n  rust [{string.Join(",", expected.Take(40))}]\n  ours [{string.Join(",", actual.Take(40))}]");
        }
    }

    private static void Check(List<string> failures, string text, string what, string expected, string actual)
    {
        if (expected != actual)
        {
            failures.Add($"{what} {Show(text)}: rust {Show(expected)} ours {Show(actual)}");
        }
    }

    private static int[] ToInts(uint[] ids) => ids.Select(i => (int)i).ToArray();

    private static string Show(string s)
    {
        string shown = string.Concat(s.Take(80).Select(c => c < ' ' || c is > '~' and < '\u00A1' || char.IsSurrogate(c) || c is '\u2028' or '\u3000' ? $"\\u{(int)c:X4}" : c.ToString()));
        return $"\"{shown}\"{(s.Length > 80 ? $"…({s.Length})" : "")}";
    }
}
