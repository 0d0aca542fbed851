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
    private static readonly Option<int> Ranks = new("--ranks") { Description = "Data-parallel ranks sharing each batch (figures are per rank: batch/ranks rows each; with --sequence-parallel P, replicas of P Ulysses ranks each)", DefaultValueFactory = _ => 1 };
    private static readonly Option<string> PrecisionOption = new("--precision") { Description = "fp32 | bf16 (mixed precision: + bf16 compute weights, bf16 saved activations)", DefaultValueFactory = _ => "fp32" };
    private static readonly Option<int> Zero = new("--zero") { Description = "0 | 1 (ZeRO-1: each rank holds 1/ranks of the optimizer state)", DefaultValueFactory = _ => 0 };
    private static readonly Option<int> SequenceParallelRanks = new("--sequence-parallel") { Description = "Ulysses ranks P: figures per rank, each holding ⌈seq-len/P⌉ positions of every row", DefaultValueFactory = _ => 1 };

    public static Command Create()
    {
        var command = new Command("plan", "Predict peak memory per policy and pick the fastest policy that fits --budget");
        foreach (Option o in new Option[] { ModelDir, Config, SeqLen, Batch, MicroBatch, OptimizerName, Momentum, Budget, Ranks, Zero, SequenceParallelRanks, PrecisionOption }.Concat(LoraOptions.All))
        {
            command.Options.Add(o);
        }

        command.SetAction(p =>
        {
            LlamaConfig config = p.GetValue(ModelDir) is string dir ? ModelDirectory.ReadConfig(dir)
                : ModelPresets.Resolve(p.GetValue(Config) ?? throw new ArgumentException("Give --model DIR or --config tiny|small|FILE."));
            int seqLen = p.GetValue(SeqLen), batch = p.GetValue(Batch), ranks = p.GetValue(Ranks), zeroStage = p.GetValue(Zero);
            if (ranks < 1 || batch % ranks != 0)
            {
                throw new ArgumentException($"--ranks {ranks} must be ≥ 1 and divide --batch {batch} (each rank takes batch/ranks rows).");
            }

            if (zeroStage is not (0 or 1))
            {
                throw new ArgumentException($"--zero {zeroStage}: 0 or 1; ZeRO-2 and 3 are not implemented.");
            }

            int sequenceParallel = p.GetValue(SequenceParallelRanks);
            if (sequenceParallel < 1)
            {
                throw new ArgumentException($"--sequence-parallel {sequenceParallel} must be ≥ 1.");
            }

            // Data × sequence parallel: --ranks data-parallel replicas of --sequence-parallel Ulysses ranks each; ZeRO-1
            // shards the optimizer state over every rank of the job.
            int rows = batch / ranks, micro = p.GetValue(MicroBatch) ?? rows, shards = zeroStage == 1 ? ranks * sequenceParallel : 1;
            if (seqLen < 1 || batch < 1 || micro < 1 || rows % micro != 0)
            {
                throw new ArgumentException("--seq-len and --batch must be ≥ 1 and --micro-batch must divide the rows per rank (--batch / --ranks).");
            }

            var optimizer = new OptimizerOptions { Name = Training.Optimizers.OptimizerRegistry.Get(p.GetValue(OptimizerName)!).Name, Momentum = p.GetValue(Momentum) };
            optimizer.Validate();
            if (shards > 1 && !optimizer.Rule.IsElementwise)
            {
                throw new ArgumentException($"--zero 1 needs an element-wise optimizer (adamw, sgd, lion); {optimizer.Name}'s trust ratio needs whole-tensor norms.");
            }

            Model.Lora.LoraConfig? lora = LoraOptions.Parse(p);
            // A plan for several ranks is made outside mpirun: add what an MPI rank holds beyond this process.
            bool mpiRanks = ranks * sequenceParallel > 1;
            long overhead = MemoryPlanner.MeasureRuntimeOverhead() + (mpiRanks ? MemoryPlanner.MpiRankOverhead : 0);
            bool bf16Base = LoraOptions.Bf16Base(p);
            Precision precision = Precisions.Parse(p.GetValue(PrecisionOption)!);
            var setup = new TrainingSetup { Lora = lora, Bf16Base = bf16Base, ZeroShards = shards, Precision = precision, SequenceParallel = sequenceParallel };
            IReadOnlyList<MemoryPrediction> predictions = MemoryPlanner.PredictAll(config, micro, seqLen, optimizer, overhead, setup);
            if (lora is not null)
            {
                AnsiConsole.MarkupLine(Markup.Escape(LoraOptions.Describe(lora, new ParameterLayout(config)) + "; the base is frozen: gradients and optimizer state for the adapters only"));
            }

            long? budget = p.GetValue(Budget) is string b ? ByteSize.Parse(b) : null;
            // Per policy, the longest sequence (multiple of 1024) whose predicted peak fits the budget.
            Dictionary<string, int>? largest = budget is long cap
                ? predictions.ToDictionary(pr => pr.PolicyName, pr => MemoryPlanner.LargestFittingSeqLen(config, micro, pr.PolicyName, optimizer, overhead, cap, step: 1024, setup: setup))
                : null;
            string stateNames = string.Join(", ", optimizer.Rule.StateNames(optimizer));
            Print(predictions, budget, $"{config.HiddenSize}d × {config.NumHiddenLayers}L, V={config.VocabSize}; batch {batch} (micro {micro}) × {seqLen} tokens; {optimizer.Name} state: {(stateNames.Length > 0 ? stateNames : "none")}; {precision.Name()}" + (sequenceParallel > 1 ? Replicas(ranks, rows) : PerRank(ranks, rows, shards)) + Ulysses(config, seqLen, setup)
                + (mpiRanks ? $"; runtime includes {ByteSize.Format(MemoryPlanner.MpiRankOverhead)} per rank for MPI (measured under Open MPI 4.1)" : ""), largest);
            return budget is long limit && MemoryPlanner.Choose(predictions, limit) is null ? 4 : 0;
        });
        return command;
    }

    private static string Ulysses(LlamaConfig config, int seqLen, TrainingSetup setup)
    {
        int ranks = setup.SequenceParallel;
        if (ranks == 1)
        {
            return "";
        }

        var heads = Distributed.UlyssesHeads.For(config, ranks);
        return FormattableString.Invariant($"; per rank of {ranks} Ulysses ranks: {setup.LocalSeqLen(seqLen)} positions of every row, {heads.LocalHeads} query heads ({(heads.KvReplicated ? "kv heads replicated" : "kv heads split")}){(setup.ZeroShards > 1 ? $", ZeRO-1: optimizer state ÷ {setup.ZeroShards}" : "")}");
    }

    private static string Replicas(int replicas, int rows) => replicas == 1 ? "" : $"; {replicas} data-parallel replicas ({rows} row{(rows == 1 ? "" : "s")} each)";

    private static string PerRank(int ranks, int rows, int shards) => ranks == 1 ? ""
        : shards > 1 ? $"; per rank of {ranks} ({rows} rows each), ZeRO-1: optimizer state ÷ {shards}"
        : $"; per rank of {ranks} ({rows} rows each), every rank the whole optimizer state";

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
