// The built-in demo's pieces that are not plain training: its batches, the held-out recall accuracy, what vanilla
// would have needed, the progress line (step, loss, tokens/s, memory, ETA) and the demo rows of the summary.
using System.Globalization;
using MiniSeq.IO;
using MiniSeq.Model;
using MiniSeq.Tensors;
using MiniSeq.Training;
using Spectre.Console;

namespace MiniSeq.Cli.Commands;

internal static class DemoSummary
{
    /// <summary>The demo's default memory budget: below what vanilla needs, so the planner must pick MsT or checkpointing.</summary>
    public const string DefaultBudget = "72MiB";

    /// <summary>The demo's default number of optimizer steps (cosine schedule to the last one).</summary>
    public const int DefaultSteps = 480;

    /// <summary>Held-out sequences scored at the end.</summary>
    public const int HeldOutRows = 8;

    /// <summary>Seed offset of the held-out sequences (a different stream from the training data).</summary>
    public const ulong HeldOutSeedOffset = 1_000_003;

    /// <summary>A fresh batch of <paramref name="rows"/> sequences of the task.</summary>
    public static TokenBatch NextBatch(AssociativeRecall task, DeterministicRandom rng, int rows)
    {
        var ids = new int[rows * task.SeqLen];
        var labels = new int[rows * task.SeqLen];
        task.Generate(rng, rows, ids, labels);
        return new TokenBatch(rows, task.SeqLen, ids, labels);
    }

    /// <summary>Overwrites <paramref name="batch"/> with fresh sequences (no allocation per step).</summary>
    public static void Refill(AssociativeRecall task, DeterministicRandom rng, TokenBatch batch)
        => task.Generate(rng, batch.BatchSize, batch.InputIds, batch.Labels);

    /// <summary>
    /// Fraction of the scored positions (the queries) of <see cref="HeldOutRows"/> held-out sequences whose arg-max
    /// prediction over the whole vocabulary is the right value.
    /// </summary>
    public static (double Accuracy, int Queries) RecallAccuracy(LlamaModel model, AssociativeRecall task, DeterministicRandom rng)
    {
        TokenBatch test = NextBatch(task, rng, HeldOutRows);
        int[] rows = Enumerable.Range(0, test.TokenCount).Where(t => test.Labels[t] != Kernels.CrossEntropy.IgnoreIndex).ToArray();
        int v = model.Config.VocabSize;
        int correct = 0;

        // One sequence per pass, so that evaluation stays small next to training.
        const int RowsPerPass = 1;
        using var pass = new LlamaPass(model, new StepPlan(model.Config, RowsPerPass, test.SeqLen, TrainingPolicy.Vanilla, training: false));
        for (int r = 0; r < test.BatchSize; r += RowsPerPass)
        {
            int lo = r * test.SeqLen, hi = (r + RowsPerPass) * test.SeqLen;
            int[] local = rows.Where(t => t >= lo && t < hi).Select(t => t - lo).ToArray();
            var logits = new float[local.Length * v];
            pass.ForwardLogits(test.InputIds.AsSpan(lo, hi - lo).ToArray(), local, logits);
            for (int i = 0; i < local.Length; i++)
            {
                ReadOnlySpan<float> row = logits.AsSpan(i * v, v);
                int best = 0;
                for (int j = 1; j < row.Length; j++)
                {
                    if (row[j] > row[best])
                    {
                        best = j;
                    }
                }

                correct += best == test.Labels[lo + local[i]] ? 1 : 0;
            }
        }

        return ((double)correct / Math.Max(1, rows.Length), rows.Length);
    }

    /// <summary>The planner's predicted process peak of the same run under the vanilla policy (no MsT, no checkpointing).</summary>
    public static long PredictVanillaPeak(LlamaConfig config, int microRows, int seqLen, OptimizerOptions optimizer)
        => MemoryPlanner.Predict(config, microRows, seqLen, TrainingPolicy.Vanilla, optimizer, MemoryPlanner.MeasureRuntimeOverhead()).ProcessPeak;

    /// <summary>The demo rows of the summary table: accuracy against chance, and the memory the policy saved.</summary>
    public static void AddRows(Table table, AssociativeRecall task, (double Accuracy, int Queries) recall, string policy, string? budget, long vanillaPeak, long measuredPeakRss)
    {
        table.AddRow("recall accuracy (held-out)", Markup.Escape(FormattableString.Invariant($"{recall.Accuracy:P1} of {recall.Queries:N0} queries in {HeldOutRows} sequences")));
        table.AddRow("chance", Markup.Escape(task.ChanceDescription));
        table.AddRow("memory policy", Markup.Escape(budget is null ? policy : $"{policy} (chosen by the planner for --budget {budget})"));
        table.AddRow("process peak RSS vs vanilla", Markup.Escape(string.Create(CultureInfo.InvariantCulture,
            $"{ByteSize.Format(measuredPeakRss)} measured; vanilla would need {ByteSize.Format(vanillaPeak)} (predicted)")));
    }
}
