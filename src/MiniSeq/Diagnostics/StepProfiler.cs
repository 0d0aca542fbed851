// Opt-in wall-clock accounting of a training step by op family, for the "where does the time go" report of
// `miniseq bench step --profile`. Disabled, a scope costs one static bool read.
using System.Diagnostics;

namespace MiniSeq.Diagnostics;

/// <summary>Op families the profiler accounts time to.</summary>
public enum ProfiledOp
{
    /// <summary>Q/K/V/O projection GEMMs (forward and backward).</summary>
    AttentionProjections,

    /// <summary>Flash attention forward (including the recompute under checkpointing).</summary>
    AttentionForward,

    /// <summary>Flash attention backward.</summary>
    AttentionBackward,

    /// <summary>MLP GEMMs (gate, up, down; forward, recompute and backward).</summary>
    MlpGemms,

    /// <summary>SwiGLU forward/backward.</summary>
    SwiGlu,

    /// <summary>LM-head GEMMs.</summary>
    LmHeadGemms,

    /// <summary>Softmax cross-entropy.</summary>
    CrossEntropy,

    /// <summary>RMSNorm forward/backward.</summary>
    Norms,

    /// <summary>RoPE forward/backward.</summary>
    Rope,

    /// <summary>Embedding, copies, clears.</summary>
    Other,

    /// <summary>Gradient norm, clipping and the optimizer update.</summary>
    Optimizer,
}

/// <summary>Accumulates elapsed time per <see cref="ProfiledOp"/> when <see cref="Enabled"/>.</summary>
public static class StepProfiler
{
    private static readonly long[] s_ticks = new long[Enum.GetValues<ProfiledOp>().Length];

    /// <summary>Whether scopes record time.</summary>
    public static bool Enabled { get; set; }

    /// <summary>Starts a scope (dispose to stop).</summary>
    public static Scope Measure(ProfiledOp op) => new(op, Enabled ? Stopwatch.GetTimestamp() : 0);

    /// <summary>Seconds recorded per op since the last <see cref="Reset"/>.</summary>
    public static IReadOnlyDictionary<ProfiledOp, double> Seconds()
        => Enum.GetValues<ProfiledOp>().ToDictionary(op => op, op => (double)Interlocked.Read(ref s_ticks[(int)op]) / Stopwatch.Frequency);

    /// <summary>Clears the counters.</summary>
    public static void Reset() => Array.Clear(s_ticks);

    /// <summary>A running measurement.</summary>
    public readonly struct Scope(ProfiledOp op, long start) : IDisposable
    {
        /// <summary>Stops the measurement.</summary>
        public void Dispose()
        {
            if (start != 0)
            {
                Interlocked.Add(ref s_ticks[(int)op], Stopwatch.GetTimestamp() - start);
            }
        }
    }
}
