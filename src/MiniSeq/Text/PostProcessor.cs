using System.Text.Json;

namespace MiniSeq.Text;

/// <summary>A post-processor adds the special tokens around an encoding when <c>add_special_tokens</c> is set.</summary>
internal abstract class PostProcessor
{
    public abstract List<int> Process(List<int> ids, bool addSpecialTokens);

    public static PostProcessor? FromJson(JsonElement e)
    {
        if (TokenizerJson.IsNull(e))
        {
            return null;
        }
        string type = TokenizerJson.TypeOf(e);
        return type switch
        {
            "Sequence" => new SequencePostProcessor(e.GetProperty("processors").EnumerateArray()
                .Select(p => FromJson(p) ?? throw TokenizerJson.Unsupported("post_processor", "null")).ToArray()),
            "ByteLevel" => new ByteLevelPostProcessor(),
            "TemplateProcessing" => TemplatePostProcessor.Parse(e),
            _ => throw TokenizerJson.Unsupported("post_processor", type),
        };
    }
}

internal sealed class SequencePostProcessor(PostProcessor[] steps) : PostProcessor
{
    public override List<int> Process(List<int> ids, bool addSpecialTokens)
    {
        foreach (PostProcessor step in steps)
        {
            ids = step.Process(ids, addSpecialTokens);
        }
        return ids;
    }
}

/// <summary>ByteLevel post-processing only trims offsets; the ids are unchanged.</summary>
internal sealed class ByteLevelPostProcessor : PostProcessor
{
    public override List<int> Process(List<int> ids, bool addSpecialTokens) => ids;
}

/// <summary>TemplateProcessing, single-sequence template: e.g. <c>[&lt;s&gt;, $A]</c> → BOS + ids.</summary>
internal sealed class TemplatePostProcessor(int[] before, int[] after) : PostProcessor
{
    public IReadOnlyList<int> Before => before;

    public IReadOnlyList<int> After => after;

    public static TemplatePostProcessor Parse(JsonElement e)
    {
        var specials = new Dictionary<string, int[]>(StringComparer.Ordinal);
        if (e.TryGetProperty("special_tokens", out JsonElement st) && st.ValueKind == JsonValueKind.Object)
        {
            foreach (JsonProperty p in st.EnumerateObject())
            {
                specials[p.Name] = p.Value.GetProperty("ids").EnumerateArray().Select(x => x.GetInt32()).ToArray();
            }
        }
        var before = new List<int>();
        var after = new List<int>();
        bool seenSequence = false;
        foreach (JsonElement piece in e.GetProperty("single").EnumerateArray())
        {
            if (piece.TryGetProperty("Sequence", out JsonElement seq))
            {
                if (seenSequence || TokenizerJson.GetString(seq, "id") != "A")
                {
                    throw TokenizerJson.Unsupported("post_processor", "TemplateProcessing", "single template must hold $A once");
                }
                seenSequence = true;
            }
            else if (piece.TryGetProperty("SpecialToken", out JsonElement sp))
            {
                string name = TokenizerJson.GetString(sp, "id") ?? "";
                if (!specials.TryGetValue(name, out int[]? ids))
                {
                    throw new InvalidDataException($"tokenizer.json: TemplateProcessing special token '{name}' is not in special_tokens");
                }
                (seenSequence ? after : before).AddRange(ids);
            }
            else
            {
                throw TokenizerJson.Unsupported("post_processor", "TemplateProcessing", "unknown template piece");
            }
        }
        if (!seenSequence)
        {
            throw TokenizerJson.Unsupported("post_processor", "TemplateProcessing", "single template without $A");
        }
        return new TemplatePostProcessor(before.ToArray(), after.ToArray());
    }

    public override List<int> Process(List<int> ids, bool addSpecialTokens)
    {
        if (!addSpecialTokens)
        {
            return ids;
        }
        var output = new List<int>(before.Length + ids.Count + after.Length);
        output.AddRange(before);
        output.AddRange(ids);
        output.AddRange(after);
        return output;
    }
}
