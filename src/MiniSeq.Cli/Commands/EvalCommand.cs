// `miniseq eval`: mean cross-entropy and perplexity of a model on a token file, or on data files packed exactly as
// training packs them (documents with EOS, document mask, one ordered pass), as one JSON object.
using System.CommandLine;
using System.Text.Json;
using MiniSeq.IO;
using MiniSeq.Model;
using MiniSeq.Text;
using MiniSeq.Training;
using MiniSeq.Training.Data;

namespace MiniSeq.Cli.Commands;

internal static class EvalCommand
{
    private static readonly Option<string> ModelDir = new("--model") { Description = "Hugging Face model directory", Required = true };
    private static readonly Option<string?> Tokens = new("--tokens") { Description = "Token file (document_ids honoured)" };
    private static readonly Option<string[]> Data = new("--data") { Description = "Data files or directories (.txt, .jsonl, token shards), packed as in training", AllowMultipleArgumentsPerToken = true };
    private static readonly Option<string?> TokenizerPath = new("--tokenizer") { Description = "tokenizer.json or its directory (default: the --model directory's)" };
    private static readonly Option<int> SeqLen = new("--seq-len") { DefaultValueFactory = _ => 2048, Description = "With --data: tokens per row" };
    private static readonly Option<bool> SplitBlankLines = new("--split-blank-lines") { Description = ".txt files: one document per blank-line-separated block" };
    private static readonly Option<bool> NoCache = new("--no-cache") { Description = "Do not read or write the token cache beside text files" };
    private static readonly Option<string?> Adapter = new("--adapter") { Description = "PEFT LoRA adapter directory to evaluate on top of --model" };

    public static Command Create()
    {
        var command = new Command("eval", "Print {loss, tokens, perplexity} of a model on a token file or on data files");
        foreach (Option o in new Option[] { ModelDir, Tokens, Data, TokenizerPath, SeqLen, SplitBlankLines, NoCache, Adapter })
        {
            command.Options.Add(o);
        }

        command.SetAction(p =>
        {
            string modelDir = p.GetValue(ModelDir)!;
            string? tokensPath = p.GetValue(Tokens);
            string[] dataPaths = p.GetValue(Data) ?? [];
            if ((tokensPath is null) == (dataPaths.Length == 0))
            {
                throw new ArgumentException("give exactly one of --tokens FILE and --data PATH…");
            }

            using LlamaModel model = p.GetValue(Adapter) is string adapter
                ? MergeCommand.LoadAdapted(modelDir, adapter)
                : ModelDirectory.Load(modelDir, warn: w => Console.Error.WriteLine($"warning: {w}"));
            EvalResult r;
            if (tokensPath is not null)
            {
                TokenBatch batch = TokenBatch.Load(tokensPath);
                batch.Validate(model.Config.VocabSize, tokensPath);
                r = Evaluator.Evaluate(model, batch);
            }
            else
            {
                int seqLen = p.GetValue(SeqLen);
                if (seqLen < 2)
                {
                    throw new ArgumentException($"--seq-len must be ≥ 2 (got {seqLen}).");
                }

                string? tokenizerPath = Tokenizer.PathOrModelDefault(p.GetValue(TokenizerPath), modelDir);
                Tokenizer? tokenizer = tokenizerPath is null ? null : Tokenizer.Load(tokenizerPath);
                var options = new CorpusOptions
                {
                    VocabSize = model.Config.VocabSize,
                    SplitOnBlankLines = p.GetValue(SplitBlankLines),
                    UseCache = !p.GetValue(NoCache),
                    RenderChat = tokenizerPath is null ? null : ChatTemplate.SegmentRenderer(tokenizerPath), // chat data: only assistant turns scored, as in training
                };
                using DocumentCorpus corpus = DocumentCorpus.Load(dataPaths, tokenizer, options);
                var source = new PackedSource(corpus, null, 1, seqLen, seed: 0, shuffle: false, endless: false);
                r = Evaluator.Evaluate(model, source.FirstEpoch(), 1, seqLen, batchDone: EvalProgress(source.BatchesPerEpoch, seqLen));
            }

            Console.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object>
            {
                ["loss"] = r.Loss,
                ["tokens"] = r.ScoredTokens,
                ["perplexity"] = r.Perplexity,
            }));
            return 0;
        });
        return command;
    }

    /// <summary>Progress of a long evaluation on stderr (stdout carries only the JSON result): a line at most every
    /// <see cref="Progress.WithinStepInterval"/>, none for an evaluation shorter than that.</summary>
    private static Action<int> EvalProgress(long batches, int seqLen) => Progress.Throttled<int>((done, elapsed) =>
    {
        var left = TimeSpan.FromSeconds(Math.Ceiling((batches - done) * elapsed.TotalSeconds / done));
        Console.Error.WriteLine(FormattableString.Invariant(
            $"eval: {done}/{batches} rows of {seqLen} tokens, {done * (double)seqLen / elapsed.TotalSeconds:F0} tokens/s, ETA {Progress.MinutesSeconds(left)}"));
    });
}
