// Hugging Face chat templates (the Jinja2 "chat_template" of tokenizer_config.json) rendered exactly as transformers'
// apply_chat_template renders them, plus the split of a rendered conversation into trainable (assistant-generated)
// and context spans for supervised fine-tuning. The Jinja subset lives in Jinja*.cs; this file is the public API.
// Not supported: tools/documents (always None), multimodal (list) contents, and Jinja beyond what Jinja*.cs implements
// (rejected at Parse with one line naming the construct).

using System.Text.Json;

namespace MiniSeq.Text;

/// <summary>One message of a conversation: a role ("system", "user", "assistant", …) and its text.</summary>
public sealed record ChatMessage(string Role, string Content);

/// <summary>
/// A parsed chat template. <see cref="Render"/> gives byte for byte what transformers' <c>apply_chat_template(…,
/// tokenize=False)</c> gives: Jinja2 with <c>trim_blocks</c> and <c>lstrip_blocks</c>, the variables <c>messages</c>,
/// <c>add_generation_prompt</c>, <c>bos_token</c>/<c>eos_token</c> (when set), <c>tools</c> and <c>documents</c>
/// (None), and the functions <c>raise_exception</c> and <c>strftime_now</c>; its <c>tojson</c> is transformers' one.
/// </summary>
/// <remarks>
/// Supported Jinja: text with <c>{%- -%}</c>/<c>{{- -}}</c>/<c>{#- -#}</c> whitespace control; <c>if/elif/else</c>,
/// <c>for … in … [if …]</c> with <c>loop.*</c> and <c>else</c>, <c>break</c>/<c>continue</c>, <c>set</c> (also tuple,
/// namespace attribute and block forms), <c>macro</c>, <c>generation</c>; literals, lists, dicts, attribute and item
/// access, slices, arithmetic, <c>~</c>, comparisons, <c>in</c>, <c>and/or/not</c>, conditional expressions; the
/// filters, tests and string/dict methods listed in <c>JinjaBuiltins</c>. Thread-safe: a template may be rendered
/// from several threads at once.
/// </remarks>
public sealed class ChatTemplate
{
    private readonly JinjaTemplate _template;

    private ChatTemplate(JinjaTemplate template) => _template = template;

    /// <summary>The BOS token the template sees as <c>bos_token</c> (undefined when null).</summary>
    public string? BosToken { get; init; }

    /// <summary>The EOS token the template sees as <c>eos_token</c> (undefined when null).</summary>
    public string? EosToken { get; init; }

    /// <summary>The time <c>strftime_now</c> formats (Llama 3.2 puts today's date in the system header). Default: now, UTC.</summary>
    public DateTime Now { get; set; } = DateTime.UtcNow;

    /// <summary>
    /// Parses a Jinja2 chat template. Throws <see cref="NotSupportedException"/> with one line naming the first
    /// construct MiniSeq does not implement (e.g. "chat template: unsupported Jinja filter 'wordcount' at line 3").
    /// </summary>
    public static ChatTemplate Parse(string template, string? bosToken = null, string? eosToken = null)
    {
        ArgumentNullException.ThrowIfNull(template);
        return new ChatTemplate(JinjaTemplate.Parse(template)) { BosToken = bosToken, EosToken = eosToken };
    }

    /// <summary>
    /// Chat messages → text segments marked trainable (<see cref="RenderSegments"/>) by the chat template of the
    /// tokenizer at <paramref name="tokenizerPath"/>, parsed on first use (text-only data never needs one); a tokenizer
    /// without a template fails then, in one line. The shape <c>CorpusOptions.RenderChat</c> takes.
    /// </summary>
    public static Func<IReadOnlyList<(string Role, string Content)>, IReadOnlyList<(string Text, bool Trainable)>> SegmentRenderer(string tokenizerPath)
    {
        string configPath = Tokenizer.Files(tokenizerPath).Config;
        var template = new Lazy<ChatTemplate>(() => (File.Exists(configPath) ? FromTokenizerConfig(configPath) : null)
            ?? throw new InvalidDataException($"{configPath}: no chat_template; chat messages need a tokenizer whose tokenizer_config.json has one."));
        return messages => template.Value.RenderSegments([.. messages.Select(m => new ChatMessage(m.Role, m.Content))]);
    }

    /// <summary>
    /// The chat template of a <c>tokenizer_config.json</c> (a string, or the list of <c>{name, template}</c> objects,
    /// of which "default" is taken) with its <c>bos_token</c>/<c>eos_token</c> (a string or <c>{"content": …}</c>);
    /// null when the file has no chat template.
    /// </summary>
    public static ChatTemplate? FromTokenizerConfig(string tokenizerConfigPath)
    {
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllBytes(tokenizerConfigPath));
        JsonElement root = doc.RootElement;
        if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("chat_template", out JsonElement t))
        {
            return null;
        }
        string? template = t.ValueKind switch
        {
            JsonValueKind.String => t.GetString(),
            JsonValueKind.Array => t.EnumerateArray()
                .Where(e => e.ValueKind == JsonValueKind.Object && TokenizerJson.GetString(e, "name") == "default")
                .Select(e => TokenizerJson.GetString(e, "template"))
                .FirstOrDefault(),
            JsonValueKind.Null => null,
            _ => throw new InvalidDataException($"{tokenizerConfigPath}: chat_template must be a string or a list of {{name, template}}"),
        };
        if (template is null)
        {
            return null;
        }
        return Parse(template, TokenText(root, "bos_token"), TokenText(root, "eos_token"));
    }

    private static string? TokenText(JsonElement root, string name) =>
        !root.TryGetProperty(name, out JsonElement v) ? null
        : v.ValueKind == JsonValueKind.String ? v.GetString()
        : v.ValueKind == JsonValueKind.Object ? TokenizerJson.GetString(v, "content")
        : null;

    /// <summary>
    /// Renders a conversation; <paramref name="addGenerationPrompt"/> appends the header that starts an assistant turn.
    /// A <c>raise_exception</c> in the template (e.g. roles that do not alternate) and runtime errors such as
    /// arithmetic on an undefined variable throw <see cref="InvalidDataException"/>.
    /// </summary>
    public string Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt = false)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var list = new List<object?>(messages.Count);
        foreach (ChatMessage m in messages)
        {
            var dict = new JinjaDict();
            dict.Set("role", m.Role);
            dict.Set("content", m.Content);
            list.Add(dict);
        }
        var variables = new Dictionary<string, object?>(StringComparer.Ordinal)
        {
            ["messages"] = list,
            ["tools"] = null,
            ["documents"] = null,
            ["add_generation_prompt"] = addGenerationPrompt,
        };
        if (BosToken is not null)
        {
            variables["bos_token"] = BosToken;
        }
        if (EosToken is not null)
        {
            variables["eos_token"] = EosToken;
        }
        return _template.Render(variables, new JinjaRenderContext(Now));
    }

    /// <summary>
    /// <see cref="Render"/>(messages) cut into consecutive pieces, each flagged whether it is assistant output that
    /// training should score; the texts concatenate to <see cref="Render"/>(messages).
    /// </summary>
    /// <remarks>
    /// For each assistant message i the trainable span starts where <c>Render(messages[..i], addGenerationPrompt:
    /// true)</c> ends (after the assistant header) and ends where <c>Render(messages[..(i+1)])</c> ends, so it holds
    /// the content and the end-of-turn token (<c>&lt;|eot_id|&gt;</c>, <c>&lt;|im_end|&gt;\n</c>, <c>&lt;/s&gt;</c>) the
    /// model must learn to emit. A template that moves the system prompt (Mistral v0.3 puts it into the last user
    /// message) is handled by finding the turn's text from the renders without the system message. Templates that render an earlier turn differently once later messages follow (Qwen3
    /// drops the reasoning of past turns) are handled by taking the end of turn i from <c>Render(messages[..(i+2)])</c>
    /// less the rendering of message i+1 alone. When neither holds the template cannot mark assistant turns and a
    /// <see cref="NotSupportedException"/> says so.
    /// </remarks>
    public IReadOnlyList<(string Text, bool Trainable)> RenderSegments(IReadOnlyList<ChatMessage> messages)
    {
        ArgumentNullException.ThrowIfNull(messages);
        string full = Render(messages);
        var segments = new List<(string, bool)>();
        int done = 0;
        for (int i = 0; i < messages.Count; i++)
        {
            if (messages[i].Role != "assistant")
            {
                continue;
            }
            string withTurn = Render(Prefix(messages, i + 1));
            int start = StartOfTurn(messages, i, withTurn);
            if (start < done)
            {
                throw CannotMark(i, "the turn starts inside the previous one");
            }
            int end;
            if (full.StartsWith(withTurn, StringComparison.Ordinal))
            {
                end = withTurn.Length;
            }
            else
            {
                // The turn renders differently once more messages follow: find where message i+1 starts instead.
                string upToNext = Render(Prefix(messages, i + 2));
                string next = Render([messages[i + 1]]);
                end = upToNext.Length - next.Length;
                if (!full.StartsWith(upToNext, StringComparison.Ordinal) || !upToNext.EndsWith(next, StringComparison.Ordinal) || end < start)
                {
                    throw CannotMark(i, "the rendered turn is not a prefix of the whole conversation");
                }
            }
            if (!full.StartsWith(withTurn.AsSpan(0, start), StringComparison.Ordinal))
            {
                throw CannotMark(i, "the text before the turn differs from the whole conversation");
            }
            if (start > done)
            {
                segments.Add((full[done..start], false));
            }
            if (end > start)
            {
                segments.Add((full[start..end], true));
            }
            done = Math.Max(done, end);
        }
        if (done < full.Length)
        {
            segments.Add((full[done..], false));
        }
        return segments;
    }

    /// <summary>
    /// Where assistant message i starts in <paramref name="withTurn"/> (the render of messages[..(i+1)]): after the
    /// render of messages[..i] with the generation prompt when that is a prefix. Otherwise (Mistral v0.3 moves the
    /// system prompt into the last user message) the turn's text is taken from the same two renders without a
    /// leading system message, and must end <paramref name="withTurn"/>.
    /// </summary>
    private int StartOfTurn(IReadOnlyList<ChatMessage> messages, int i, string withTurn)
    {
        string prompt = Render(Prefix(messages, i), addGenerationPrompt: true);
        if (withTurn.StartsWith(prompt, StringComparison.Ordinal))
        {
            return prompt.Length;
        }
        if (messages[0].Role == "system" && i > 1)
        {
            ChatMessage[] rest = [.. messages.Skip(1).Take(i)];
            string restPrompt = Render(rest[..^1], addGenerationPrompt: true);
            string restTurn = Render(rest);
            if (restTurn.StartsWith(restPrompt, StringComparison.Ordinal)
                && withTurn.EndsWith(restTurn.AsSpan(restPrompt.Length), StringComparison.Ordinal))
            {
                return withTurn.Length - (restTurn.Length - restPrompt.Length);
            }
        }
        throw CannotMark(i, "the prompt with the generation header is not a prefix of the rendered turn");
    }

    private static ChatMessage[] Prefix(IReadOnlyList<ChatMessage> messages, int count) => [.. messages.Take(count)];

    private static NotSupportedException CannotMark(int index, string why) =>
        new($"chat template: cannot mark assistant turns (message {index}: {why})");
}
