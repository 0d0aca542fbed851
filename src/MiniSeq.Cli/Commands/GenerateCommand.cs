// `miniseq generate`: continue a prompt with a model, streaming each token as it is decoded (KV-cache decoding,
// MiniSeq.Generation). With --tokenizer the prompt is text (encoded with special tokens) and the continuation is
// printed as text: the generated ids are decoded after every token and the new suffix printed, so a multi-byte
// character appears once it is complete. Without --tokenizer the prompt is a list of token ids and ids are printed.
using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using MiniSeq.Generation;
using MiniSeq.IO;
using MiniSeq.Model;
using MiniSeq.Text;

namespace MiniSeq.Cli.Commands;

internal static class GenerateCommand
{
    private static readonly Option<string> ModelDir = new("--model") { Description = "Hugging Face model directory", Required = true };
    private static readonly Option<string?> TokenizerPath = new("--tokenizer") { Description = "tokenizer.json, or a directory holding it (default: the model directory's, if it has one); without a tokenizer the prompt is token ids and ids are printed" };
    private static readonly Option<bool> Chat = new("--chat") { Description = "Wrap the prompt as one user message in the tokenizer's chat template (tokenizer_config.json), with the assistant header after it" };
    private static readonly Option<string?> Prompt = new("--prompt") { Description = "Prompt text (with --tokenizer), or token ids separated by commas or spaces" };
    private static readonly Option<string?> PromptFile = new("--prompt-file") { Description = "UTF-8 file holding the prompt (text, or ids without --tokenizer)" };
    private static readonly Option<int> MaxNewTokens = new("--max-new-tokens") { Description = "Tokens to generate at most (fewer at end of sequence or max_position_embeddings)", DefaultValueFactory = _ => 64 };
    private static readonly Option<float> Temperature = new("--temperature") { Description = "Softmax temperature; 0 = greedy", DefaultValueFactory = _ => 0f };
    private static readonly Option<int> TopK = new("--top-k") { Description = "Sample from the k most probable tokens (0 = all)", DefaultValueFactory = _ => 0 };
    private static readonly Option<float> TopP = new("--top-p") { Description = "Sample from the smallest set of tokens whose probability reaches p (1 = all)", DefaultValueFactory = _ => 1f };
    private static readonly Option<ulong> Seed = new("--seed") { Description = "Sampling seed", DefaultValueFactory = _ => 0UL };
    private static readonly Option<string?> Adapter = new("--adapter") { Description = "PEFT LoRA adapter directory: merged into the --model weights in memory before generating" };

    public static Command Create()
    {
        var command = new Command("generate", "Continue a prompt with a model (KV cache), printing tokens as they are decoded");
        command.Options.Add(ModelDir);
        command.Options.Add(TokenizerPath);
        command.Options.Add(Chat);
        command.Options.Add(Prompt);
        command.Options.Add(PromptFile);
        command.Options.Add(MaxNewTokens);
        command.Options.Add(Temperature);
        command.Options.Add(TopK);
        command.Options.Add(TopP);
        command.Options.Add(Seed);
        command.Options.Add(Adapter);
        command.SetAction(p =>
        {
            string? promptText = p.GetValue(Prompt), promptFile = p.GetValue(PromptFile);
            if ((promptText is null) == (promptFile is null))
            {
                throw new ArgumentException("give exactly one of --prompt TEXT and --prompt-file FILE");
            }

            promptText ??= File.ReadAllText(promptFile!);
            int maxNew = p.GetValue(MaxNewTokens);
            if (maxNew < 0)
            {
                throw new ArgumentException($"--max-new-tokens must be ≥ 0, got {maxNew}");
            }

            var samplerOptions = new SamplerOptions { Temperature = p.GetValue(Temperature), TopK = p.GetValue(TopK), TopP = p.GetValue(TopP), Seed = p.GetValue(Seed) };
            try
            {
                samplerOptions.Validate();
            }
            catch (ArgumentOutOfRangeException e)
            {
                throw new ArgumentException("--" + e.Message.Split(" (Parameter", 2)[0]);
            }

            string? tokenizerPath = Tokenizer.PathOrModelDefault(p.GetValue(TokenizerPath), p.GetValue(ModelDir)!);
            Tokenizer? tokenizer = tokenizerPath is null ? null : Tokenizer.Load(tokenizerPath);
            bool chat = p.GetValue(Chat);
            if (chat && tokenizer is null)
            {
                throw new ArgumentException("--chat needs a tokenizer (--tokenizer, or tokenizer.json in the model directory)");
            }

            ChatTemplate? template = chat ? ChatTemplateOf(tokenizerPath!) : null;
            int[] prompt = tokenizer is null ? ParseIds(promptText)
                : template is not null ? tokenizer.Encode(template.Render([new ChatMessage("user", promptText)], addGenerationPrompt: true), addSpecialTokens: false) // the template writes BOS itself
                : tokenizer.Encode(promptText, addSpecialTokens: true);
            if (prompt.Length == 0)
            {
                throw new ArgumentException("the prompt is empty");
            }

            using LlamaModel model = p.GetValue(Adapter) is string adapter
                ? MergeCommand.LoadAdapted(p.GetValue(ModelDir)!, adapter)
                : ModelDirectory.Load(p.GetValue(ModelDir)!, warn: w => Console.Error.WriteLine($"warning: {w}"));
            if (model.Adapters is not null)
            {
                model.MergeAdapters(); // the KV-cache generator runs on plain weights
            }

            LlamaConfig config = model.Config;
            foreach (int id in prompt)
            {
                if ((uint)id >= (uint)config.VocabSize)
                {
                    throw new ArgumentException($"prompt token id {id} is outside the model's vocabulary [0, {config.VocabSize})");
                }
            }

            if (prompt.Length > config.MaxPositionEmbeddings)
            {
                throw new ArgumentException($"the prompt has {prompt.Length} tokens; the model takes at most max_position_embeddings = {config.MaxPositionEmbeddings}");
            }

            int newTokens = Math.Min(maxNew, config.MaxPositionEmbeddings - prompt.Length);
            int[] stop = tokenizer?.EosId is int eos ? [eos] : [];
            if (template is { EosToken: string endOfTurn } && tokenizer!.TokenToId(endOfTurn) is int endId)
            {
                stop = [.. stop, endId]; // chat models end a turn with the template's eos token (e.g. <|eot_id|>, <|im_end|>)
            }

            using var generator = new Generator(model, prompt.Length + Math.Max(newTokens, 0)) { PrefillProgress = PrefillProgress(config.HiddenSize) };
            var stopwatch = Stopwatch.StartNew();
            var generated = new List<int>();
            string printed = tokenizer is null ? "" : tokenizer.Decode(prompt, skipSpecialTokens: true);
            var all = new List<int>(prompt);
            foreach (int token in generator.Generate(prompt, newTokens, new Sampler(samplerOptions), stop))
            {
                generated.Add(token);
                if (tokenizer is null)
                {
                    Console.Out.Write((generated.Count > 1 ? " " : "") + token.ToString(CultureInfo.InvariantCulture));
                }
                else
                {
                    all.Add(token);
                    string text = tokenizer.Decode(all.ToArray(), skipSpecialTokens: true);

                    // Print only whole characters: wait while the text ends in an incomplete UTF-8 sequence (U+FFFD).
                    if (text.Length > printed.Length && text.StartsWith(printed, StringComparison.Ordinal) && !text.EndsWith('\uFFFD'))
                    {
                        Console.Out.Write(text[printed.Length..]);
                        printed = text;
                    }
                }

                Console.Out.Flush();
            }

            if (tokenizer is not null)
            {
                string text = tokenizer.Decode(all.ToArray(), skipSpecialTokens: true);
                if (text.Length > printed.Length && text.StartsWith(printed, StringComparison.Ordinal))
                {
                    Console.Out.Write(text[printed.Length..]);
                }
            }

            Console.Out.WriteLine();
            double seconds = stopwatch.Elapsed.TotalSeconds;
            Console.Error.WriteLine(FormattableString.Invariant(
                $"{prompt.Length} prompt tokens, {generated.Count} new tokens in {seconds:F2} s ({(prompt.Length + generated.Count) / Math.Max(seconds, 1e-9):F1} tokens/s), KV cache {generator.Cache.Bytes / 1024.0:F1} KiB"));
            return 0;
        });
        return command;
    }

    /// <summary>The chat template of the tokenizer's tokenizer_config.json (the prompt becomes one user turn, ending
    /// with the assistant's header).</summary>
    private static ChatTemplate ChatTemplateOf(string tokenizerPath)
    {
        string config = Tokenizer.Files(tokenizerPath).Config;
        return (File.Exists(config) ? ChatTemplate.FromTokenizerConfig(config) : null)
            ?? throw new ArgumentException($"--chat: {config} has no chat_template");
    }

    private static int[] ParseIds(string text)
    {
        string[] parts = text.Split([',', ' ', '\t', '\r', '\n'], StringSplitOptions.RemoveEmptyEntries);
        return parts.Select(s => int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out int id)
            ? id
            : throw new ArgumentException($"--prompt: '{s}' is not a token id (without --tokenizer the prompt is token ids separated by commas or spaces)")).ToArray();
    }

    /// <summary>Progress of a long prompt's prefill on stderr (stdout carries the text): a line at most every
    /// <see cref="Progress.WithinStepInterval"/>, none for a prefill shorter than that. The ETA counts attention's
    /// growth: position p costs ≈ 12·d²·L (projections, MLP) + 4·p·d·L (attention) FLOPs, i.e. work ∝ 6d·x + x²/2 for
    /// the first x positions (a linear ETA said 11 s where 27 s were left, 54K tokens into an 82K prompt).</summary>
    private static Action<int, int> PrefillProgress(int hidden)
    {
        double Work(double x) => (6.0 * hidden * x) + (x * x / 2);
        Action<(int Done, int Total)> report = Progress.Throttled<(int Done, int Total)>((p, elapsed) =>
        {
            if (p.Done == p.Total)
            {
                return; // the prefill is over: the generation's own line follows
            }

            var left = TimeSpan.FromSeconds(Math.Ceiling((Work(p.Total) - Work(p.Done)) * elapsed.TotalSeconds / Work(p.Done)));
            Console.Error.WriteLine(FormattableString.Invariant(
                $"prefill: {p.Done}/{p.Total} prompt tokens, {p.Done / elapsed.TotalSeconds:F0} tokens/s, ETA {Progress.MinutesSeconds(left)}"));
        });
        return (done, total) => report((done, total));
    }
}
