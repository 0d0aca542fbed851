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

    /// <summary>The runtime's own resident footprint to add to tracked bytes: the current RSS minus tracked bytes now.</summary>
    public static long MeasureRuntimeOverhead(MemoryLedger? ledger = null, int? threads = null)
    {
        long rss = ProcessMemory.CurrentRssBytes();
        long tracked = (ledger ?? MemoryLedger.Shared).CurrentTotal;
        return Math.Max(0, rss - tracked) + RuntimeGrowth + (KernelScratchPerThread * (threads ?? Threading.KernelThreads.ThreadCount));
    }

    /// <summary>Predicts the peak of one optimizer step with micro-batches of <paramref name="microBatchRows"/> × <paramref name="seqLen"/>
    /// (with <paramref name="lora"/>: a LoRA fine-tune, gradients and optimizer state for the adapters only; with
    /// <paramref name="bf16Base"/> its frozen base holds the projection weights as bf16; with
    /// <paramref name="zeroShards"/> P &gt; 1: one rank of a ZeRO-1 run, which holds 1/P of the optimizer state; with
    /// <paramref name="precision"/> bf16: the bf16 compute copies of the weights and bf16 checkpointed layer inputs).</summary>
    public static MemoryPrediction Predict(LlamaConfig config, int microBatchRows, int seqLen, MemoryPolicy policy, OptimizerOptions optimizer, long runtimeOverhead, string? name = null, LoraConfig? lora = null, bool bf16Base = false, int zeroShards = 1, Precision precision = Precision.Float32)
    {
        var layout = new ParameterLayout(config, bf16Projections: bf16Base && lora is not null);
        long baseBytes = layout.Plan.TotalBytes;
        long trainable = lora is null ? baseBytes : new LoraLayout(layout, lora).Plan.TotalBytes;
        var plan = new PassPlan(config, microBatchRows, seqLen, policy, lora: lora, precision: precision);
        long parameters = baseBytes + (lora is null ? 0 : trainable) + plan.ComputeWeights.TotalBytes; // + bf16 compute copies
        long rope = (long)plan.RopeRows * config.HeadDim * sizeof(float);
        policy = plan.Policy; // with --precision bf16 a recomputing policy stores bf16 layer inputs
        return new MemoryPrediction(name ?? policy.Describe(), policy, parameters, trainable, Optimizer.StateBytes(config, optimizer, lora, zeroShards),
            plan.Activations.TotalBytes + plan.LayerInputResidentBytes, plan.Scratch.TotalBytes + plan.LayerInputStagingBytes + rope, runtimeOverhead + GemmPackBytes(config, plan),
            plan.LayerInputDiskBytes);
    }

    /// <summary>Predictions for every standard policy.</summary>
    public static IReadOnlyList<MemoryPrediction> PredictAll(LlamaConfig config, int microBatchRows, int seqLen, OptimizerOptions optimizer, long runtimeOverhead, LoraConfig? lora = null, bool bf16Base = false, int zeroShards = 1, Precision precision = Precision.Float32)
        => StandardPolicies.Select(p => Predict(config, microBatchRows, seqLen, p.Make(config, (long)microBatchRows * seqLen), optimizer, runtimeOverhead, p.Name, lora, bf16Base, zeroShards, precision)).ToList();

    /// <summary>The fastest standard policy whose predicted process peak fits <paramref name="budgetBytes"/>, or null.</summary>
    public static MemoryPrediction? Choose(IReadOnlyList<MemoryPrediction> predictions, long budgetBytes)
        => predictions.FirstOrDefault(p => p.ProcessPeak <= budgetBytes);

    /// <summary>The largest sequence length (multiple of <paramref name="step"/>) whose predicted peak fits, for one policy.</summary>
    public static int LargestFittingSeqLen(LlamaConfig config, int microBatchRows, string policyName, OptimizerOptions optimizer, long runtimeOverhead, long budgetBytes, int step = 256, LoraConfig? lora = null, bool bf16Base = false, int zeroShards = 1, Precision precision = Precision.Float32)
    {
        var make = StandardPolicies.First(p => p.Name == policyName).Make;
        int lo = 0, hi = step;
        bool Fits(int t) => Predict(config, microBatchRows, t, make(config, (long)microBatchRows * t), optimizer, runtimeOverhead, lora: lora, bf16Base: bf16Base, zeroShards: zeroShards, precision: precision).ProcessPeak <= budgetBytes;
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
