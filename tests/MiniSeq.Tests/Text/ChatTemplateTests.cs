using System.Text.Json;
using MiniSeq.Text;

namespace MiniSeq.Tests.Text;

/// <summary>
/// ChatTemplate against Jinja2 itself: TestData/chat_templates/expected.json holds what render_reference.py got from
/// Jinja2 configured as transformers' apply_chat_template (real templates × conversations × add_generation_prompt,
/// plus small templates for single Jinja features); every render must match byte for byte.
/// </summary>
public class ChatTemplateTests
{
    private static readonly string s_folder = Path.Combine(AppContext.BaseDirectory, "TestData", "chat_templates");
    private static readonly DateTime s_fixedNow = new(2024, 7, 26, 13, 45, 0, DateTimeKind.Utc);
    private static readonly Lazy<JsonElement> s_fixture = new(() =>
        JsonDocument.Parse(File.ReadAllBytes(Path.Combine(s_folder, "expected.json"))).RootElement);

    private static JsonElement Fixture => s_fixture.Value;

    private static ChatTemplate Load(string name)
    {
        JsonElement t = Fixture.GetProperty("templates").GetProperty(name);
        string source = File.ReadAllText(Path.Combine(s_folder, t.GetProperty("file").GetString()!));
        ChatTemplate template = ChatTemplate.Parse(source, StringOrNull(t, "bos_token"), StringOrNull(t, "eos_token"));
        template.Now = s_fixedNow;
        return template;
    }

    private static string? StringOrNull(JsonElement e, string name) =>
        e.TryGetProperty(name, out JsonElement v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

    private static List<ChatMessage> Conversation(string name) =>
        [.. Fixture.GetProperty("conversations").GetProperty(name).EnumerateArray()
            .Select(m => new ChatMessage(m.GetProperty("role").GetString()!, m.GetProperty("content").GetString()!))];

    public static TheoryData<int, string, string, bool> Cases()
    {
        var data = new TheoryData<int, string, string, bool>();
        int i = 0;
        foreach (JsonElement c in Fixture.GetProperty("cases").EnumerateArray())
        {
            data.Add(i++, c.GetProperty("template").GetString()!, c.GetProperty("conversation").GetString()!, c.GetProperty("add_generation_prompt").GetBoolean());
        }
        return data;
    }

    public static TheoryData<string> TemplateNames()
    {
        var data = new TheoryData<string>();
        foreach (JsonProperty t in Fixture.GetProperty("templates").EnumerateObject())
        {
            data.Add(t.Name);
        }
        return data;
    }

    public static TheoryData<int> FeatureIndexes()
    {
        var data = new TheoryData<int>();
        for (int i = 0; i < Fixture.GetProperty("features").GetArrayLength(); i++)
        {
            data.Add(i);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Render_RealTemplate_MatchesJinja(int index, string template, string conversation, bool addGenerationPrompt)
    {
        JsonElement c = Fixture.GetProperty("cases")[index];
        ChatTemplate chat = Load(template);
        List<ChatMessage> messages = Conversation(conversation);
        if (c.TryGetProperty("error", out JsonElement error))
        {
            var e = Assert.Throws<InvalidDataException>(() => chat.Render(messages, addGenerationPrompt));
            Assert.Equal(error.GetString(), e.Message);
        }
        else
        {
            Assert.Equal(c.GetProperty("expected").GetString(), chat.Render(messages, addGenerationPrompt));
        }
    }

    [Theory]
    [MemberData(nameof(FeatureIndexes))]
    public void Render_JinjaFeature_MatchesJinja(int index)
    {
        JsonElement c = Fixture.GetProperty("features")[index];
        string source = c.GetProperty("template").GetString()!;
        List<ChatMessage> messages = Conversation("system_multi_turn");
        if (source.Contains("wordcount", StringComparison.Ordinal))
        {
            // Jinja has it; MiniSeq refuses it at parse time rather than guess.
            var e = Assert.Throws<NotSupportedException>(() => ChatTemplate.Parse(source));
            Assert.Equal("chat template: unsupported Jinja filter 'wordcount' at line 1", e.Message);
            return;
        }
        ChatTemplate chat = ChatTemplate.Parse(source, "<s>", "</s>");
        chat.Now = s_fixedNow;
        if (c.TryGetProperty("error", out JsonElement error))
        {
            var e = Assert.Throws<InvalidDataException>(() => chat.Render(messages));
            if (c.GetProperty("error_kind").GetString() == "raise")
            {
                Assert.Equal(error.GetString(), e.Message);
            }
            Assert.DoesNotContain('\n', e.Message);
        }
        else
        {
            Assert.Equal(c.GetProperty("expected").GetString(), chat.Render(messages));
        }
    }

    [Theory]
    [MemberData(nameof(TemplateNames))]
    public void RenderSegments_EveryConversation_ConcatenatesToRenderAndMarksAssistantTurns(string name)
    {
        ChatTemplate chat = Load(name);
        string eot = EndOfTurn(name);
        foreach (JsonProperty conv in Fixture.GetProperty("conversations").EnumerateObject())
        {
            List<ChatMessage> messages = Conversation(conv.Name);
            JsonElement c = Fixture.GetProperty("cases").EnumerateArray().First(x =>
                x.GetProperty("template").GetString() == name && x.GetProperty("conversation").GetString() == conv.Name
                && !x.GetProperty("add_generation_prompt").GetBoolean());
            if (c.TryGetProperty("error", out _))
            {
                Assert.Throws<InvalidDataException>(() => chat.RenderSegments(messages));
                continue;
            }
            if (name == "llama3_base" && messages.SkipLast(1).Any(m => m.Role == "assistant"))
            {
                // This template always appends the assistant header, so a past turn is never a prefix of the whole.
                var e = Assert.Throws<NotSupportedException>(() => chat.RenderSegments(messages));
                Assert.StartsWith("chat template: cannot mark assistant turns", e.Message);
                continue;
            }
            IReadOnlyList<(string Text, bool Trainable)> segments = chat.RenderSegments(messages);
            Assert.Equal(c.GetProperty("expected").GetString(), string.Concat(segments.Select(s => s.Text)));
            string[] trainable = [.. segments.Where(s => s.Trainable).Select(s => s.Text)];
            Assert.Equal(messages.Count(m => m.Role == "assistant"), trainable.Length);
            foreach (string span in trainable)
            {
                Assert.Contains(eot, span);
            }
            foreach (ChatMessage m in messages)
            {
                string lastLine = m.Content.Split('\n').Select(l => l.Trim()).LastOrDefault(l => l.Length > 0) ?? "";
                if (lastLine.Length == 0)
                {
                    continue;
                }
                if (m.Role == "assistant")
                {
                    Assert.Contains(trainable, s => s.Contains(lastLine, StringComparison.Ordinal));
                }
                else if (!messages.Any(a => a.Role == "assistant" && a.Content.Contains(lastLine, StringComparison.Ordinal)))
                {
                    Assert.DoesNotContain(trainable, s => s.Contains(lastLine, StringComparison.Ordinal));
                }
            }
        }
    }

    private static string EndOfTurn(string name) => name switch
    {
        "llama3_base" or "llama3_instruct" or "llama3_1" or "llama3_2" => "<|eot_id|>",
        "qwen2_5" or "qwen3" or "smollm2" => "<|im_end|>",
        _ => "</s>",
    };

    [Fact]
    public void RenderSegments_Llama31_SpansAreExact()
    {
        ChatTemplate chat = Load("llama3_1");
        IReadOnlyList<(string Text, bool Trainable)> segments = chat.RenderSegments(Conversation("system_multi_turn"));
        Assert.Equal(
        [
            ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"
                + "You are a helpful assistant.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
                + "<|start_header_id|>assistant<|end_header_id|>\n\n", false),
            ("2+2 is 4.<|eot_id|>", true),
            ("<|start_header_id|>user<|end_header_id|>\n\nAnd 3+3?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n", false),
            ("3+3 is 6.<|eot_id|>", true),
        ], segments);
    }

    [Fact]
    public void RenderSegments_Qwen3PastTurnsWithoutReasoning_MarksTheTurnAsRenderedInTheWhole()
    {
        ChatTemplate chat = Load("qwen3");
        IReadOnlyList<(string Text, bool Trainable)> segments = chat.RenderSegments(Conversation("think_multi_turn"));
        Assert.Equal(
        [
            ("<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\n", false),
            ("A1<|im_end|>\n", true),
            ("<|im_start|>user\nQ2<|im_end|>\n<|im_start|>assistant\n", false),
            ("<think>\nr2\n</think>\n\nA2<|im_end|>\n", true),
        ], segments);
    }

    [Fact]
    public void RenderSegments_MistralV03SystemPromptMovesToLastUser_SpansMatchTheTurnsWithoutSystem()
    {
        ChatTemplate chat = Load("mistral_v0_3");
        IReadOnlyList<(string Text, bool Trainable)> segments = chat.RenderSegments(Conversation("system_multi_turn"));
        Assert.Equal(
        [
            ("<s>[INST] What is 2+2?[/INST]", false),
            (" 2+2 is 4.</s>", true),
            ("[INST] And 3+3?[/INST]", false), // the template adds the system prompt only when a user message is last
            (" 3+3 is 6.</s>", true),
        ], segments);
    }

    [Fact]
    public void Render_Llama32_DateComesFromNow()
    {
        ChatTemplate chat = Load("llama3_2");
        chat.Now = new DateTime(2025, 2, 3, 0, 0, 0, DateTimeKind.Utc);
        Assert.Contains("Today Date: 03 Feb 2025\n", chat.Render([new ChatMessage("user", "hi")]));
    }

    [Fact]
    public void Render_MistralRolesNotAlternating_ThrowsOneLineFromTheTemplate()
    {
        ChatTemplate chat = Load("mistral_v0_1");
        var e = Assert.Throws<InvalidDataException>(() => chat.Render([new ChatMessage("user", "a"), new ChatMessage("user", "b")]));
        Assert.Equal("Conversation roles must alternate user/assistant/user/assistant/...", e.Message);
    }

    [Theory]
    [InlineData("{{ messages | wordcount }}", "chat template: unsupported Jinja filter 'wordcount' at line 1")]
    [InlineData("a\n\n{% include 'other.jinja' %}", "chat template: unsupported Jinja tag 'include' at line 3")]
    [InlineData("{{ 'x {}'.format(1) }}", "chat template: unsupported Jinja method 'format' at line 1")]
    [InlineData("{% if x is prime %}{% endif %}", "chat template: unsupported Jinja test 'prime' at line 1")]
    [InlineData("{{ cycler(1, 2) }}", "chat template: unsupported Jinja function 'cycler' at line 1")]
    [InlineData("{% for m in messages %}", "chat template: missing 'endfor' for the block opened at line 1")]
    [InlineData("{{ 1 + }}", "chat template: expected an expression at line 1")]
    public void Parse_UnsupportedOrBrokenTemplate_ThrowsOneLine(string source, string message)
    {
        var e = Assert.Throws<NotSupportedException>(() => ChatTemplate.Parse(source));
        Assert.Equal(message, e.Message);
    }

    [Fact]
    public void Render_GenerationBlock_RendersItsBody()
    {
        ChatTemplate chat = ChatTemplate.Parse("{% for m in messages %}{% generation %}{{ m.content }}{% endgeneration %}|{% endfor %}");
        Assert.Equal("a|b|", chat.Render([new ChatMessage("user", "a"), new ChatMessage("assistant", "b")]));
    }

    [Fact]
    public void FromTokenizerConfig_CommittedTokenizers_ReadTemplateAndTokens()
    {
        string tokenizers = Path.Combine(AppContext.BaseDirectory, "TestData", "tokenizers");
        ChatTemplate? qwen = ChatTemplate.FromTokenizerConfig(Path.Combine(tokenizers, "qwen3", "tokenizer_config.json"));
        Assert.NotNull(qwen);
        Assert.Null(qwen.BosToken);
        Assert.Equal("<|im_end|>", qwen.EosToken);
        Assert.Equal("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n", qwen.Render([new ChatMessage("user", "hi")], addGenerationPrompt: true));

        ChatTemplate? llama = ChatTemplate.FromTokenizerConfig(Path.Combine(tokenizers, "llama3", "tokenizer_config.json"));
        Assert.NotNull(llama);
        Assert.Equal("<|begin_of_text|>", llama.BosToken);

        Assert.Null(ChatTemplate.FromTokenizerConfig(Path.Combine(tokenizers, "llama2", "tokenizer_config.json")));
    }

    [Fact]
    public void FromTokenizerConfig_ListFormAndTokenObjects_TakesDefault()
    {
        string path = Path.Combine(Path.GetTempPath(), $"miniseq-chat-{Environment.ProcessId}-tokenizer_config.json");
        File.WriteAllText(path, """
            {"bos_token": {"content": "<s>", "lstrip": false}, "eos_token": "</s>",
             "chat_template": [{"name": "tool_use", "template": "tools"}, {"name": "default", "template": "{{ bos_token }}{{ messages[0].content }}{{ eos_token }}"}]}
            """);
        try
        {
            ChatTemplate? chat = ChatTemplate.FromTokenizerConfig(path);
            Assert.NotNull(chat);
            Assert.Equal("<s>hello</s>", chat.Render([new ChatMessage("user", "hello")]));
        }
        finally
        {
            File.Delete(path);
        }
    }
}
