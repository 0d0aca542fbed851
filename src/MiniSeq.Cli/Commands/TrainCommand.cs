// `miniseq train`: with no arguments, the built-in demo (a small Llama learning associative recall, its memory
// policy chosen by the planner under a budget); with --model and --tokens, training on a token file; with --model and
// --data, training on text, chat or token shards packed into rows (TrainingData), with validation; saving an HF
// directory with --save (F32, or BF16 with --save-dtype: then the final training state goes to DIR/checkpoint-STEP in
// F32, so a resume stays exact); --save-every/--keep/--resume write, prune and continue from DIR/checkpoint-STEP. Under
// mpirun (or with --distributed), data parallel over the ranks: each takes its rows of every batch, rank 0 alone prints
// and writes. A thin shell over the library's TrainingData, TrainingRun, Checkpoints and DataParallel: parse and
// validate options, pick the batch source, show progress, write metrics lines and their chart, save.
using System.CommandLine;
using System.Globalization;
using MiniSeq.Distributed;
using MiniSeq.IO;
using MiniSeq.Model;
using MiniSeq.Tensors;
using MiniSeq.Text;
using MiniSeq.Threading;
using MiniSeq.Training;
using MiniSeq.Training.Data;
using MiniSeq.Training.Optimizers;
using Spectre.Console;

namespace MiniSeq.Cli.Commands;

internal static class TrainCommand
{
    private static readonly Option<string?> ModelDir = new("--model") { Description = "Hugging Face model directory to train (config.json + model.safetensors)" };
    private static readonly Option<string?> Tokens = new("--tokens") { Description = "Token file: {\"input_ids\": [[...]], \"labels\": [[...]]} (one fixed batch)" };
    private static readonly Option<string[]> Data = new("--data") { Description = "Training data: .txt, .jsonl (text or chat messages), token shards (.bin llm.c, .u16, .u32), or directories of them; packed into --batch rows of --seq-len tokens", AllowMultipleArgumentsPerToken = true };
    private static readonly Option<string?> TokenizerPath = new("--tokenizer") { Description = "tokenizer.json or its directory (default: the --model directory's)" };
    private static readonly Option<double?> Epochs = new("--epochs") { Description = "With --data: passes over the training tokens (instead of --steps; default 1)" };
    private static readonly Option<string[]> ValData = new("--val-data") { Description = "Validation files (held out from training)", AllowMultipleArgumentsPerToken = true };
    private static readonly Option<double?> ValFraction = new("--val-fraction") { Description = "Hold out this fraction of the --data documents for validation" };
    private static readonly Option<int> ValEvery = new("--val-every") { DefaultValueFactory = _ => 0, Description = "Validation loss every K steps and at the end (0: only at the end, when there is validation data)" };
    private static readonly Option<bool> SplitBlankLines = new("--split-blank-lines") { Description = ".txt files: one document per blank-line-separated block (default: one per file)" };
    private static readonly Option<bool> DropLong = new("--drop-long") { Description = "Skip documents longer than --seq-len instead of splitting them over rows" };
    private static readonly Option<bool> DocumentMask = new("--document-mask") { DefaultValueFactory = _ => true, Description = "Packed rows: attention stays inside each document and RoPE positions restart (default true)" };
    private static readonly Option<string?> TokenDtypeOption = new("--token-dtype") { Description = "Element type of headerless .bin token files: uint16 | uint32" };
    private static readonly Option<bool> NoCache = new("--no-cache") { Description = "Tokenize text every run instead of keeping a .NAME.miniseq-tokens cache beside each file" };
    private static readonly Option<int?> Steps = new("--steps") { Description = "Optimizer steps (default 1 with --tokens; the demo: 480, cosine schedule, within --time-limit 180 s)" };
    private static readonly Option<string> OptimizerName = new("--optimizer") { Description = "Optimizer: " + string.Join(" | ", OptimizerRegistry.Names), DefaultValueFactory = _ => "adamw" };
    private static readonly Option<float?> Lr = new("--lr") { Description = "Peak learning rate (default 1e-3; demo 3e-3)" };
    private static readonly Option<float> WeightDecay = new("--weight-decay") { Description = "Weight decay (on all but the --no-decay kinds)", DefaultValueFactory = _ => 0f };
    private static readonly Option<string> NoDecay = new("--no-decay") { DefaultValueFactory = _ => "norms,biases", Description = "Parameter kinds without weight decay: comma list of norms, embeddings, biases, lm_head, or none" };
    private static readonly Option<float> Beta1 = new("--beta1") { DefaultValueFactory = _ => 0.9f, Description = "β1 of AdamW, LAMB and Lion" };
    private static readonly Option<float?> Beta2 = new("--beta2") { Description = "β2 of AdamW and LAMB (default 0.999; demo 0.95) and Lion (default 0.99)" };
    private static readonly Option<float> Eps = new("--eps") { DefaultValueFactory = _ => 1e-8f, Description = "ε of AdamW and LAMB" };
    private static readonly Option<float> Momentum = new("--momentum") { DefaultValueFactory = _ => 0f, Description = "SGD momentum" };
    private static readonly Option<float> Dampening = new("--dampening") { DefaultValueFactory = _ => 0f, Description = "SGD dampening of the momentum buffer (needs --momentum)" };
    private static readonly Option<bool> Nesterov = new("--nesterov") { Description = "SGD Nesterov momentum (needs --momentum, no --dampening)" };
    private static readonly Option<float> GradClip = new("--grad-clip") { DefaultValueFactory = _ => 0f, Description = "Global gradient-norm clipping (0 = off)" };
    private static readonly Option<int> Warmup = new("--warmup") { DefaultValueFactory = _ => 0, Description = "Linear warm-up steps" };
    private static readonly Option<string> Schedule = new("--schedule") { DefaultValueFactory = _ => "constant", Description = "constant | cosine (demo default: cosine)" };
    private static readonly Option<string?> Save = new("--save") { Description = "Write the trained model (HF directory, F32 unless --save-dtype) here, atomically; with --lora-rank, the adapter (PEFT directory)" };
    private static readonly Option<string> SaveDType = new("--save-dtype") { DefaultValueFactory = _ => "f32", Description = "Weights of the final --save model: f32 (exact) | bf16 (rounded to nearest even, half the size, as Hugging Face checkpoints usually are); checkpoints to resume from always stay f32" };
    private static readonly Option<ulong> Seed = new("--seed") { DefaultValueFactory = _ => 1UL, Description = "Seed of the demo's initialisation and data, and of LoRA's initialisation and dropout masks" };
    private static readonly Option<int?> Threads = new("--threads") { Description = "Kernel threads (default: all cores)" };
    private static readonly Option<string> MstMlp = new("--mst-mlp") { DefaultValueFactory = _ => "off", Description = "Mini-sequence MLP: off | auto | M chunks" };
    private static readonly Option<string> MstLm = new("--mst-lm") { DefaultValueFactory = _ => "off", Description = "Mini-sequence LM head + loss: off | auto | M chunks" };
    private static readonly Option<string> Checkpoint = new("--checkpoint") { DefaultValueFactory = _ => "off", Description = "Per-layer activation checkpointing: off | on | attn (on, keeping each layer's attention output and log-sum-exp: N·(H·D + H) floats per layer more, no flash-attention forward in the recompute)" };
    private static readonly Option<string> SeqChunk = new("--seq-chunk") { DefaultValueFactory = _ => "off", Description = "Sequence-chunked layers (only K, V, dK, dV for the whole sequence; implies checkpointing): off | auto | S positions" };
    private static readonly Option<string> ActivationDTypeOption = new("--activation-dtype") { DefaultValueFactory = _ => "fp32", Description = "Storage of the checkpointed layer inputs of sequence-chunked layers: fp32 (exact) | bf16" };
    private static readonly Option<string> PrecisionOption = new("--precision") { DefaultValueFactory = _ => "fp32", Description = "Arithmetic: fp32 | bf16 (mixed: bf16 compute weights and saved activations; fp32 master weights, gradients, optimizer state and accumulation)" };
    private static readonly Option<string> Offload = new("--offload") { DefaultValueFactory = _ => "off", Description = "Offload the checkpointed layer inputs of sequence-chunked layers: off | disk (temp dir) | disk:PATH" };
    private static readonly Option<int?> MicroBatch = new("--micro-batch") { Description = "Rows per micro-batch (gradient accumulation; must divide the batch rows)" };
    private static readonly Option<int> SeqLen = new("--seq-len") { DefaultValueFactory = _ => 256, Description = "Tokens per row (demo and --data)" };
    private static readonly Option<int> Pairs = new("--pairs") { DefaultValueFactory = _ => 8, Description = "Demo only: key–value pairs per sequence" };
    private static readonly Option<int> Gap = new("--gap") { DefaultValueFactory = _ => 0, Description = "Demo only: mean filler tokens between two queries" };
    private static readonly Option<int?> Batch = new("--batch") { Description = "Rows per step (demo default 16, --data default 1)" };
    private static readonly Option<string?> Budget = new("--budget") { Description = "Memory budget (e.g. 1GiB; demo default " + DemoSummary.DefaultBudget + "): without --mst-*/--checkpoint, pick the fastest policy that fits; refuse runs that cannot fit" };
    private static readonly Option<float> LabelSmoothing = new("--label-smoothing") { DefaultValueFactory = _ => 0f, Description = "Cross-entropy label smoothing ε (PyTorch semantics)" };
    private static readonly Option<float> ZLoss = new("--z-loss") { DefaultValueFactory = _ => 0f, Description = "z-loss weight w (adds w·lse² per scored token)" };
    private static readonly Option<float> SoftCap = new("--logit-softcap") { DefaultValueFactory = _ => 0f, Description = "Final-logit soft-capping cap·tanh(z/cap) (0 = off; Gemma-2 uses 30)" };
    private static readonly Option<string> LmHeadGrad = new("--lm-head-grad") { DefaultValueFactory = _ => "forward", Description = "LM-head gradient: forward (formed with the loss, Liger-style) | recompute (CCE-style)" };
    private static readonly Option<int> SaveEvery = new("--save-every") { DefaultValueFactory = _ => 0, Description = "Every N steps write a checkpoint (weights + training state) to --save DIR/checkpoint-STEP, atomically" };
    private static readonly Option<int?> Keep = new("--keep") { Description = "Keep only the newest L checkpoint-* directories (default: all)" };
    private static readonly Option<string?> Resume = new("--resume") { Description = "Continue from a checkpoint directory, or a --save DIR's newest checkpoint-*; the result is bit-identical to an uninterrupted run" };
    private static readonly Option<double?> TimeLimit = new("--time-limit") { Description = "Stop after this many seconds (demo default 180; otherwise none); a cosine schedule then ends at the last step that fits" };
    private static readonly Option<string?> Metrics = new("--metrics") { Description = "Append one JSON line per step to this file (a new file, or an existing metrics file)" };
    private static readonly Option<bool> Overwrite = new("--overwrite") { Description = "Let --save update a non-empty directory: only MiniSeq's own files there are replaced, others are kept" };
    private static readonly Option<int?> SequenceParallelRanks = new("--sequence-parallel") { Description = "Ulysses sequence parallel over P MPI ranks (P = mpirun -np; or a divisor of it: groups of P consecutive ranks, each a data-parallel replica of its rows): each rank holds ⌈seq-len/P⌉ positions of every row of its replica (the last shard padded at its end); attention heads are exchanged by all-to-all within the group" };
    private static readonly Option<bool> Distributed = new("--distributed") { Description = "Data parallel over MPI (Open MPI) ranks: implied when started by mpirun (mpirun -np P dotnet miniseq.dll train …); each rank takes batch/P rows, --threads per rank" };

    private static readonly Option<int> Zero = new("--zero") { DefaultValueFactory = _ => 0, Description = "With data or sequence parallel: 0 = every rank holds the whole optimizer state | 1 = ZeRO-1, each rank holds and updates 1/P of it (gradients reduce-scattered, weights all-gathered; adamw, sgd, lion); a no-op in one process" };

    public static Command Create()
    {
        var command = new Command("train", "Train a model (no arguments: the built-in associative-recall demo)");
        foreach (Option o in new Option[] { ModelDir, Tokens, Data, TokenizerPath, Epochs, ValData, ValFraction, ValEvery, SplitBlankLines, DropLong, DocumentMask, TokenDtypeOption, NoCache, Steps, OptimizerName, Lr, WeightDecay, NoDecay, Beta1, Beta2, Eps, Momentum, Dampening, Nesterov, GradClip, Warmup, Schedule, Save, SaveDType, Seed, Threads, MstMlp, MstLm, Checkpoint, SeqChunk, ActivationDTypeOption, PrecisionOption, Offload, MicroBatch, SeqLen, Batch, Pairs, Gap, Budget, LabelSmoothing, ZLoss, SoftCap, LmHeadGrad, SaveEvery, Keep, Resume, TimeLimit, Metrics, Overwrite, Distributed, Zero, SequenceParallelRanks }.Concat(LoraOptions.All))
        {
            command.Options.Add(o);
        }

        command.SetAction(Run);
        return command;
    }

    private static int Run(ParseResult p)
    {
        if (p.GetValue(Threads) is int threads)
        {
            KernelThreads.SetThreadCount(threads);
        }

        return MpiSession.Run(p.GetValue(Distributed) || p.GetValue(SequenceParallelRanks) is > 1, p.GetValue(Threads) is not null, world => Train(p, world));
    }

    /// <summary>The run, on every rank of <paramref name="world"/> (data parallel when it has more than one).</summary>
    private static int Train(ParseResult p, ICommunicator world)
    {
        // Under mpirun, every collective is timed: the step line, the metrics and the summary show the communication.
        TimedCommunicator? timed = world.Size > 1 ? new TimedCommunicator(world) : null;
        world = timed ?? world;
        bool writer = world.Rank == 0; // only rank 0 writes files (models, checkpoints, metrics, charts)
        int zeroStage = p.GetValue(Zero);
        if (zeroStage is not (0 or 1))
        {
            throw new ArgumentException($"--zero {zeroStage}: 0 (no sharding) or 1 (optimizer state sharded over the ranks); ZeRO-2 and 3 are not implemented.");
        }

        bool zero = zeroStage == 1 && world.Size > 1; // one process: one shard, nothing to do
        string? modelDir = p.GetValue(ModelDir), tokensPath = p.GetValue(Tokens), resumeOption = p.GetValue(Resume);
        string[] dataPaths = p.GetValue(Data) ?? [];
        string? resumeDir = resumeOption is null ? null : Checkpoints.Resolve(resumeOption);
        if (tokensPath is not null && dataPaths.Length > 0)
        {
            throw new ArgumentException("--tokens and --data are alternatives: a fixed token batch, or data files to pack.");
        }

        if ((modelDir is null) != (tokensPath is null && dataPaths.Length == 0))
        {
            throw new ArgumentException("--model goes with --tokens FILE or --data PATH… (train a model on them); give both, or neither for the built-in demo.");
        }

        // The batch source: the demo's endless recall sequences, the token file's one batch, or packed data.
        bool demo = modelDir is null;
        LlamaConfig config;
        IBatchSource source;
        AssociativeRecall? task = null;
        TrainingData? data = null;
        Tokenizer? tokenizer = null;
        string? tokenizerPath = null;
        if (demo)
        {
            config = ModelPresets.Demo;
            task = new AssociativeRecall(config.VocabSize, p.GetValue(SeqLen), p.GetValue(Pairs), p.GetValue(Gap));
            source = new RecallDemoSource(task, p.GetValue(Batch) ?? 16, p.GetValue(Seed));
        }
        else if (tokensPath is not null)
        {
            config = ModelDirectory.ReadConfig(modelDir!);
            source = TokenFileSource.Load(tokensPath, config.VocabSize);
        }
        else
        {
            config = ModelDirectory.ReadConfig(modelDir!);

            // Rank 0 first, so that it alone tokenizes and writes the caches the other ranks then read.
            if (!writer)
            {
                world.Barrier();
            }

            (data, tokenizer, tokenizerPath) = LoadData(p, modelDir!, dataPaths, config);
            if (writer)
            {
                world.Barrier();
            }

            source = data.Training;
        }

        using TrainingData? dataScope = data;
        // Validate every option and check files and the memory budget before anything large is allocated.
        if (p.GetValue(Epochs) is double epochs && (data is null || p.GetValue(Steps) is not null || !(epochs > 0 && double.IsFinite(epochs))))
        {
            throw new ArgumentException(FormattableString.Invariant($"--epochs E needs --data, no --steps, and E > 0 (got {epochs})."));
        }

        int steps = p.GetValue(Steps) ?? (demo ? DemoSummary.DefaultSteps
            : data is not null ? (int)Math.Min(int.MaxValue, Math.Ceiling((p.GetValue(Epochs) ?? 1) * data.Training.Stats.Tokens / ((double)source.BatchSize * source.SeqLen)))
            : 1);
        int valEvery = p.GetValue(ValEvery);
        if (valEvery < 0 || (valEvery > 0 && data?.Validation is null))
        {
            throw new ArgumentException($"--val-every K needs K ≥ 0 and validation data (--val-data or --val-fraction); got {valEvery}.");
        }
        double? timeLimit = p.GetValue(TimeLimit) ?? (demo && p.GetValue(Steps) is null ? 180 : null);
        int saveEvery = p.GetValue(SaveEvery);

        // Only the demo's default time limit (no --steps, no checkpoints, no resume) fits the schedule to the machine's
        // speed; everything else keeps the schedule fixed so that a run, and a resumed run, is reproducible.
        bool fitSchedule = demo && p.GetValue(Steps) is null && p.GetValue(TimeLimit) is null && saveEvery == 0 && resumeDir is null;
        if (steps < 1)
        {
            throw new ArgumentException($"--steps must be at least 1 (got {steps}).");
        }

        if (timeLimit is double t && !(double.IsFinite(t) && t > 0))
        {
            throw new ArgumentException(FormattableString.Invariant($"--time-limit must be a number of seconds > 0 (got {t})."));
        }

        // Data parallel: every rank draws the whole batch and keeps its rows; everything below sizes for those.
        // Sequence parallel (Ulysses): every rank keeps its positions of every row instead.
        // Data × sequence parallel: groups of P consecutive ranks, each a data-parallel replica (P = the world: Ulysses alone).
        int ulyssesRanks = CheckSequenceParallel(p.GetValue(SequenceParallelRanks), world);
        bool ulysses = ulyssesRanks > 1;
        using ICommunicator? ulyssesSplit = ulysses && ulyssesRanks < world.Size ? SequenceParallel.Group(world, ulyssesRanks) : null;
        ICommunicator ulyssesGroup = ulyssesSplit ?? world;
        IBatchSource shard = ulysses ? SequenceParallel.Shard(source, world, ulyssesGroup) : DataParallel.Shard(source, world);
        int? micro = p.GetValue(MicroBatch);
        if (micro is int m && (m < 1 || shard.BatchSize % m != 0))
        {
            throw new ArgumentException($"--micro-batch {m} must be between 1 and the batch's {shard.BatchSize} rows{(world.Size > 1 ? " per rank" : "")} and divide them.");
        }

        Model.Lora.LoraConfig? lora = LoraOptions.Parse(p);
        bool bf16Base = LoraOptions.Bf16Base(p);
        string? savePath = p.GetValue(Save);
        bool overwrite = p.GetValue(Overwrite);
        if (savePath is not null)
        {
            if (modelDir is not null && AtomicDirectory.SameDirectory(savePath, modelDir))
            {
                throw new ArgumentException($"--save {savePath} is the input model directory (--model {modelDir}); it is never overwritten. Save to another directory.");
            }

            if (File.Exists(savePath))
            {
                throw new ArgumentException($"--save {savePath}: a file with that name exists; give a directory path.");
            }

            // Resuming into the directory the checkpoints are in: it holds only MiniSeq's own files, which are replaced.
            bool replaceOwn = overwrite || (resumeDir is not null && Checkpoints.HoldsOnlyOwn(savePath));
            if (lora is null)
            {
                ModelDirectory.CheckSaveTarget(savePath, replaceOwn);
            }
            else
            {
                PeftAdapter.CheckSaveTarget(savePath, replaceOwn);
            }
        }
        else if (overwrite)
        {
            throw new ArgumentException("--overwrite applies to --save DIR; give --save too.");
        }

        SafeTensorsDType saveDType = ModelDirectory.ParseSaveDType(p.GetValue(SaveDType)!);
        if (savePath is null && p.IsGiven(SaveDType))
        {
            throw new ArgumentException("--save-dtype applies to --save DIR; give --save too.");
        }

        if (saveDType != SafeTensorsDType.F32 && lora is not null)
        {
            throw new ArgumentException("--save-dtype bf16 applies to full models: a LoRA adapter is saved in F32 (it is small); `miniseq merge --save-dtype bf16` writes the merged model in bf16.");
        }

        string? metricsPath = p.GetValue(Metrics);
        if (metricsPath is not null)
        {
            MetricsLog.CheckAppendable(metricsPath);
        }

        if (saveEvery < 0 || (saveEvery > 0 && savePath is null))
        {
            throw new ArgumentException("--save-every N needs N ≥ 1 and --save DIR.");
        }

        int? keep = p.GetValue(Keep);
        if (keep is int k && (k < 1 || saveEvery == 0))
        {
            throw new ArgumentException($"--keep L needs L ≥ 1 and --save-every (got {k}).");
        }

        int microRows = micro ?? shard.BatchSize;
        MemoryPolicy policy = MemoryPolicy.FromOptions(p.GetValue(MstMlp)!, p.GetValue(MstLm)!, p.GetValue(Checkpoint)!, config, (long)microRows * source.SeqLen,
            p.GetValue(SeqChunk)!, p.GetValue(ActivationDTypeOption)!, p.GetValue(Offload)!);
        Precision precision = Precisions.Parse(p.GetValue(PrecisionOption)!);
        if (precision == Precision.BFloat16 && lora is not null)
        {
            throw new ArgumentException("--precision bf16 does not combine with LoRA: the frozen base needs no fp32 master; use --lora-base-dtype bf16 for a bf16 base.");
        }

        var loss = new LossOptions
        {
            CrossEntropy = new Kernels.CrossEntropyOptions(p.GetValue(LabelSmoothing), p.GetValue(ZLoss), p.GetValue(SoftCap)),
            LmHeadRecompute = p.GetValue(LmHeadGrad)!.ToLowerInvariant() switch
            {
                "forward" => false,
                "recompute" => true,
                string other => throw new ArgumentException($"--lm-head-grad must be forward or recompute (got '{other}')."),
            },
        };
        loss.Validate();

        IOptimizerRule rule = OptimizerRegistry.Get(p.GetValue(OptimizerName)!);
        var optimizerOptions = new OptimizerOptions
        {
            Name = rule.Name,
            Groups = new ParameterGroups { NoDecay = ParameterGroups.ParseNoDecay(p.GetValue(NoDecay)!) },
            LearningRate = p.GetValue(Lr) ?? (demo ? 3e-3f : 1e-3f),
            WeightDecay = p.GetValue(WeightDecay),
            Beta1 = p.GetValue(Beta1),
            // Not given: the rule's default (Lion 0.99), or the demo's 0.95 for the Adam-style rules.
            Beta2 = p.GetValue(Beta2) ?? (demo && rule is not LionRule ? 0.95f : rule.DefaultBeta2),
            Epsilon = p.GetValue(Eps),
            Momentum = p.GetValue(Momentum),
            Dampening = p.GetValue(Dampening),
            Nesterov = p.GetValue(Nesterov),
            GradClip = demo && !p.IsGiven(GradClip) ? 1f : p.GetValue(GradClip),
            WarmupSteps = demo && !p.IsGiven(Warmup) ? 20 : p.GetValue(Warmup),
            Schedule = demo && !p.IsGiven(Schedule) ? ScheduleKind.Cosine : p.GetValue(Schedule)!.ToLowerInvariant() switch
            {
                "constant" => ScheduleKind.Constant,
                "cosine" => ScheduleKind.Cosine,
                string other => throw new ArgumentException($"--schedule must be constant or cosine (got '{other}')."),
            },
        };
        optimizerOptions.Validate();

        // Besides the policy, what shapes this rank's memory: the planner predicts one rank's peak (ZeRO-1: 1/P of the
        // optimizer state; Ulysses: ⌈N/P⌉ positions of every row).
        var setup = new TrainingSetup { Lora = lora, Bf16Base = bf16Base, Precision = precision, ZeroShards = zero ? world.Size : 1, SequenceParallel = ulysses ? ulyssesRanks : 1 };

        // The console library loads before the runtime's footprint is measured, so that the plan counts it.
        AnsiConsole.MarkupLine(Markup.Escape(FormattableString.Invariant($"MiniSeq {(demo ? "demo" : "train")}: {source.BatchSize} × {source.SeqLen} tokens per step, planning memory")));
        string? budgetOption = p.GetValue(Budget) ?? (demo ? DemoSummary.DefaultBudget : null);
        long runtimeOverhead = MemoryPlanner.MeasureRuntimeOverhead();
        long? vanillaPeak = demo ? DemoSummary.PredictVanillaPeak(config, microRows, source.SeqLen, optimizerOptions, runtimeOverhead) : null;
        // Only options typed on the command line count as a choice; their defaults leave the choice to the planner.
        bool explicitPolicy = p.IsGiven(MstMlp) || p.IsGiven(MstLm) || p.IsGiven(Checkpoint) || p.IsGiven(SeqChunk) || p.IsGiven(ActivationDTypeOption) || p.IsGiven(Offload);
        if (budgetOption is string budgetText)
        {
            policy = ApplyBudget(config, ByteSize.Parse(budgetText), policy, explicitPolicy, microRows, source.SeqLen, optimizerOptions, runtimeOverhead, setup);
        }

        // What defines the run (the memory policy included: it changes the bits), saved with every checkpoint; a
        // resume with anything different is refused.
        string dataIdentity = demo ? DemoSourceDescription(p) : data is not null ? "packed" : "tokens fnv1a64=" + Checkpoints.FileHash(tokensPath!);
        SortedDictionary<string, string> identity = Checkpoints.Identity(config, dataIdentity, source, optimizerOptions, loss, microRows, steps);
        if (world.Size > 1)
        {
            // The sum order of the gradients changes with the number of ranks, so a resume keeps it.
            identity["data_parallel_ranks"] = world.Size.ToString(CultureInfo.InvariantCulture);
            if (ulysses && ulyssesRanks < world.Size)
            {
                // Data × sequence parallel sums in another order than Ulysses or data parallel over as many ranks.
                identity["sequence_parallel"] = ulyssesRanks.ToString(CultureInfo.InvariantCulture);
            }

            if (zero)
            {
                // Reduce-scatter may sum in another order than all-reduce; the file itself is the same as without ZeRO.
                identity["zero"] = "1";
            }
        }

        if (data is not null)
        {
            // Checked in key order: a changed tokenizer is named before the corpus it changes.
            identity["tokenizer"] = tokenizer?.Fingerprint ?? "none";
            identity["training_data"] = data.Description;
        }

        if (lora is not null)
        {
            identity["lora"] = FormattableString.Invariant($"r={lora.Rank} alpha={lora.Alpha:R} dropout={lora.Dropout:R} targets={string.Join(',', lora.TargetModules)} seed={p.GetValue(Seed)} base={(bf16Base ? "bf16" : "f32")}");
        }

        if (precision != Precision.Float32)
        {
            // Recorded only when not fp32, so that fp32 checkpoints written before --precision existed still resume.
            identity["precision"] = precision.Name();
        }

        identity["memory_policy"] = (policy with { OffloadDirectory = null }).Describe(); // chunking, recomputation and bf16 storage change the numbers; where they are stored does not
        if (resumeDir is not null && TrainingCheckpoint.ReadState(resumeDir).DifferenceFrom(identity) is string difference)
        {
            throw new ArgumentException($"--resume {resumeOption}: refused, {difference}.");
        }

        LlamaModel model;
        if (resumeDir is not null && lora is null)
        {
            model = ModelDirectory.Load(resumeDir, warn: w => Console.Error.WriteLine($"warning: {w}"));
        }
        else if (demo)
        {
            model = new LlamaModel(config, bf16Projections: bf16Base);
            model.InitializeRandom(p.GetValue(Seed));
        }
        else
        {
            model = ModelDirectory.Load(modelDir!, warn: w => Console.Error.WriteLine($"warning: {w}"), bf16Projections: bf16Base);
        }

        if (lora is not null && resumeDir is not null)
        {
            // The base comes from --model (or the demo's seed), the adapters and their state from the checkpoint.
            PeftAdapter.Load(resumeDir, model);
        }
        else if (lora is not null)
        {
            model.AttachAdapters(lora).InitializePeft(p.GetValue(Seed));
        }

        using (model)
        {
            if (model.Adapters is { } attached)
            {
                AnsiConsole.MarkupLine(Markup.Escape(LoraOptions.Describe(attached.Config, model.Layout)));
            }

            var plain = new TrainerOptions
            {
                Optimizer = optimizerOptions,
                Policy = policy,
                Precision = precision,
                Loss = loss,
                MicroBatchRows = micro,
                TotalSteps = steps,
                Seed = p.GetValue(Seed),
            };
            TrainerOptions options = ulysses ? SequenceParallel.Attach(plain, world, ulyssesGroup, zero: zero) : DataParallel.Attach(plain, world, zero: zero);

            using var run = new TrainingRun(model, options, shard)
            {
                Identity = identity,
                BaseModel = modelDir,
                SynchronizeClock = world.Size > 1 ? DataParallel.SharedClock(world) : null,
            };
            if (resumeDir is not null)
            {
                TrainingState resumed = run.RestoreState(resumeDir);
                AnsiConsole.MarkupLine(Markup.Escape($"resumed from {resumeDir} at step {resumed.Step}"));
            }

            if (savePath is not null && writer)
            {
                Checkpoints.RemoveStaleTemporaries(savePath);
            }
            PrintHeader(model, source, run.Trainer, demo, world, ulyssesRanks);
            MetricsLog? metrics = metricsPath is null || !writer ? null : MetricsLog.Open(metricsPath);
            using MetricsLog? metricsScope = metrics;
            var clock = System.Diagnostics.Stopwatch.StartNew();
            TimeSpan? limit = timeLimit is double seconds ? TimeSpan.FromSeconds(seconds) : null;
            double? lastValidation = null;
            int firstStep = run.Trainer.StepCount;
            int lastCheckpoint = -1;
            var stepCollectives = new List<(double Reduction, double AllToAll)>(); // seconds per step, under mpirun
            (double Reduction, double AllToAll) collectiveMark = timed?.Snapshot() ?? default;
            void SaveCheckpointAt(int step)
            {
                // DIR/checkpoint-STEP holds only MiniSeq's files: written (or replaced) atomically as a whole; always F32.
                run.SaveCheckpoint(Path.Combine(savePath!, Checkpoints.Name(step)), overwrite: true);
                lastCheckpoint = step;
                if (keep is int newest)
                {
                    Checkpoints.Prune(savePath!, newest);
                }
            }

            var stepClock = System.Diagnostics.Stopwatch.StartNew();
            using var stop = new StopRequest(signal =>
            {
                if (writer)
                {
                    Console.Error.WriteLine($"{signal}: finishing the running step, then ending the run{(savePath is null ? " (no --save: nothing will be saved)" : $" and saving to {savePath}")}; send it again to end now and lose the step");
                }
            });
            Progress.Run(steps - firstStep, report => run.Run(steps, limit, r =>
            {
                // Time in collectives since the previous step's callback (validation and saving excluded below).
                string commField = "", commText = "";
                if (timed is not null)
                {
                    (double Reduction, double AllToAll) now = timed.Snapshot();
                    (double reduction, double allToAll) = (now.Reduction - collectiveMark.Reduction, now.AllToAll - collectiveMark.AllToAll);
                    stepCollectives.Add((reduction, allToAll));
                    commField = FormattableString.Invariant($",\"comm_s\":{reduction + allToAll:F4},\"all_to_all_s\":{allToAll:F4}");
                    commText = FormattableString.Invariant($"  comm {reduction + allToAll:F2} s");
                }

                // Validation every K steps and at the last step of the schedule.
                double? validation = data?.Validation is { } valSource && ((valEvery > 0 && r.Step % valEvery == 0) || r.Step == steps)
                    ? DataParallel.Evaluate(run.Trainer, valSource.FirstEpoch(), world).Loss
                    : null;
                lastValidation = validation ?? lastValidation;
                string valField = validation is double v ? FormattableString.Invariant($",\"val_loss\":{v:R}") : "";
                metrics?.Append(FormattableString.Invariant($"{{\"step\":{r.Step},\"loss\":{r.Loss:R}{valField},\"grad_norm\":{r.GradNorm:R},\"lr\":{r.LearningRate:R},\"tokens_per_s\":{r.TokensPerSecond:F1}{commField},\"peak_bytes\":{model.Ledger.PeakTotal},\"precision\":\"{precision.Name()}\"}}"));
                if (saveEvery > 0 && r.Step % saveEvery == 0)
                {
                    DataParallel.CheckReplicasAgree(model.Trainable.Values.All, world, "the weights");
                    using IDisposable? gathered = run.Trainer.GatherOptimizerState(); // ZeRO-1: the shards to rank 0
                    if (writer)
                    {
                        SaveCheckpointAt(r.Step);
                    }
                }

                report.Step(Progress.Line(r, steps, clock, timeLimit, model.Ledger.PeakTotal, firstStep) + commText + (validation is double vl ? FormattableString.Invariant($"  val {vl:F4}") : ""));
                collectiveMark = timed?.Snapshot() ?? default;
                stepClock.Restart();
                // As a time limit ends a run: the code after the loop saves, summarises and plots.
                return !stop.ShouldStop(world);
            }, fitScheduleToTimeLimit: fitSchedule && limit is not null, stepProgress: p => report.Within(Progress.WithinStep(run.Trainer.StepCount + 1, steps, p, stepClock.Elapsed))));
            if (stop.ExitCode != 0 && writer)
            {
                Console.Error.WriteLine(FormattableString.Invariant($"{stop.SignalName}: stopped after step {run.Trainer.StepCount}/{steps}"));
            }

            bool keepState = saveEvery > 0 || resumeDir is not null;
            if (savePath is not null)
            {
                DataParallel.CheckReplicasAgree(model.Trainable.Values.All, world, "the weights");
            }

            // ZeRO-1: the final training state is gathered to rank 0 (held until it is written), collectively.
            using IDisposable? finalState = savePath is not null && keepState ? run.Trainer.GatherOptimizerState() : null;
            // A run stopped by a signal: the other ranks wait (still catching the signal: a late copy of mpirun's
            // forwarded SIGUSR1 must not kill them, whereupon mpirun would abort rank 0 mid-save) until rank 0 has saved.
            bool awaitSave = stop.Stopped && world.Size > 1;
            if (!writer)
            {
                if (awaitSave)
                {
                    world.Barrier();
                }

                return stop.ExitCode;
            }

            if (savePath is not null)
            {
                // Checked above: the directory was empty, --overwrite was given, or it holds our own checkpoints. A run
                // with checkpoints saves its final training state too (a resume from DIR then continues from there):
                // with the F32 model in DIR, or, when DIR gets a rounded (BF16) model, as DIR/checkpoint-STEP in F32.
                if (keepState && (saveDType == SafeTensorsDType.F32 || model.Adapters is not null))
                {
                    run.SaveCheckpoint(savePath, overwrite: true);
                }
                else if (model.Adapters is { } adapters)
                {
                    PeftAdapter.Save(adapters, savePath, modelDir, overwrite: true);
                }
                else
                {
                    if (keepState && lastCheckpoint != run.Trainer.StepCount)
                    {
                        SaveCheckpointAt(run.Trainer.StepCount);
                    }

                    model.Save(savePath, overwrite: true, saveDType);
                }

                // Text in, text out: the saved directory works with generate and eval without --tokenizer.
                if (tokenizerPath is not null)
                {
                    ModelDirectory.CopyTokenizerFiles(tokenizerPath, savePath);
                }
            }

            if (awaitSave)
            {
                world.Barrier(); // saved: the other ranks may end
            }

            long trainingPeakRss = ProcessMemory.PeakRssBytes(); // before the held-out evaluation allocates its own pass
            (double, int) recall = demo ? DemoSummary.RecallAccuracy(model, task!, new DeterministicRandom(p.GetValue(Seed) + DemoSummary.HeldOutSeedOffset)) : default;
            long policyPeak = demo ? MemoryPlanner.Predict(config, microRows, source.SeqLen, policy, optimizerOptions, runtimeOverhead, setup: setup).ProcessPeak : 0;
            Action<Table>? extraRows = demo ? table => DemoSummary.AddRows(table, task!, recall, policy.Describe(), explicitPolicy ? null : budgetOption, policyPeak, vanillaPeak!.Value, trainingPeakRss)
                : lastValidation is double finalValidation ? table => table.AddRow("validation loss (perplexity)", FormattableString.Invariant($"{finalValidation:F4} ({Math.Exp(finalValidation):F2})"))
                : null;
            PrintSummary(model, run.History, savePath, extraRows, world, ulyssesRanks, stepCollectives);
            if (metricsPath is not null)
            {
                metrics?.Dispose();
                try
                {
                    string? chart = PlotCommand.WriteNextTo(metricsPath, out string? skipped);
                    AnsiConsole.MarkupLine(Markup.Escape(chart is not null ? $"plot: {chart}" : $"plot skipped: {skipped}"));
                }
                catch (Exception e) when (e is IOException or InvalidDataException or UnauthorizedAccessException)
                {
                    Console.Error.WriteLine($"warning: no chart drawn ({e.Message}); the run itself succeeded");
                }
            }

            return stop.ExitCode;
        }
    }

    /// <summary>Loads the tokenizer, the chat template and the data of a `train --data` run, with a summary on the console.</summary>
    private static (TrainingData Data, Tokenizer? Tokenizer, string? TokenizerPath) LoadData(ParseResult p, string modelDir, string[] dataPaths, LlamaConfig config)
    {
        string? tokenizerPath = Tokenizer.PathOrModelDefault(p.GetValue(TokenizerPath), modelDir);
        Tokenizer? tokenizer = tokenizerPath is null ? null : Tokenizer.Load(tokenizerPath);
        double? valFraction = p.GetValue(ValFraction);
        string[] valPaths = p.GetValue(ValData) ?? [];
        var options = new DataOptions
        {
            Paths = dataPaths,
            ValidationPaths = valPaths.Length > 0 ? valPaths : null,
            ValidationFraction = valFraction,
            BatchSize = p.GetValue(Batch) ?? 1,
            SeqLen = p.GetValue(SeqLen),
            Seed = p.GetValue(Seed),
            DropLong = p.GetValue(DropLong),
            DocumentMask = p.GetValue(DocumentMask),
            Corpus = new CorpusOptions
            {
                VocabSize = config.VocabSize,
                SplitOnBlankLines = p.GetValue(SplitBlankLines),
                UseCache = !p.GetValue(NoCache),
                RawTokenDtype = p.GetValue(TokenDtypeOption)?.ToLowerInvariant() switch
                {
                    null => null,
                    "uint16" => TokenDtype.UInt16,
                    "uint32" => TokenDtype.UInt32,
                    string other => throw new ArgumentException($"--token-dtype must be uint16 or uint32 (got '{other}')."),
                },
                RenderChat = tokenizerPath is null ? null : ChatTemplate.SegmentRenderer(tokenizerPath),
            },
        };
        if (options.BatchSize < 1 || options.SeqLen < 2)
        {
            throw new ArgumentException($"--batch must be ≥ 1 and --seq-len ≥ 2 (got {options.BatchSize} and {options.SeqLen}).");
        }

        var clock = System.Diagnostics.Stopwatch.StartNew();
        var progress = new Progress<CorpusProgress>(e =>
        {
            if (e.Warning is not null)
            {
                Console.Error.WriteLine($"warning: {e.Warning}");
            }
        });
        TrainingData data = TrainingData.Load(options, tokenizer, progress);

        // Tokenizing leaves garbage on the managed heap; return it to the OS before the planner measures the runtime.
        GC.Collect(2, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        foreach (CorpusSource src in data.Corpus.Sources.Concat(data.ValidationCorpus?.Sources ?? []))
        {
            AnsiConsole.MarkupLine(Markup.Escape(FormattableString.Invariant($"data: {src.Path} ({src.Kind}): {src.Documents:N0} documents, {src.Tokens:N0} tokens{(src.FromCache ? ", from cache" : "")}")));
        }

        AnsiConsole.MarkupLine(Markup.Escape(FormattableString.Invariant($"data ready in {clock.Elapsed.TotalSeconds:F1} s — training: {data.Training.Stats.Describe(options.SeqLen)}")));
        if (data.Validation is { } val)
        {
            AnsiConsole.MarkupLine(Markup.Escape(FormattableString.Invariant($"validation: {val.Stats.Documents:N0} documents, {val.Stats.Tokens:N0} tokens ({val.BatchesPerEpoch} batches)")));
        }

        return (data, tokenizer, tokenizerPath);
    }

    private static string DemoSourceDescription(ParseResult p)
        => FormattableString.Invariant($"recall seq_len={p.GetValue(SeqLen)} pairs={p.GetValue(Pairs)} gap={p.GetValue(Gap)} seed={p.GetValue(Seed)}");

    private static MemoryPolicy ApplyBudget(LlamaConfig config, long budget, MemoryPolicy policy, bool explicitPolicy, int microRows, int seqLen, OptimizerOptions optimizer, long overhead, TrainingSetup setup)
    {
        if (explicitPolicy)
        {
            MemoryPrediction mine = MemoryPlanner.Predict(config, microRows, seqLen, policy, optimizer, overhead, setup: setup);
            if (mine.ProcessPeak > budget)
            {
                throw new MemoryBudgetException($"--budget {ByteSize.Format(budget)}: {policy.Describe()} needs a predicted {ByteSize.Format(mine.ProcessPeak)} (activations {ByteSize.Format(mine.Activations)}, scratch {ByteSize.Format(mine.Scratch)}); nothing was allocated. Drop --mst-*/--checkpoint/--seq-chunk/--activation-dtype/--offload to let the planner choose, or see `miniseq plan`.");
            }

            return policy;
        }

        IReadOnlyList<MemoryPrediction> all = MemoryPlanner.PredictAll(config, microRows, seqLen, optimizer, overhead, setup);
        MemoryPrediction? choice = MemoryPlanner.Choose(all, budget)
            ?? throw new MemoryBudgetException($"--budget {ByteSize.Format(budget)}: no policy fits; the smallest ({all.MinBy(x => x.ProcessPeak)!.PolicyName}) needs a predicted {ByteSize.Format(all.Min(x => x.ProcessPeak))}. Nothing was allocated. Shorten --seq-len, use --micro-batch, or raise the budget.");
        AnsiConsole.MarkupLine(Markup.Escape($"budget {ByteSize.Format(budget)}: chose {choice.PolicyName} ({choice.Policy.Describe()}), predicted peak {ByteSize.Format(choice.ProcessPeak)}"));
        return choice.Policy;
    }

    /// <summary>The Ulysses ranks P of --sequence-parallel P (1: none); P must divide the number of ranks (one line
    /// otherwise): the world / P groups are data-parallel replicas.</summary>
    private static int CheckSequenceParallel(int? ranks, ICommunicator world)
    {
        if (ranks is not int sp || sp == 1)
        {
            return 1;
        }

        if (sp < 1)
        {
            throw new ArgumentException($"--sequence-parallel {sp} must be ≥ 1 (the number of Ulysses ranks sharing each sequence).");
        }

        if (world.Size % sp != 0)
        {
            throw new ArgumentException($"--sequence-parallel {sp} needs a number of MPI ranks that {sp} divides (mpirun -np {sp}, or a multiple of {sp} for data × sequence parallel); this job has {world.Size}.");
        }

        return sp;
    }

    private static string PrecisionText(Precision precision) => precision == Precision.BFloat16
        ? "; bf16 mixed precision (bf16 compute weights and saved activations, fp32 master weights, gradients, optimizer state and accumulation)"
        : string.Empty;

    private static void PrintHeader(LlamaModel model, IBatchSource batch, Trainer trainer, bool demo, ICommunicator world, int ulyssesRanks)
    {
        LlamaConfig c = model.Config;
        AnsiConsole.MarkupLine(Markup.Escape(demo
            ? $"MiniSeq demo: associative recall — {trainer.Plan.Policy.Describe()}{PrecisionText(trainer.Plan.Precision)}"
            : $"MiniSeq train — {trainer.Plan.Policy.Describe()}{PrecisionText(trainer.Plan.Precision)}"));
        string threads = world.Size > 1 ? $"{KernelThreads.ThreadCount} threads per rank" : $"{KernelThreads.ThreadCount} threads";
        AnsiConsole.MarkupLine(Markup.Escape(FormattableString.Invariant(
            $"model: d={c.HiddenSize} L={c.NumHiddenLayers} heads={c.NumAttentionHeads}/{c.NumKeyValueHeads} I={c.IntermediateSize} V={c.VocabSize} ({model.Layout.ParameterCount:N0} parameters); batch {batch.BatchSize}×{batch.SeqLen} tokens, micro-batch {trainer.MicroBatchRows}; {threads}")));
        if (trainer.Plan.SequenceParallel is { } heads)
        {
            long floats = trainer.Gradients.Length;
            int padding = (trainer.SeqLen * ulyssesRanks) - batch.SeqLen, replicas = world.Size / ulyssesRanks;
            long tokens = (long)trainer.MicroBatchRows * trainer.SeqLen * ulyssesRanks;
            long perLayer = heads.FloatsPerLayer(c, tokens, backward: true, trainer.Plan.Policy.SequenceChunked);
            if (trainer.Plan.Policy.Checkpoint && !trainer.Plan.Policy.SequenceChunked && !trainer.Plan.KeepsAttention)
            {
                perLayer += heads.FloatsPerLayer(c, tokens, backward: false); // the recomputed forward's all-to-alls
            }

            AnsiConsole.MarkupLine(Markup.Escape(FormattableString.Invariant(
                $"Ulysses sequence parallel over {ulyssesRanks} ranks ({world.Implementation}){(replicas > 1 ? $" × {replicas} data-parallel replicas ({trainer.BatchRows} of the {batch.BatchSize} rows each)" : "")}: {trainer.SeqLen} of the {batch.SeqLen} positions of every row per rank{(padding > 0 ? $" (the last shard padded by {padding} ignored positions at its end)" : "")} (RoPE from position {trainer.Plan.Positions.Offset}); {heads.LocalHeads} query heads and {heads.LocalKvHeads} kv head(s) per rank ({(heads.KvReplicated ? "kv heads replicated" : "kv heads split")}); all-to-all {ByteSize.Format(perLayer * sizeof(float))} sent per rank per layer and micro-batch (forward + backward); {(trainer.Optimizer.Shard is OptimizerShard own ? $"ZeRO-1: optimizer state {ByteSize.Format(trainer.Optimizer.ResidentBytes)} per rank (its 1/{world.Size}: {ByteSize.Format(own.Length * sizeof(float))} of the weights), gradients ({ByteSize.Format(floats * sizeof(float))}) reduce-scattered and weights all-gathered" : $"gradients ({ByteSize.Format(floats * sizeof(float))}) all-reduced")}")));
        }
        else if (world.Size > 1)
        {
            long floats = trainer.Gradients.Length;
            string sent = ByteSize.Format((long)DataParallel.RingBytesPerStep(floats, world.Size));
            string exchange = trainer.Optimizer.Shard is OptimizerShard own
                ? $"ZeRO-1: optimizer state {ByteSize.Format(trainer.Optimizer.ResidentBytes)} per rank (its 1/{world.Size}: {ByteSize.Format(own.Length * sizeof(float))} of the weights), gradients ({ByteSize.Format(floats * sizeof(float))}) reduce-scattered and weights all-gathered per step, {sent} sent per rank (ring)"
                : $"gradients ({ByteSize.Format(floats * sizeof(float))}) all-reduced in {DataParallel.BucketCount(floats)} bucket(s) per step, {sent} sent per rank (ring)";
            AnsiConsole.MarkupLine(Markup.Escape(FormattableString.Invariant(
                $"data parallel over {world.Size} ranks ({world.Implementation}): {trainer.BatchRows} of the {batch.BatchSize} rows per rank; {exchange}")));
        }
    }

    private static void PrintSummary(LlamaModel model, IReadOnlyList<StepResult> history, string? savePath, Action<Table>? demoRows, ICommunicator world, int ulyssesRanks = 1,
        IReadOnlyList<(double Reduction, double AllToAll)>? collectives = null)
    {
        MemoryReport mem = model.Ledger.Snapshot();
        var table = new Table().Border(TableBorder.Rounded).AddColumn("summary").AddColumn(new TableColumn("value").RightAligned());
        double seconds = history.Sum(h => h.Elapsed.TotalSeconds);
        long tokens = history.Sum(h => h.Tokens);
        table.AddRow("steps", history.Count.ToString(CultureInfo.InvariantCulture));
        if (history.Count > 0)
        {
            table.AddRow("loss first → last", FormattableString.Invariant($"{history[0].Loss:F4} → {history[^1].Loss:F4}"));
        }

        table.AddRow("tokens/s", FormattableString.Invariant($"{tokens / Math.Max(seconds, 1e-9):F0}"));
        if (history.Count >= 2)
        {
            // Without the first step (JIT compilation, first touch of every buffer): the figure to compare setups by.
            double steadySeconds = seconds - history[0].Elapsed.TotalSeconds;
            table.AddRow("tokens/s after the first step", FormattableString.Invariant($"{(tokens - history[0].Tokens) / Math.Max(steadySeconds, 1e-9):F0}"));
        }

        table.AddRow("time", FormattableString.Invariant($"{seconds:F1} s"));
        if (world.Size > 1)
        {
            string layout = ulyssesRanks == 1 ? "data parallel" : ulyssesRanks == world.Size ? "sequence parallel (Ulysses)" : $"data × sequence parallel ({world.Size / ulyssesRanks} × {ulyssesRanks})";
            table.AddRow(layout, FormattableString.Invariant($"{world.Size} ranks × {KernelThreads.ThreadCount} threads ({world.Implementation})"));
        }

        if (collectives is { Count: > 0 } && collectives.Count == history.Count)
        {
            // Rank 0's time inside collectives (transfer + waiting for the other ranks): what communication costs, and
            // the most that overlapping it with computation could win back.
            // After the first step when there are more (its collectives mostly wait for the other ranks' JIT warm-up).
            int skip = history.Count >= 2 ? 1 : 0;
            double reduction = collectives.Skip(skip).Sum(c => c.Reduction), allToAll = collectives.Skip(skip).Sum(c => c.AllToAll);
            double stepSeconds = history.Skip(skip).Sum(h => h.Elapsed.TotalSeconds);
            string split = allToAll > 0 ? FormattableString.Invariant($" (all-to-all {allToAll:F2} s, reductions {reduction:F2} s)") : "";
            table.AddRow(skip == 1 ? "time in collectives after the first step (rank 0)" : "time in collectives (rank 0)",
                FormattableString.Invariant($"{reduction + allToAll:F2} s = {100 * (reduction + allToAll) / Math.Max(stepSeconds, 1e-9):F1} % of the steps' time{split}"));
        }
        demoRows?.Invoke(table);

        foreach (MemoryCategory cat in MemoryLedger.Categories)
        {
            table.AddRow($"peak {MemoryLedger.DisplayName(cat)}", ByteSize.Format(mem.PeakOf(cat)));
        }

        table.AddRow("peak tracked total", ByteSize.Format(mem.PeakTotalBytes));
        table.AddRow("process peak RSS", ByteSize.Format(mem.ProcessPeakRssBytes));
        if (savePath is not null)
        {
            table.AddRow("saved to", Markup.Escape(savePath));
        }

        AnsiConsole.Write(table);
    }
}
