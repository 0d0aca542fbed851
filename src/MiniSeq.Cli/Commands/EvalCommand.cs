// `miniseq eval`: mean cross-entropy of a model on a token file, as one JSON object.
using System.CommandLine;
using System.Text.Json;
using MiniSeq.IO;
using MiniSeq.Model;
using MiniSeq.Training;

namespace MiniSeq.Cli.Commands;

internal static class EvalCommand
{
    private static readonly Option<string> ModelDir = new("--model") { Description = "Hugging Face model directory", Required = true };
    private static readonly Option<string> Tokens = new("--tokens") { Description = "Token file", Required = true };

    public static Command Create()
    {
        var command = new Command("eval", "Print {loss, tokens, perplexity} of a model on a token file");
        command.Options.Add(ModelDir);
        command.Options.Add(Tokens);
        command.SetAction(p =>
        {
            string tokensPath = p.GetValue(Tokens)!;
            TokenBatch batch = TokenBatch.Load(tokensPath);
            using LlamaModel model = ModelDirectory.Load(p.GetValue(ModelDir)!, warn: w => Console.Error.WriteLine($"warning: {w}"));
            batch.Validate(model.Config.VocabSize, tokensPath);
            EvalResult r = Evaluator.Evaluate(model, batch);
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
}
