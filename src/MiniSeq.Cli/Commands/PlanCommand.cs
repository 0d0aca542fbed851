// `miniseq plan`: predicted peak memory by category for each policy, and the fastest policy that fits a budget.
using System.CommandLine;
using System.Globalization;
using MiniSeq.IO;
using MiniSeq.Model;
using MiniSeq.Tensors;
using MiniSeq.Training;
using Spectre.Console;

namespace MiniSeq.Cli.Commands;

internal static class PlanCommand
{
    private static readonly Option<string?> ModelDir = new("--model") { Description = "Model directory (its config.json is used; weights are not read)" };
    private static readonly Option<string?> Config = new("--config") { Description = "tiny | small | demo | config.json (instead of --model)" };
    private static readonly Option<int> SeqLen = new("--seq-len") { Description = "Tokens per sequence", Required = true };
    private static readonly Option<int> Batch = new("--batch") { Description = "Rows per batch", DefaultValueFactory = _ => 1 };
    private static readonly Option<int?> MicroBatch = new("--micro-batch") { Description = "Rows per micro-batch" };
    private static readonly Option<string> OptimizerName = new("--optimizer") { Description = "Optimizer: " + string.Join(" | ", Training.Optimizers.OptimizerRegistry.Names), DefaultValueFactory = _ => "adamw" };
    private static readonly Option<float> Momentum = new("--momentum") { Description = "SGD momentum (> 0: one state buffer per parameter)", DefaultValueFactory = _ => 0f };
    private static readonly Option<string?> Budget = new("--budget") { Description = "Memory budget, e.g. 1GiB" };

    public static Command Create()
    {
        var command = new Command("plan", "Predict peak memory per policy and pick the fastest policy that fits --budget");
        foreach (Option o in new Option[] { ModelDir, Config, SeqLen, Batch, MicroBatch, OptimizerName, Momentum, Budget }.Concat(LoraOptions.All))
        {
            command.Options.Add(o);
        }

        command.SetAction(p =>
        {
            LlamaConfig config = p.GetValue(ModelDir) is string dir ? ModelDirectory.ReadConfig(dir)
                : ModelPresets.Resolve(p.GetValue(Config) ?? throw new ArgumentException("Give --model DIR or --config tiny|small|FILE."));
            int seqLen = p.GetValue(SeqLen), batch = p.GetValue(Batch), micro = p.GetValue(MicroBatch) ?? batch;
            if (seqLen < 1 || batch < 1 || micro < 1 || batch % micro != 0)
            {
                throw new ArgumentException("--seq-len and --batch must be ≥ 1 and --micro-batch must divide --batch.");
            }

            var optimizer = new OptimizerOptions { Name = Training.Optimizers.OptimizerRegistry.Get(p.GetValue(OptimizerName)!).Name, Momentum = p.GetValue(Momentum) };
            optimizer.Validate();
            Model.Lora.LoraConfig? lora = LoraOptions.Parse(p);
            long overhead = MemoryPlanner.MeasureRuntimeOverhead();
            bool bf16Base = LoraOptions.Bf16Base(p);
            IReadOnlyList<MemoryPrediction> predictions = MemoryPlanner.PredictAll(config, micro, seqLen, optimizer, overhead, lora, bf16Base);
            if (lora is not null)
            {
                AnsiConsole.MarkupLine(Markup.Escape(LoraOptions.Describe(lora, new ParameterLayout(config)) + "; the base is frozen: gradients and optimizer state for the adapters only"));
            }

            long? budget = p.GetValue(Budget) is string b ? ByteSize.Parse(b) : null;
            // Per policy, the longest sequence (multiple of 1024) whose predicted peak fits the budget.
            Dictionary<string, int>? largest = budget is long cap
                ? predictions.ToDictionary(pr => pr.PolicyName, pr => MemoryPlanner.LargestFittingSeqLen(config, micro, pr.PolicyName, optimizer, overhead, cap, step: 1024, lora: lora, bf16Base: bf16Base))
                : null;
            string stateNames = string.Join(", ", optimizer.Rule.StateNames(optimizer));
            Print(predictions, budget, $"{config.HiddenSize}d × {config.NumHiddenLayers}L, V={config.VocabSize}; batch {batch} (micro {micro}) × {seqLen} tokens; {optimizer.Name} state: {(stateNames.Length > 0 ? stateNames : "none")}", largest);
            return budget is long limit && MemoryPlanner.Choose(predictions, limit) is null ? 4 : 0;
        });
        return command;
    }

    public static void Print(IReadOnlyList<MemoryPrediction> predictions, long? budget, string title, IReadOnlyDictionary<string, int>? largestSeqLen = null)
    {
        var table = new Table().Border(TableBorder.Rounded).Title(Markup.Escape(title));
        table.AddColumn("policy");
        foreach (MemoryCategory c in MemoryLedger.Categories)
        {
            table.AddColumn(new TableColumn(MemoryLedger.DisplayName(c)).RightAligned());
        }

        table.AddColumn(new TableColumn("runtime").RightAligned());
        table.AddColumn(new TableColumn("predicted peak").RightAligned());
        if (budget is not null)
        {
            table.AddColumn("fits");
        }

        if (largestSeqLen is not null)
        {
            table.AddColumn(new TableColumn("largest N within budget").RightAligned());
        }

        foreach (MemoryPrediction pr in predictions)
        {
            var cells = new List<string> { Markup.Escape($"{pr.PolicyName} [{pr.Policy.Describe()}]") };
            cells.AddRange(MemoryLedger.Categories.Select(c => ByteSize.Format(pr.Of(c))));
            cells.Add(ByteSize.Format(pr.RuntimeOverhead));
            cells.Add(ByteSize.Format(pr.ProcessPeak));
            if (budget is long limit)
            {
                cells.Add(pr.ProcessPeak <= limit ? "[green]yes[/]" : "[red]no[/]");
            }

            if (largestSeqLen is not null)
            {
                cells.Add(largestSeqLen.TryGetValue(pr.PolicyName, out int n) ? n.ToString("N0", CultureInfo.InvariantCulture) : "");
            }

            table.AddRow(cells.ToArray());
        }

        AnsiConsole.Write(table);
        if (budget is long max)
        {
            MemoryPrediction? choice = MemoryPlanner.Choose(predictions, max);
            AnsiConsole.MarkupLine(choice is null
                ? Markup.Escape($"No policy fits {ByteSize.Format(max)}: the smallest needs {ByteSize.Format(predictions.Min(x => x.ProcessPeak))}. Shorten the sequence, use micro-batches, or raise the budget.")
                : Markup.Escape(string.Create(CultureInfo.InvariantCulture, $"Fastest policy within {ByteSize.Format(max)}: {choice.PolicyName} ({choice.Policy.Describe()}), predicted peak {ByteSize.Format(choice.ProcessPeak)}.")));
        }
    }
}
