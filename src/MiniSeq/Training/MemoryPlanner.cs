// Predicts the peak memory of a training run by category before anything is allocated, from the same plans the
// trainer allocates (ParameterLayout, PassPlan, optimizer state), and picks the fastest policy that fits a budget.
// The process peak RSS is predicted as tracked bytes + the runtime's own footprint (measured in this process at
// planning time) + the kernels' per-thread tile buffers.
using MiniSeq.Model;
using MiniSeq.Model.Lora;
using MiniSeq.Tensors;

namespace MiniSeq.Training;

/// <summary>A predicted peak, by category.</summary>
public sealed record MemoryPrediction(string PolicyName, MemoryPolicy Policy, long Parameters, long Gradients, long OptimizerState, long Activations, long Scratch, long RuntimeOverhead, long Disk = 0)
{
    /// <summary>Predicted peak of all tracked memory categories (they are all alive during backward; disk is not memory).</summary>
    public long TrackedTotal => Parameters + Gradients + OptimizerState + Activations + Scratch;

    /// <summary>Predicted process peak resident set.</summary>
    public long ProcessPeak => TrackedTotal + RuntimeOverhead;

    /// <summary>Peak bytes of one category.</summary>
    public long Of(MemoryCategory category) => category switch
    {
        MemoryCategory.Parameters => Parameters,
        MemoryCategory.Gradients => Gradients,
        MemoryCategory.OptimizerState => OptimizerState,
        MemoryCategory.Activations => Activations,
        MemoryCategory.Scratch => Scratch,
        MemoryCategory.Disk => Disk,
        _ => throw new ArgumentOutOfRangeException(nameof(category)),
    };
}

/// <summary>Memory predictions for training runs.</summary>
public static class MemoryPlanner
{
    /// <summary>Per-thread kernel tile buffers not in the ledger: GEMM A panels, attention tiles, norm partials.</summary>
    public const long KernelScratchPerThread = 1L << 20;

    /// <summary>
    /// The GEMM's packed op(B) buffer (on the calling thread, not in the ledger) for the largest GEMM of a pass:
    /// ⌈n/32⌉·32 × min(k, KSuper) floats over every (n, k) the pass multiplies with.
    /// </summary>
    public static long GemmPackBytes(LlamaConfig config, PassPlan plan)
    {
        int c = config.HiddenSize, f = config.IntermediateSize, v = config.VocabSize, hd = config.QueryDim, kvd = config.KeyValueDim;
        long rows = plan.Rows;
        (long N, long K)[] shapes =
        [
            (hd, c), (kvd, c), (c, hd), (f, c), (c, f), (v, c),                 // forward x·Wᵀ
            (c, plan.ProjectionRows), (hd, plan.SequenceChunkRows > 0 ? plan.SequenceChunkRows : rows), (c, plan.MlpChunkRows), (f, plan.MlpChunkRows), (c, plan.LmHeadChunkRows), // dW
            (c, f), (f, c), (hd, c), (c, hd), (c, kvd), (c, v),                 // dX = dY·W
        ];
        long worst = shapes.Max(s => ((s.N + 31) / 32 * 32 * Math.Min(s.K, Kernels.MatMul.KSuper)) + (((s.N + 31) / 32) * 16));
        return worst * sizeof(float);
    }

    /// <summary>The named policies the planner compares, fastest first (order measured by `miniseq bench memory`).</summary>
    public static IReadOnlyList<(string Name, Func<LlamaConfig, long, MemoryPolicy> Make)> StandardPolicies => MemoryPolicy.Standard;

    /// <summary>What the runtime adds once training runs (JIT-compiled kernels, worker stacks, GC heap growth), measured.</summary>
    public const long RuntimeGrowth = 6L << 20;

    /// <summary>What an MPI rank holds beyond one process's runtime footprint (Open MPI 4.1, Debian 12, 2 ranks: RSS beyond
    /// the tracked bytes 83.2–83.7 MiB per rank against 50.3 MiB in one process, measured 2026-12-03), added by plans
    /// made outside mpirun for several ranks; a rank under mpirun measures its own footprint, MPI's included.</summary>
    public const long MpiRankOverhead = 34L << 20;

    /// <summary>The runtime's own resident footprint to add to tracked bytes: the current RSS minus tracked bytes now.</summary>
    public static long MeasureRuntimeOverhead(MemoryLedger? ledger = null, int? threads = null)
    {
        long rss = ProcessMemory.CurrentRssBytes();
        long tracked = (ledger ?? MemoryLedger.Shared).CurrentTotal;
        return Math.Max(0, rss - tracked) + RuntimeGrowth + (KernelScratchPerThread * (threads ?? Threading.KernelThreads.ThreadCount));
    }

    /// <summary>Predicts the peak of one optimizer step with micro-batches of <paramref name="microBatchRows"/> × <paramref name="seqLen"/>
    /// of a run shaped by <paramref name="setup"/> (LoRA, a bf16 frozen base, ZeRO-1 shards, mixed precision, Ulysses
    /// ranks; default: a plain fp32 run in one process). Under Ulysses the figures are one rank's, which holds
    /// ⌈<paramref name="seqLen"/>/P⌉ positions of every row (the last rank's shard, padded when P does not divide N).</summary>
    public static MemoryPrediction Predict(LlamaConfig config, int microBatchRows, int seqLen, MemoryPolicy policy, OptimizerOptions optimizer, long runtimeOverhead, string? name = null, TrainingSetup? setup = null)
    {
        setup ??= TrainingSetup.Default;
        LoraConfig? lora = setup.Lora;
        var layout = new ParameterLayout(config, bf16Projections: setup.Bf16Base && lora is not null);
        long baseBytes = layout.Plan.TotalBytes;
        long trainable = lora is null ? baseBytes : new LoraLayout(layout, lora).Plan.TotalBytes;
        int ranks = setup.SequenceParallel, local = setup.LocalSeqLen(seqLen);
        var plan = new PassPlan(config, microBatchRows, local, policy, lora: lora, precision: setup.Precision,
            positions: ranks > 1 ? new Kernels.TokenPositions { Offset = (ranks - 1) * local } : null, sequenceParallel: ranks);
        long parameters = baseBytes + (lora is null ? 0 : trainable) + plan.ComputeWeights.TotalBytes; // + bf16 compute copies
        long rope = (long)plan.RopeRows * config.HeadDim * sizeof(float);
        policy = plan.Policy; // with --precision bf16 a recomputing policy stores bf16 layer inputs
        return new MemoryPrediction(name ?? policy.Describe(), policy, parameters, trainable, Optimizer.StateBytes(config, optimizer, lora, setup.ZeroShards),
            plan.Activations.TotalBytes + plan.LayerInputResidentBytes, plan.Scratch.TotalBytes + plan.LayerInputStagingBytes + rope, runtimeOverhead + GemmPackBytes(config, plan),
            plan.LayerInputDiskBytes);
    }

    /// <summary>Predictions for every standard policy the setup can run (bf16 mixed precision cannot keep attention
    /// outputs: its recompute starts from bf16-rounded layer inputs).</summary>
    public static IReadOnlyList<MemoryPrediction> PredictAll(LlamaConfig config, int microBatchRows, int seqLen, OptimizerOptions optimizer, long runtimeOverhead, TrainingSetup? setup = null)
        => [.. Policies(config, microBatchRows, seqLen)
            .Where(p => !(p.Policy.KeepAttention && (setup ?? TrainingSetup.Default).Precision == Precision.BFloat16))
            .Select(p => Predict(config, microBatchRows, seqLen, p.Policy, optimizer, runtimeOverhead, p.Name, setup))];

    // The standard policies for rows × seqLen tokens (made from the whole rows' token count, as train makes them).
    private static IEnumerable<(string Name, MemoryPolicy Policy)> Policies(LlamaConfig config, int microBatchRows, int seqLen)
        => StandardPolicies.Select(p => (p.Name, Policy: p.Make(config, (long)microBatchRows * seqLen)));

    /// <summary>The fastest standard policy whose predicted process peak fits <paramref name="budgetBytes"/>, or null.</summary>
    public static MemoryPrediction? Choose(IReadOnlyList<MemoryPrediction> predictions, long budgetBytes)
        => predictions.FirstOrDefault(p => p.ProcessPeak <= budgetBytes);

    /// <summary>The largest sequence length (multiple of <paramref name="step"/>) whose predicted peak fits, for one policy.</summary>
    public static int LargestFittingSeqLen(LlamaConfig config, int microBatchRows, string policyName, OptimizerOptions optimizer, long runtimeOverhead, long budgetBytes, int step = 256, TrainingSetup? setup = null)
    {
        var make = StandardPolicies.First(p => p.Name == policyName).Make;
        int lo = 0, hi = step;
        bool Fits(int t) => Predict(config, microBatchRows, t, make(config, (long)microBatchRows * t), optimizer, runtimeOverhead, setup: setup).ProcessPeak <= budgetBytes;
        while (hi < (1 << 24) && Fits(hi))
        {
            lo = hi;
            hi *= 2;
        }

        while (hi - lo > step)
        {
            int mid = (lo + hi) / 2 / step * step;
            if (mid <= lo)
            {
                break;
            }

            if (Fits(mid))
            {
                lo = mid;
            }
            else
            {
                hi = mid;
            }
        }

        return lo;
    }
}

/// <summary>Thrown before allocation when a run's predicted peak exceeds the memory budget.</summary>
public sealed class MemoryBudgetException(string message) : Exception(message);

/// <summary>
/// What shapes a run's memory beyond the model, the batch and the policy: LoRA adapters (and a bf16 frozen base), ZeRO-1
/// shards of the optimizer state, mixed precision, Ulysses sequence-parallel ranks. The default is a plain fp32 full
/// fine-tune in one process.
/// </summary>
public sealed record TrainingSetup
{
    /// <summary>A plain fp32 run in one process.</summary>
    public static TrainingSetup Default { get; } = new();

    /// <summary>LoRA adapters (gradients and optimizer state for them only), or null.</summary>
    public LoraConfig? Lora { get; init; }

    /// <summary>With <see cref="Lora"/>: the frozen base holds its projection weights as bf16.</summary>
    public bool Bf16Base { get; init; }

    /// <summary>ZeRO-1 over this many ranks: each holds 1/P of the optimizer state (1: no sharding).</summary>
    public int ZeroShards { get; init; } = 1;

    /// <summary>fp32, or bf16 mixed precision (bf16 compute copies of the weights, bf16 saved activations).</summary>
    public Precision Precision { get; init; } = Precision.Float32;

    /// <summary>Ulysses ranks P (1: none); each holds ⌈N/P⌉ positions of every row.</summary>
    public int SequenceParallel { get; init; } = 1;

    /// <summary>The positions of every row one rank holds for a sequence of <paramref name="seqLen"/>.</summary>
    public int LocalSeqLen(int seqLen) => SequenceParallel == 1 ? seqLen : Distributed.SequenceShardSource.ShardLength(seqLen, SequenceParallel);
}

