// `miniseq merge`: fold a LoRA adapter into its base model and write a plain Hugging Face model directory
// (W += (α/r)·B·A, PEFT's merge_and_unload), with the base's tokenizer files copied beside it.
using System.CommandLine;
using MiniSeq.IO;
using MiniSeq.Model;
using Spectre.Console;

namespace MiniSeq.Cli.Commands;

internal static class MergeCommand
{
    private static readonly Option<string> ModelDir = new("--model") { Description = "Base model directory (the adapter's base)", Required = true };
    private static readonly Option<string> Adapter = new("--adapter") { Description = "PEFT adapter directory (adapter_config.json + adapter_model.safetensors)", Required = true };
    private static readonly Option<string> Out = new("--out") { Description = "Output model directory (new or empty)", Required = true };
    private static readonly Option<string> SaveDType = new("--save-dtype") { DefaultValueFactory = _ => "f32", Description = "Weights of the merged model: f32 | bf16" };
    private static readonly Option<bool> Overwrite = new("--overwrite") { Description = "Write into a non-empty directory: only MiniSeq's own files there are replaced, others are kept" };

    public static Command Create()
    {
        var command = new Command("merge", "Fold a LoRA adapter into its base model and save the result as a Hugging Face model directory");
        foreach (Option o in new Option[] { ModelDir, Adapter, Out, SaveDType, Overwrite })
        {
            command.Options.Add(o);
        }

        command.SetAction(p =>
        {
            string modelDir = p.GetValue(ModelDir)!, adapterDir = p.GetValue(Adapter)!, outDir = p.GetValue(Out)!;
            if (AtomicDirectory.SameDirectory(outDir, modelDir) || AtomicDirectory.SameDirectory(outDir, adapterDir))
            {
                throw new ArgumentException($"--out {outDir} is an input directory; it is never overwritten. Write the merged model elsewhere.");
            }

            ModelDirectory.CheckSaveTarget(outDir, p.GetValue(Overwrite));
            IO.SafeTensorsDType dtype = ModelDirectory.ParseSaveDType(p.GetValue(SaveDType)!);
            using LlamaModel model = LoadAdapted(modelDir, adapterDir);
            string lora = LoraOptions.Describe(model.Adapters!.Config, model.Layout);
            model.MergeAdapters();
            model.Save(outDir, p.GetValue(Overwrite), dtype);
            if (Text.Tokenizer.PathOrModelDefault(null, modelDir) is string tokenizer)
            {
                ModelDirectory.CopyTokenizerFiles(tokenizer, outDir);
            }

            AnsiConsole.MarkupLine(Markup.Escape($"merged {lora} into {modelDir} → {outDir}"));
            return 0;
        });
        return command;
    }

    /// <summary>The base model of <paramref name="modelDir"/> with the adapter of <paramref name="adapterDir"/> attached.</summary>
    public static LlamaModel LoadAdapted(string modelDir, string adapterDir)
    {
        LlamaModel model = ModelDirectory.Load(modelDir, warn: w => Console.Error.WriteLine($"warning: {w}"));
        try
        {
            PeftAdapter.Load(adapterDir, model);
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }
}
