// `miniseq init`: write a randomly initialised Hugging Face model directory.
using System.CommandLine;
using MiniSeq.IO;
using MiniSeq.Model;
using Spectre.Console;

namespace MiniSeq.Cli.Commands;

internal static class InitCommand
{
    private static readonly Option<string> Config = new("--config") { Description = "tiny | small | demo | path to a config.json", DefaultValueFactory = _ => "small" };
    private static readonly Option<ulong> Seed = new("--seed") { Description = "Initialisation seed", DefaultValueFactory = _ => 1UL };
    private static readonly Option<string> Out = new("--out") { Description = "Output directory (new or empty)", Required = true };
    private static readonly Option<string?> TokenizerPath = new("--tokenizer") { Description = "tokenizer.json or a directory holding it: vocab_size follows the tokenizer, and its tokenizer.json and tokenizer_config.json are copied into --out (existing ones are kept)" };
    private static readonly Option<string> SaveDType = new("--save-dtype") { Description = "Weights stored as f32 (exact) | bf16 (rounded to nearest even, half the size)", DefaultValueFactory = _ => "f32" };
    private static readonly Option<bool> Overwrite = new("--overwrite") { Description = "Write into a non-empty directory: only MiniSeq's own files there are replaced, others are kept" };

    public static Command Create()
    {
        var command = new Command("init", "Write a randomly initialised Hugging Face Llama model directory");
        command.Options.Add(Config);
        command.Options.Add(Seed);
        command.Options.Add(Out);
        command.Options.Add(TokenizerPath);
        command.Options.Add(SaveDType);
        command.Options.Add(Overwrite);
        command.SetAction(p =>
        {
            string dir = p.GetValue(Out)!;
            bool overwrite = p.GetValue(Overwrite);
            SafeTensorsDType dtype = ModelDirectory.ParseSaveDType(p.GetValue(SaveDType)!);
            ModelDirectory.CheckSaveTarget(dir, overwrite);
            LlamaConfig config = ModelPresets.Resolve(p.GetValue(Config)!);
            string? tokenizerPath = p.GetValue(TokenizerPath);
            if (tokenizerPath is not null)
            {
                config = config with { VocabSize = Text.Tokenizer.Load(tokenizerPath).VocabSize };
            }

            using var model = new LlamaModel(config);
            model.InitializeRandom(p.GetValue(Seed));
            model.Save(dir, overwrite, dtype);
            if (tokenizerPath is not null)
            {
                foreach (string kept in ModelDirectory.CopyTokenizerFiles(tokenizerPath, dir))
                {
                    AnsiConsole.MarkupLine(Markup.Escape($"kept the existing {kept}"));
                }
            }

            AnsiConsole.MarkupLine(Markup.Escape(FormattableString.Invariant($"wrote {dir}: {model.Layout.ParameterCount:N0} parameters (d={config.HiddenSize}, L={config.NumHiddenLayers}, V={config.VocabSize}, {SafeTensors.DTypeName(dtype)})")));
            return 0;
        });
        return command;
    }
}
