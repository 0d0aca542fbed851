// One optimizer step, in phases a distributed run can hook between: compute gradients (zero, then forward/backward
// over each micro-batch, accumulating in place, every micro-batch scaled by 1/N_valid of the whole — possibly
// global — batch, so the result equals one big batch) → reduce gradients (identity in one process) → global-norm
// clipping → update → check the updated weights. Also evaluation (forward only) with the same memory policy.
using System.Diagnostics;
using MiniSeq.Diagnostics;
using MiniSeq.IO;
using MiniSeq.Kernels;
using MiniSeq.Model;
using MiniSeq.Tensors;

namespace MiniSeq.Training;

/// <summary>Trainer settings.</summary>
public sealed record TrainerOptions
{
    /// <summary>Optimizer and schedule.</summary>
    public OptimizerOptions Optimizer { get; init; } = new();

    /// <summary>Arithmetic precision of the training passes (<c>--precision</c>): fp32, or bf16 mixed precision (bf16
    /// compute weights and checkpointed layer inputs; fp32 masters, gradients, optimizer state and accumulation).
    /// Trainer.Evaluate goes through the training pass, so under bf16 it reads the bf16 compute copies too.</summary>
    public Precision Precision { get; init; } = Precision.Float32;

    /// <summary>Memory policy (MsT chunking, checkpointing).</summary>
    public MemoryPolicy Policy { get; init; } = MemoryPolicy.Vanilla;

    /// <summary>Loss options (label smoothing, z-loss, soft-cap, LM-head gradient variant).</summary>
    public LossOptions Loss { get; init; } = LossOptions.Default;

    /// <summary>Rows per micro-batch (null = the whole batch in one pass).</summary>
    public int? MicroBatchRows { get; init; }

    /// <summary>Seed of the LoRA dropout masks (drawn per step and global token from it, so a resumed run draws the same).</summary>
    public ulong Seed { get; init; }

    /// <summary>Total optimizer steps planned (for the schedule).</summary>
    public int TotalSteps { get; init; } = 1;

    /// <summary>
    /// Turns this process's scored-label count into the count the loss is normalised by (data parallel: the sum over
    /// ranks). Identity by default. Called once per step, before any gradient is computed.
    /// </summary>
    public Func<long, long> ReduceScoredCount { get; init; } = static local => local;

    /// <summary>
    /// Reduces the accumulated gradients across processes (data parallel: all-reduce sum) before clipping and the
    /// update. Nothing by default.
    /// </summary>
    public Action<TensorView>? ReduceGradients { get; init; }

    /// <summary>
    /// Turns this process's sum of token losses into the sum over every process (data parallel: all-reduce sum), so
    /// that the reported loss is the global batch's. Identity by default. Called once per step, after the gradients.
    /// </summary>
    public Func<double, double> ReduceLossSum { get; init; } = static local => local;

    /// <summary>
    /// Data-parallel replicas that each take an equal share of the rows of every batch (one per rank, or one per Ulysses
    /// group under data × sequence parallel), so that a step processes this many times the replica's tokens
    /// (<see cref="StepResult.Tokens"/>). 1 by default.
    /// </summary>
    public int DataParallelRanks { get; init; } = 1;

    /// <summary>
    /// This process's index among <see cref="DataParallelRanks"/> when they take different rows (data parallel: its
    /// batches are rows rank, rank + P, … of the global batch, <see cref="Data.RankShardSource"/>). Keys the LoRA
    /// dropout masks by global row, so a run draws the same masks whatever the number of ranks. 0 by default.
    /// </summary>
    public int DataParallelRank { get; init; }

    /// <summary>
    /// ZeRO-1: each rank keeps optimizer state for, and updates, only its range of the weights; the gradients are
    /// reduce-scattered (instead of <see cref="ReduceGradients"/>) and the updated weights all-gathered. Null (the
    /// default): every rank updates everything.
    /// </summary>
    public OptimizerSharding? Sharding { get; init; }

    /// <summary>
    /// Ulysses sequence parallel: the group whose ranks each hold an equal, consecutive share of every row's positions
    /// (batches of N/P positions; see <see cref="Distributed.SequenceParallel"/>), or null.
    /// </summary>
    public Distributed.ICommunicator? SequenceParallel { get; init; }
}

/// <summary>What one optimizer step did.</summary>
public sealed record StepResult(int Step, double Loss, double GradNorm, float LearningRate, long Tokens, long ScoredTokens, TimeSpan Elapsed)
{
    /// <summary>Tokens processed per second (<see cref="Tokens"/>: the whole batch's, over every data-parallel rank).</summary>
    public double TokensPerSecond => Tokens / Math.Max(1e-9, Elapsed.TotalSeconds);
}

/// <summary>Thrown when the loss or the gradient norm stops being finite.</summary>
public sealed class TrainingDivergedException(string message) : Exception(message);

/// <summary>Trains a <see cref="LlamaModel"/> on token batches of a fixed shape.</summary>
public sealed unsafe class Trainer : IDisposable
{
    private readonly LlamaModel _model;
    private readonly Arena _gradients;
    private readonly Optimizer _optimizer;
    private readonly LlamaPass _pass;
    private readonly TrainableTensors _trainable;

    /// <summary>Allocates gradients, optimizer state and the activation/scratch arenas for batches of batchRows × seqLen.</summary>
    public Trainer(LlamaModel model, TrainerOptions options, int batchRows, int seqLen)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(options);
        options.Optimizer.Validate();
        _model = model;
        Options = options;
        BatchRows = batchRows;
        SeqLen = seqLen;
        MicroBatchRows = Math.Clamp(options.MicroBatchRows ?? batchRows, 1, batchRows);
        ScheduleSteps = options.TotalSteps;
        options.Loss.Validate();
        Distributed.ICommunicator? sp = options.SequenceParallel is { Size: > 1 } group ? group : null;
        Plan = new PassPlan(model.Config, MicroBatchRows, seqLen, options.Policy, loss: options.Loss, lora: model.Adapters?.Config,
            positions: sp is null ? null : new TokenPositions { Offset = sp.Rank * seqLen }, sequenceParallel: sp?.Size ?? 1, precision: options.Precision);
        _trainable = model.Trainable;
        _gradients = new Arena(_trainable.PlanFor(MemoryCategory.Gradients), model.Ledger);
        _optimizer = new Optimizer(model, options.Optimizer, options.Sharding?.ShardOf(_gradients.All.Length));
        _pass = new LlamaPass(model, Plan, sp);
    }

    /// <summary>Settings.</summary>
    public TrainerOptions Options { get; }

    /// <summary>Called on the training thread as each micro-batch's pass moves between layers (forward, LM head,
    /// backward), so a step that takes minutes at long N can show where it is; null: no reports.</summary>
    public Action<StepProgress>? Progress { get; set; }

    /// <summary>Rows per batch.</summary>
    public int BatchRows { get; }

    /// <summary>Tokens per row.</summary>
    public int SeqLen { get; }

    /// <summary>Rows per micro-batch.</summary>
    public int MicroBatchRows { get; }

    /// <summary>
    /// Steps the learning-rate schedule spans: <see cref="TrainerOptions.TotalSteps"/> unless a time-limited run
    /// shortens it as it goes, so that a cosine schedule still ends at the last step that fits.
    /// </summary>
    public int ScheduleSteps { get; set; }

    /// <summary>The memory plan of one micro-batch pass.</summary>
    public PassPlan Plan { get; }

    /// <summary>Gradients (same layout as the trainable tensors: the parameters, or the LoRA adapters). After a ZeRO-1
    /// step only this rank's range (<see cref="Optimizer.Shard"/>) holds the reduced (and clipped) gradient.</summary>
    public TensorView Gradients => _gradients.All;

    /// <summary>Optimizer steps taken.</summary>
    public int StepCount => _optimizer.StepCount;

    /// <summary>The optimizer (its state buffers are part of the training state).</summary>
    public Optimizer Optimizer => _optimizer;

    /// <summary>The gradient of one trainable tensor by name (Hugging Face's, or PEFT's for an adapter).</summary>
    public TensorView Gradient(string name)
        => _trainable.TryGet(name, out ParameterInfo info) ? _gradients[info.Slot] : throw new KeyNotFoundException(name);

    /// <summary>
    /// Zeroes the gradients and accumulates those of the mean loss over every scored label of the batch, micro-batch
    /// by micro-batch. Returns the mean loss and the number of scored labels.
    /// </summary>
    public (double Loss, long Scored) ComputeGradients(TokenBatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        long scored = batch.CountValidLabels();
        if (scored == 0)
        {
            throw new InvalidDataException("The batch has no label to score (every label is -100): nothing to train on.");
        }

        return (ComputeGradients(batch, scored) / scored, scored);
    }

    /// <summary>
    /// Zeroes the gradients and accumulates those of this batch's token losses divided by
    /// <paramref name="normalizer"/> (the scored-label count of the whole, possibly global, batch). Returns the
    /// unscaled sum of this batch's token losses.
    /// </summary>
    public double ComputeGradients(TokenBatch batch, long normalizer)
    {
        ArgumentNullException.ThrowIfNull(batch);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(normalizer);
        CheckShape(batch);
        _gradients.All.Clear();
        float scale = (float)(1.0 / normalizer);
        double lossSum = 0;
        int microBatches = batch.BatchSize / MicroBatchRows;
        try
        {
            for (int row = 0; row < batch.BatchSize; row += MicroBatchRows)
            {
                // A short last micro-batch would need a differently sized plan; require divisibility instead.
                TokenBatch micro = MicroBatchRows == batch.BatchSize ? batch : batch.Slice(row, MicroBatchRows);
                _pass.DropoutSeed = DeterministicRandom.Mix(Options.Seed, (ulong)_optimizer.StepCount + 1);
                _pass.DropoutTokens = DropoutTokensOf(row, batch.PaddedPositions);
                int microBatch = (row / MicroBatchRows) + 1;
                _pass.Progress = Progress is { } report ? pass => report(new StepProgress(microBatch, microBatches, pass)) : null;
                lossSum += _pass.ForwardBackward(micro.InputIds, micro.Labels, scale, _gradients.All, micro.DocumentIds);
            }
        }
        finally
        {
            _pass.Progress = null; // validation passes through the same pass do not report
        }

        return lossSum;
    }

    // The global tokens of the micro-batch starting at local row `row`: data-parallel replica g holds rows g, g + D, …
    // of the global batch (RankShardSource), and within it Ulysses rank r positions r·T … of those rows
    // (SequenceShardSource; rows of P·T − padded real positions: the padding's keys are never those of a real token).
    private DropoutTokens DropoutTokensOf(int row, int padded)
    {
        int ulyssesRank = Options.SequenceParallel?.Rank ?? 0, ulyssesRanks = Options.SequenceParallel?.Size ?? 1;
        return new DropoutTokens(Options.DataParallelRank + ((long)row * Options.DataParallelRanks), Options.DataParallelRanks, SeqLen,
            ((long)SeqLen * ulyssesRanks) - padded, (long)SeqLen * ulyssesRank);
    }

    /// <summary>
    /// Mean loss over <paramref name="batches"/> (each of the trainer's batch shape) through the training pass's own
    /// arenas, forward only: validation during training costs no memory beyond what the plan already holds.
    /// </summary>
    public EvalResult Evaluate(IEnumerable<TokenBatch> batches)
    {
        (double sum, long scored, long tokens) = EvaluateSums(batches);
        return FinishEvaluation(sum, scored, tokens);
    }

    /// <summary>The unnormalised parts of <see cref="Evaluate"/> (for a reduction across processes before
    /// <see cref="FinishEvaluation"/>): token-loss sum, scored labels, tokens. Nothing scored is not an error here.</summary>
    internal (double LossSum, long Scored, long Tokens) EvaluateSums(IEnumerable<TokenBatch> batches)
    {
        ArgumentNullException.ThrowIfNull(batches);
        return Evaluator.Sums(_pass, batches.Select(b =>
        {
            CheckShape(b);
            return b;
        }), MicroBatchRows);
    }

    /// <summary>The mean loss of <see cref="EvaluateSums"/>' parts, with <see cref="Evaluate"/>'s checks.</summary>
    internal EvalResult FinishEvaluation(double lossSum, long scored, long tokens) => Evaluator.Finish(_model, lossSum, scored, tokens);

    /// <summary>One optimizer step on <paramref name="batch"/>.</summary>
    public StepResult Step(TokenBatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        long start = Stopwatch.GetTimestamp();
        long scored = Options.ReduceScoredCount(batch.CountValidLabels());
        if (scored <= 0)
        {
            throw new InvalidDataException("The batch has no label to score (every label is -100): nothing to train on.");
        }

        double loss = Options.ReduceLossSum(ComputeGradients(batch, scored)) / scored;

        // ZeRO-1: each rank reduces, clips and updates only its range; the global norm sums the ranges' parts.
        OptimizerSharding? sharding = Options.Sharding;
        TensorView reduced = _gradients.All;
        if (sharding is not null)
        {
            sharding.ReduceScatterGradients(_gradients.All);
            OptimizerShard own = _optimizer.Shard!.Value;
            reduced = _gradients.All.Slice(own.Start, own.Length);
        }
        else
        {
            Options.ReduceGradients?.Invoke(_gradients.All);
        }

        using var optimizerScope = StepProfiler.Measure(ProfiledOp.Optimizer);
        double sumOfSquares = VectorOps.SumOfSquares(reduced.Pointer, reduced.Length);
        double norm = Math.Sqrt(sharding is null ? sumOfSquares : sharding.Sum(sumOfSquares));
        int step = _optimizer.StepCount + 1;
        if (!double.IsFinite(loss) || !double.IsFinite(norm))
        {
            throw new TrainingDivergedException($"Step {step}: loss {loss}, gradient norm {norm} — training diverged; lower the learning rate or enable --grad-clip. The model was not updated by this step.");
        }

        float clip = Options.Optimizer.GradClip;
        if (clip > 0 && norm > clip)
        {
            // torch.nn.utils.clip_grad_norm_: coef = max_norm / (total_norm + 1e-6), applied when < 1.
            VectorOps.Scale(reduced.Pointer, reduced.Length, (float)(clip / (norm + 1e-6)));
        }

        float lr = Options.Optimizer.LearningRateAt(step, ScheduleSteps);
        _optimizer.Step(_gradients.All, lr);
        sharding?.AllGatherValues(_trainable.Values.All.Slice(0, _gradients.All.Length));

        // Every step, the last included: an update that breaks the weights must never reach a saved model.
        if (ParameterHealth.FindUnhealthy(_trainable.Tensors, _trainable.Values.All) is UnhealthyTensor bad)
        {
            throw new TrainingDivergedException(FormattableString.Invariant(
                $"Step {step}: the update (learning rate {lr:G3}) left tensor {bad} — training diverged and the weights are unusable, so they were not saved. Lower --lr or enable --grad-clip."));
        }
        // Every replica's rows (data parallel), each the whole row over the Ulysses group, without the padding.
        int ulyssesRanks = Options.SequenceParallel?.Size ?? 1;
        long tokens = (((long)batch.BatchSize * batch.SeqLen * ulyssesRanks) - ((long)batch.BatchSize * batch.PaddedPositions)) * Options.DataParallelRanks;
        return new StepResult(step, loss, norm, lr, tokens, scored, Stopwatch.GetElapsedTime(start));
    }

    /// <summary>
    /// Under ZeRO-1, collective (every rank calls it): gathers the sharded optimizer state to rank 0, which can then
    /// save a checkpoint (the same file as without ZeRO) until the result is disposed. Otherwise nothing; returns null.
    /// </summary>
    public IDisposable? GatherOptimizerState() => Options.Sharding is { } sharding ? _optimizer.GatherState(sharding) : null;

    private void CheckShape(TokenBatch batch)
    {
        if (batch.SeqLen != SeqLen || batch.BatchSize != BatchRows)
        {
            throw new ArgumentException($"The trainer was built for batches of {BatchRows}×{SeqLen} tokens; got {batch.BatchSize}×{batch.SeqLen}.", nameof(batch));
        }

        if (batch.BatchSize % MicroBatchRows != 0)
        {
            throw new ArgumentException($"--micro-batch {MicroBatchRows} must divide the batch's {batch.BatchSize} rows.", nameof(batch));
        }
    }

    /// <summary>Frees gradients, optimizer state and activations.</summary>
    public void Dispose()
    {
        _pass.Dispose();
        _optimizer.Dispose();
        _gradients.Dispose();
    }
}

/// <summary>Result of an evaluation.</summary>
public sealed record EvalResult(double Loss, long Tokens, long ScoredTokens)
{
    /// <summary>exp(loss).</summary>
    public double Perplexity => Math.Exp(Loss);
}

/// <summary>Forward-only evaluation with the same chunked LM head (no gradients, no optimizer state).</summary>
public static class Evaluator
{
    /// <summary>Mean cross-entropy over the batch's scored labels.</summary>
    /// <exception cref="InvalidDataException">The loss is NaN or infinite (the message names the tensor at fault).</exception>
    public static EvalResult Evaluate(LlamaModel model, TokenBatch batch, MemoryPolicy? policy = null, int? microBatchRows = null)
    {
        ArgumentNullException.ThrowIfNull(batch);
        return Evaluate(model, [batch], batch.BatchSize, batch.SeqLen, policy, microBatchRows);
    }

    /// <summary>Mean cross-entropy over every scored label of <paramref name="batches"/> (all of shape
    /// <paramref name="batchSize"/> × <paramref name="seqLen"/>; one pass planned for all; packed rows honoured).
    /// <paramref name="batchDone"/> hears the count of batches done after each (a long evaluation can show progress).</summary>
    /// <exception cref="InvalidDataException">Nothing is scored, or the loss is NaN or infinite (the message names the tensor at fault).</exception>
    public static EvalResult Evaluate(LlamaModel model, IEnumerable<TokenBatch> batches, int batchSize, int seqLen, MemoryPolicy? policy = null, int? microBatchRows = null, Action<int>? batchDone = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(batches);
        int micro = Math.Clamp(microBatchRows ?? 1, 1, batchSize);
        while (batchSize % micro != 0)
        {
            micro--;
        }

        policy ??= MemoryPolicy.MiniSequence(model.Config, (long)micro * seqLen, checkpoint: false);
        using var pass = new LlamaPass(model, new PassPlan(model.Config, micro, seqLen, policy, training: false, lora: model.Adapters?.Config));
        IEnumerable<TokenBatch> checkedBatches = batches.Select(batch => batch.BatchSize == batchSize && batch.SeqLen == seqLen ? batch
            : throw new ArgumentException($"Every batch must be {batchSize} × {seqLen}; got {batch.BatchSize} × {batch.SeqLen}.", nameof(batches)));
        (double sum, long scored, long tokens) = Sums(pass, checkedBatches, micro, batchDone);
        return Finish(model, sum, scored, tokens);
    }

    /// <summary>Token-loss sum, scored labels and tokens of <paramref name="batches"/> through <paramref name="pass"/>.</summary>
    internal static (double LossSum, long Scored, long Tokens) Sums(LlamaPass pass, IEnumerable<TokenBatch> batches, int micro, Action<int>? batchDone = null)
    {
        double sum = 0;
        long scored = 0, tokens = 0;
        int done = 0;
        foreach (TokenBatch batch in batches)
        {
            scored += batch.CountValidLabels();
            tokens += batch.TokenCount;
            for (int row = 0; row < batch.BatchSize; row += micro)
            {
                TokenBatch part = micro == batch.BatchSize ? batch : batch.Slice(row, micro);
                sum += pass.ForwardLoss(part.InputIds, part.Labels, part.DocumentIds);
            }

            batchDone?.Invoke(++done);
        }

        return (sum, scored, tokens);
    }

    /// <summary>The mean loss; nothing scored, or a loss that is not finite, is an error.</summary>
    internal static EvalResult Finish(LlamaModel model, double sum, long scored, long tokens)
    {
        if (scored == 0)
        {
            throw new InvalidDataException("Nothing to score: every label is -100.");
        }

        double loss = sum / scored;
        if (!double.IsFinite(loss))
        {
            string cause = ParameterHealth.FindUnhealthy(model.Layout, model.Parameters.All) is UnhealthyTensor bad
                ? $"tensor {bad}"
                : "every parameter is finite, so the activations or logits overflow fp32";
            throw new InvalidDataException(FormattableString.Invariant($"the loss is not finite ({loss}): {cause}. The model cannot be evaluated."));
        }

        return new EvalResult(loss, tokens, scored);
    }
}
