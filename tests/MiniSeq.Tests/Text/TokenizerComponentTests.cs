using System.Text.Json.Nodes;
using MiniSeq.Text;
using Xunit.Abstractions;

namespace MiniSeq.Tests.Text;

/// <summary>
/// Components that the committed tokenizers do not use, checked against the Rust library on variants of them: the
/// Llama 2 (SentencePiece-style, byte fallback) or Llama 3 (byte-level) vocabulary with another normalizer,
/// pre-tokenizer, post-processor, decoder or extra added tokens, written to a temporary tokenizer.json.
/// </summary>
public sealed class TokenizerComponentTests(ITestOutputHelper output)
{
    public static TheoryData<string> Variants() => new(s_variants.Keys);

    private static readonly Dictionary<string, (string Base, Action<JsonObject> Edit)> s_variants = new()
    {
        ["metaspace-first-nfkc-lowercase"] = ("llama2", j =>
        {
            j["normalizer"] = Parse("""{"type":"Sequence","normalizers":[{"type":"NFKC"},{"type":"Lowercase"}]}""");
            j["pre_tokenizer"] = Parse("""{"type":"Metaspace","replacement":"▁","prepend_scheme":"first","split":true}""");
            j["decoder"] = Parse("""{"type":"Sequence","decoders":[{"type":"ByteFallback"},{"type":"Metaspace","replacement":"▁","prepend_scheme":"first","split":true}]}""");
        }
        ),
        ["metaspace-always-nfd-digits"] = ("llama2", j =>
        {
            j["normalizer"] = Parse("""{"type":"NFD"}""");
            j["pre_tokenizer"] = Parse("""{"type":"Sequence","pretokenizers":[{"type":"Digits","individual_digits":true},{"type":"Metaspace","replacement":"▁","prepend_scheme":"always","split":false}]}""");
            j["post_processor"] = Parse("""{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<s>","type_id":0}},{"Sequence":{"id":"A","type_id":0}},{"SpecialToken":{"id":"</s>","type_id":0}}],"pair":[],"special_tokens":{"<s>":{"id":"<s>","ids":[1],"tokens":["<s>"]},"</s>":{"id":"</s>","ids":[2],"tokens":["</s>"]}}}""");
        }
        ),
        ["sentencepiece-nfkd-strip-replace-added"] = ("llama2", j =>
        {
            j["normalizer"] = Parse("""{"type":"Sequence","normalizers":[{"type":"NFKD"},{"type":"Replace","pattern":{"Regex":"\\s+"},"content":" "},{"type":"Prepend","prepend":"▁"},{"type":"Replace","pattern":{"String":" "},"content":"▁"}]}""");
            JsonArray added = j["added_tokens"]!.AsArray();
            added.Add(Parse("""{"id":32000,"content":"<mask>","single_word":false,"lstrip":true,"rstrip":true,"normalized":false,"special":true}"""));
            added.Add(Parse("""{"id":32001,"content":"hello","single_word":true,"lstrip":false,"rstrip":false,"normalized":true,"special":false}"""));
            added.Add(Parse("""{"id":32002,"content":"ab","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":false}"""));
        }
        ),
        ["gpt2-bytelevel-prefix-template"] = ("llama3", j =>
        {
            j["pre_tokenizer"] = Parse("""{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":true,"use_regex":true}""");
            j["post_processor"] = Parse("""{"type":"Sequence","processors":[{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":false,"use_regex":true},{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<|begin_of_text|>","type_id":0}},{"Sequence":{"id":"A","type_id":0}},{"SpecialToken":{"id":"<|end_of_text|>","type_id":0}}],"pair":[],"special_tokens":{"<|begin_of_text|>":{"id":"<|begin_of_text|>","ids":[128000],"tokens":["<|begin_of_text|>"]},"<|end_of_text|>":{"id":"<|end_of_text|>","ids":[128001],"tokens":["<|end_of_text|>"]}}}]}""");
            j["model"]!["ignore_merges"] = false;
        }
        ),
        ["sentencepiece-unk-fused"] = ("llama2", j =>
        {
            j["model"]!["byte_fallback"] = false;
            j["model"]!["fuse_unk"] = true;
        }
        ),
        ["sentencepiece-unk-unfused"] = ("llama2", j =>
        {
            j["model"]!["byte_fallback"] = false;
            j["model"]!["fuse_unk"] = false;
        }
        ),
        ["split-behaviors-digits"] = ("llama3", j =>
        {
            j["normalizer"] = Parse("""{"type":"NFKC"}""");
            j["pre_tokenizer"] = Parse("""{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"String":","},"behavior":"Removed","invert":false},{"type":"Split","pattern":{"Regex":"[.!?]+"},"behavior":"MergedWithPrevious","invert":false},{"type":"Split","pattern":{"Regex":"\\p{Lu}"},"behavior":"MergedWithNext","invert":false},{"type":"Split","pattern":{"Regex":"\\s"},"behavior":"Contiguous","invert":true},{"type":"Digits","individual_digits":false},{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true}]}""");
        }
        ),
    };

    private static JsonNode Parse(string json) => JsonNode.Parse(json)!;

    [Theory]
    [MemberData(nameof(Variants))]
    public void Variant_matches_rust(string variant)
    {
        (string baseName, Action<JsonObject> edit) = s_variants[variant];
        string dir = Path.Combine(Path.GetTempPath(), $"miniseq-tokenizer-variants-{Environment.ProcessId}", variant);
        Directory.CreateDirectory(dir);
        string file = Path.Combine(dir, "tokenizer.json");
        var json = JsonNode.Parse(File.ReadAllText(Path.Combine(TokenizerFiles.Directory(baseName), "tokenizer.json")))!.AsObject();
        edit(json);
        File.WriteAllText(file, json.ToJsonString());

        Tokenizer ours = Tokenizer.Load(file);
        using var oracle = new Tokenizers.DotNet.Tokenizer(file);
        var failures = new List<string>();
        string[] texts = [.. TokenizerCorpus.Fixed, .. TokenizerCorpus.Random(200, seed: 99),
            "hello world, hello-there xhello hello_ <mask>  x  <mask>y ab abc cab HELLO ΣΑΣ ΌΣΟΣ İstanbul"];
        foreach (string text in texts)
        {
            uint[] expected = oracle.Encode(text);
            int[] actual = ours.Encode(text);
            if (!expected.Select(i => (int)i).SequenceEqual(actual))
            {
                int first = expected.Select(i => (int)i).Zip(actual).TakeWhile(p => p.First == p.Second).Count();
                failures.Add($"encode \"{text[..Math.Min(60, text.Length)]}\" from id {first}: rust [{string.Join(",", expected.Skip(first).Take(20))}] ours [{string.Join(",", actual.Skip(first).Take(20))}]");
                continue;
            }
            string expectedText = oracle.Decode(expected);
            string actualText = ours.Decode(actual, skipSpecialTokens: true);
            if (expectedText != actualText)
            {
                failures.Add($"decode \"{text[..Math.Min(60, text.Length)]}\": rust \"{expectedText}\" ours \"{actualText}\"");
            }
        }
        output.WriteLine($"{variant}: {texts.Length} texts, ids and decoded text compared");
        Assert.True(failures.Count == 0, $"{failures.Count} mismatches:\n" + string.Join("\n", failures.Take(8)));
    }
}
