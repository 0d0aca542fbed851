// The built-in demo's pieces that are not plain training: the held-out recall accuracy, what vanilla would have
// needed, and the demo rows of the summary. Its data is the library's RecallDemoSource.
using System.Globalization;
using MiniSeq.IO;
using MiniSeq.Model;
using MiniSeq.Tensors;
using MiniSeq.Training;
using MiniSeq.Training.Data;
using Spectre.Console;

namespace MiniSeq.Cli.Commands;

internal static class DemoSummary
{
    /// <summary>The demo's default memory budget: below what vanilla needs, so the planner must pick MsT or checkpointing.</summary>
    public const string DefaultBudget = "100MiB";

    /// <summary>The demo's default number of optimizer steps (cosine schedule to the last one).</summary>
    public const int DefaultSteps = 480;

    /// <summary>Held-out sequences scored at the end.</summary>
    public const int HeldOutRows = 8;

    /// <summary>Seed offset of the held-out sequences (a different stream from the training data).</summary>
    public const ulong HeldOutSeedOffset = 1_000_003;

    /// <summary>
    /// Fraction of the scored positions (the queries) of <see cref="HeldOutRows"/> held-out sequences whose arg-max
    /// prediction over the whole vocabulary is the right value.
    /// </summary>
    public static (double Accuracy, int Queries) RecallAccuracy(LlamaModel model, AssociativeRecall task, DeterministicRandom rng)
    {
        TokenBatch test = RecallDemoSource.Draw(task, rng, HeldOutRows);
        int[] rows = Enumerable.Range(0, test.TokenCount).Where(t => test.Labels[t] != Kernels.CrossEntropy.IgnoreIndex).ToArray();
        int v = model.Config.VocabSize;
        int correct = 0;

        // One sequence per pass, so that evaluation stays small next to training.
        const int RowsPerPass = 1;
        using var pass = new LlamaPass(model, new PassPlan(model.Config, RowsPerPass, test.SeqLen, MemoryPolicy.Vanilla, training: false));
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
    public static long PredictVanillaPeak(LlamaConfig config, int microRows, int seqLen, OptimizerOptions optimizer, long runtimeOverhead)
        => MemoryPlanner.Predict(config, microRows, seqLen, MemoryPolicy.Vanilla, optimizer, runtimeOverhead).ProcessPeak;

    /// <summary>The demo rows of the summary table: accuracy against chance, and the memory the policy saved.</summary>
    public static void AddRows(Table table, AssociativeRecall task, (double Accuracy, int Queries) recall, string policy, string? budget, long policyPeak, long vanillaPeak, long measuredPeakRss)
    {
        table.AddRow("recall accuracy (held-out)", Markup.Escape(FormattableString.Invariant($"{recall.Accuracy:P1} of {recall.Queries:N0} queries in {HeldOutRows} sequences")));
        table.AddRow("chance", Markup.Escape(task.ChanceDescription));
        table.AddRow("memory policy", Markup.Escape(budget is null ? policy : $"{policy} (chosen by the planner for --budget {budget})"));
        table.AddRow("process peak RSS vs vanilla", Markup.Escape(string.Create(CultureInfo.InvariantCulture,
            $"{ByteSize.Format(measuredPeakRss)} measured ({ByteSize.Format(policyPeak)} predicted for {policy}); vanilla would need {ByteSize.Format(vanillaPeak)} (predicted)")));
    }
}
