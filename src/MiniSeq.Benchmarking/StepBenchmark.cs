// End-to-end training-step benchmark: real optimizer steps on random tokens for one (config, N, batch, policy),
// reporting tokens/s, measured peak bytes per category, the process peak RSS and the planner's prediction.
// Run one configuration per process when peak RSS matters (`miniseq bench memory` does).
using System.Diagnostics;
using MiniSeq.Diagnostics;
using MiniSeq.IO;
using MiniSeq.Model;
using MiniSeq.Tensors;
using MiniSeq.Training;

namespace MiniSeq.Benchmarks;

/// <summary>Result of <see cref="StepBenchmark.Run"/>.</summary>
public sealed record StepBenchmarkResult(
    string Mode,
    int SeqLen,
    int BatchSize,
    int Steps,
    double MedianStepSeconds,
    double TokensPerSecond,
    double FirstLoss,
    double LastLoss,
    long[] PeakBytes,
    long TrackedPeakBytes,
    long ProcessPeakRssBytes,
    long PredictedTrackedBytes,
    long PredictedProcessPeakBytes,
    Dictionary<string, double> ProfileSecondsPerStep,
    double[]? TimedStepSeconds = null,
    double[]? StepPeakGFlops = null)
{
    /// <summary>
    /// With <see cref="StepPeakGFlops"/> (a peak measured right before each timed step): the median over the timed
    /// steps of each step's model GFLOP/s ÷ its own peak (<see cref="CpuPeak.MedianShare"/>); else null.
    /// </summary>
    public double? PairedPeakShare(double modelFlopsPerStep) => StepPeakGFlops is { Length: > 0 } peaks && TimedStepSeconds is { } seconds
        ? CpuPeak.MedianShare(seconds.Select(t => modelFlopsPerStep / t / 1e9).ToList(), peaks)
        : null;
}

/// <summary>Times real training steps.</summary>
public static class StepBenchmark
{
    /// <summary>
    /// Model FLOPs of one training step (the MFU convention: no recomputation counted): 6 · P · tokens for the weight
    /// matrices (P excludes the input embedding, a lookup; the LM head counts once, tied or not) plus causal attention,
    /// 2·T²·D·H forward per layer and row (QKᵀ and P·V over the lower triangle) and 2.5× that backward.
    /// </summary>
    public static double ModelFlops(LlamaConfig config, int batchSize, int seqLen)
    {
        ArgumentNullException.ThrowIfNull(config);
        long embedding = (long)config.VocabSize * config.HiddenSize;
        long weights = new ParameterLayout(config).ParameterCount - (config.TieWordEmbeddings ? 0 : embedding);
        double tokens = (double)batchSize * seqLen;
        double attention = 3.5 * 2.0 * seqLen * (double)seqLen * config.HeadDim * config.NumAttentionHeads * config.NumHiddenLayers * batchSize;
        return (6.0 * weights * tokens) + attention;
    }

    /// <summary>Random tokens with next-token labels (-100 at each row's end), the batch every benchmark trains on.</summary>
    public static TokenBatch RandomBatch(LlamaConfig config, int rows, int seqLen, ulong seed)
    {
        var rng = new DeterministicRandom(seed);
        var ids = new int[rows * seqLen];
        for (int i = 0; i < ids.Length; i++)
        {
            ids[i] = rng.NextInt(config.VocabSize);
        }

        return TokenBatch.FromInputIds(rows, seqLen, ids);
    }

    /// <summary>
    /// Builds a model for <paramref name="config"/> (random init), a trainer with <paramref name="policy"/>, and runs
    /// <paramref name="steps"/> AdamW steps on random tokens (the first is a warm-up excluded from the median). With
    /// <paramref name="peakProbe"/> (GFLOP/s), the peak is measured again right before each timed step.
    /// </summary>
    public static StepBenchmarkResult Run(LlamaConfig config, int seqLen, int batchSize, string mode, MemoryPolicy policy, int steps, Action<string>? log = null, TrainingVariant? variant = null, Func<double>? peakProbe = null)
    {
        variant ??= TrainingVariant.Default;
        OptimizerOptions optimizer = variant.Optimizer;
        var ledger = new MemoryLedger();
        long overhead = MemoryPlanner.MeasureRuntimeOverhead(ledger);
        MemoryPrediction prediction = MemoryPlanner.Predict(config, batchSize, seqLen, policy, optimizer, overhead, mode, new TrainingSetup { Lora = variant.Lora, Bf16Base = variant.Bf16Base, Precision = variant.Precision });
        TokenBatch batch = RandomBatch(config, batchSize, seqLen, 12345);
        using var model = new LlamaModel(config, ledger, variant.Bf16Base);
        model.InitializeRandom(1);
        if (variant.Lora is { } lora)
        {
            model.AttachAdapters(lora).InitializePeft(1);
        }

        using var trainer = new Trainer(model, new TrainerOptions { Optimizer = optimizer, Policy = policy, Precision = variant.Precision, TotalSteps = steps }, batchSize, seqLen);
        var times = new List<double>();
        var losses = new List<double>();
        var peaks = new List<double>();
        StepProfiler.Enabled = true;
        for (int s = 0; s < steps; s++)
        {
            if (s == 1)
            {
                StepProfiler.Reset(); // profile the timed steps only
            }

            if (s >= 1 && peakProbe is not null)
            {
                peaks.Add(peakProbe());
            }

            long t0 = Stopwatch.GetTimestamp();
            TimeSpan lastLine = TimeSpan.Zero;
            int step = s + 1;
            trainer.Progress = log is null ? null : p =>
            {
                // A step at long N takes minutes: say where it is, at most every 10 s.
                TimeSpan now = Stopwatch.GetElapsedTime(t0);
                if (now - lastLine >= TimeSpan.FromSeconds(10))
                {
                    lastLine = now;
                    log(FormattableString.Invariant($"{mode} N={seqLen} step {step}/{steps} running {now.TotalSeconds:F0} s: {p}"));
                }
            };
            StepResult r = trainer.Step(batch);
            double seconds = Stopwatch.GetElapsedTime(t0).TotalSeconds;
            times.Add(seconds);
            losses.Add(r.Loss);
            log?.Invoke(FormattableString.Invariant($"{mode} N={seqLen} step {s + 1}/{steps}: {seconds:F2} s, loss {r.Loss:F4}"));
        }

        int profiled = Math.Max(1, steps - 1);
        var profile = StepProfiler.Seconds().ToDictionary(kv => kv.Key.ToString(), kv => kv.Value / profiled);
        StepProfiler.Enabled = false;
        MemoryReport mem = ledger.Snapshot();
        double[] timedSteps = times.Count > 1 ? times.Skip(1).ToArray() : times.ToArray();
        double median = timedSteps.Order().ElementAt(timedSteps.Length / 2);
        return new StepBenchmarkResult(mode, seqLen, batchSize, steps, median, batchSize * seqLen / median, losses[0], losses[^1],
            mem.PeakBytes, mem.PeakTotalBytes, mem.ProcessPeakRssBytes, prediction.TrackedTotal, prediction.ProcessPeak, profile,
            timedSteps, peaks.Count == 0 ? null : peaks.ToArray());
    }
}

/// <summary>Median step time of one policy in an interleaved comparison.</summary>
public sealed record PolicyTiming(string Mode, int SeqLen, double MedianStepSeconds, double TokensPerSecond, double RelativeToFirst);

/// <summary>
/// Times several policies on the same model in one process, alternating one step of each per round, so that clock
/// drift and noisy neighbours affect every policy alike (separate processes run minutes apart do not compare well).
/// </summary>
public static class PolicyComparison
{
    /// <summary>
    /// Times <paramref name="variants"/> (each on its own model: LoRA attaches adapters) under one policy, alternating one
    /// step of each per round; the first variant is the baseline.
    /// </summary>
    public static IReadOnlyList<PolicyTiming> RunVariants(LlamaConfig config, int seqLen, MemoryPolicy policy, IReadOnlyList<TrainingVariant> variants, int rounds, int warmup = 2, Action<string>? log = null)
    {
        ArgumentNullException.ThrowIfNull(variants);
        TokenBatch batch = StepBenchmark.RandomBatch(config, 1, seqLen, 777);
        var models = new List<LlamaModel>();
        var trainers = new List<Trainer>();
        try
        {
            foreach (TrainingVariant v in variants)
            {
                var model = new LlamaModel(config, bf16Projections: v.Bf16Base);
                models.Add(model);
                model.InitializeRandom(1);
                if (v.Lora is { } lora)
                {
                    model.AttachAdapters(lora).InitializePeft(1);
                }

                trainers.Add(new Trainer(model, new TrainerOptions { Policy = policy, Optimizer = v.Optimizer, Precision = v.Precision }, 1, seqLen));
            }

            return Time(trainers, variants.Select(v => v.Name).ToList(), batch, seqLen, rounds, warmup, log);
        }
        finally
        {
            trainers.ForEach(t => t.Dispose());
            models.ForEach(m => m.Dispose());
        }
    }

    private static List<PolicyTiming> Time(List<Trainer> trainers, List<string> names, TokenBatch batch, int seqLen, int rounds, int warmup, Action<string>? log)
    {
        var times = trainers.Select(_ => new List<double>()).ToList();
        for (int round = 0; round < warmup + rounds; round++)
        {
            for (int i = 0; i < trainers.Count; i++)
            {
                long t0 = Stopwatch.GetTimestamp();
                trainers[i].Step(batch);
                double seconds = Stopwatch.GetElapsedTime(t0).TotalSeconds;
                if (round >= warmup)
                {
                    times[i].Add(seconds);
                }
            }

            log?.Invoke(FormattableString.Invariant($"N={seqLen} round {round + 1}/{warmup + rounds}"));
        }

        double Median(List<double> x) => x.Order().ElementAt(x.Count / 2);
        double baseline = Median(times[0]);
        return names.Select((m, i) => new PolicyTiming(m, seqLen, Median(times[i]), seqLen / Median(times[i]), baseline / Median(times[i]))).ToList();
    }

    /// <summary>Runs <paramref name="warmup"/> untimed then <paramref name="rounds"/> timed rounds; the first mode is the baseline.</summary>
    public static IReadOnlyList<PolicyTiming> Run(LlamaConfig config, int seqLen, IReadOnlyList<(string Mode, MemoryPolicy Policy)> modes, int rounds, int warmup = 2, Action<string>? log = null)
    {
        TokenBatch batch = StepBenchmark.RandomBatch(config, 1, seqLen, 777);
        using var model = new LlamaModel(config);
        model.InitializeRandom(1);
        var trainers = modes.Select(m => new Trainer(model, new TrainerOptions { Policy = m.Policy, Optimizer = new OptimizerOptions { LearningRate = 1e-5f } }, 1, seqLen)).ToList();
        try
        {
            return Time(trainers, modes.Select(m => m.Mode).ToList(), batch, seqLen, rounds, warmup, log);
        }
        finally
        {
            foreach (Trainer t in trainers)
            {
                t.Dispose();
            }
        }
    }
}

