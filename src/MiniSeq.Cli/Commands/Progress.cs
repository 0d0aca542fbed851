// Live progress: a Spectre.Console progress bar on a terminal, plain lines otherwise (CI, pipes) — the first, then at
// least one every LineInterval of wall time, and the last.
using Spectre.Console;

namespace MiniSeq.Cli.Commands;

internal static class Progress
{
    /// <summary>Longest wall time between two plain progress lines.</summary>
    public static readonly TimeSpan LineInterval = TimeSpan.FromSeconds(1.5);

    /// <summary>Shortest wall time between two plain lines from inside a step (a long step's layers), so that a log
    /// shows a step of minutes moving without a line per layer.</summary>
    public static readonly TimeSpan WithinStepInterval = TimeSpan.FromSeconds(10);

    /// <summary>Runs <paramref name="work"/>, which reports one status line per step (and, optionally, where a step
    /// is) through the reporter it is given.</summary>
    public static void Run(int steps, Action<Reporter> work)
    {
        if (AnsiConsole.Profile.Capabilities.Interactive && !Console.IsOutputRedirected)
        {
            AnsiConsole.Progress()
                .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn())
                .Start(ctx =>
                {
                    ProgressTask task = ctx.AddTask("starting", maxValue: steps);
                    string last = "starting";
                    work(new Reporter(
                        line =>
                        {
                            last = line;
                            task.Description = Markup.Escape(line);
                            task.Increment(1);
                        },
                        status => task.Description = Markup.Escape(last + "  ·  " + status)));
                    task.Value = task.MaxValue;
                });
            return;
        }

        long lastPrinted = System.Diagnostics.Stopwatch.GetTimestamp();
        string? pending = null;
        bool first = true;
        work(new Reporter(
            line =>
            {
                if (first || System.Diagnostics.Stopwatch.GetElapsedTime(lastPrinted) >= LineInterval)
                {
                    Console.WriteLine(line);
                    pending = null;
                    first = false;
                    lastPrinted = System.Diagnostics.Stopwatch.GetTimestamp();
                }
                else
                {
                    pending = line;
                }
            },
            status =>
            {
                if (System.Diagnostics.Stopwatch.GetElapsedTime(lastPrinted) >= WithinStepInterval)
                {
                    Console.WriteLine(status);
                    lastPrinted = System.Diagnostics.Stopwatch.GetTimestamp();
                }
            }));
        if (pending is not null)
        {
            Console.WriteLine(pending);
        }
    }

    /// <summary>Where a running step is: "step 3/100 running 1:42: backward 12/24".</summary>
    public static string WithinStep(int step, int steps, Model.StepProgress progress, TimeSpan intoStep)
        => FormattableString.Invariant($"step {step}/{steps} running {MinutesSeconds(intoStep)}: {progress}");

    /// <summary>A wall time as "m:ss" (minutes not wrapped at an hour).</summary>
    public static string MinutesSeconds(TimeSpan t) => FormattableString.Invariant($"{(int)t.TotalMinutes}:{t.Seconds:00}");

    /// <summary>
    /// Progress of long work outside the step loop (an evaluation, a prompt's prefill): <paramref name="line"/> gets the
    /// report and the time since this was called, at most every <see cref="WithinStepInterval"/> and never within the
    /// first one, so work shorter than that prints nothing.
    /// </summary>
    public static Action<T> Throttled<T>(Action<T, TimeSpan> line)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        TimeSpan lastLine = TimeSpan.Zero;
        return report =>
        {
            TimeSpan now = clock.Elapsed;
            if (now - lastLine < WithinStepInterval)
            {
                return;
            }

            lastLine = now;
            line(report, now);
        };
    }

    /// <summary>What the work reports: a finished step's line, or where the current step is.</summary>
    internal sealed class Reporter(Action<string> step, Action<string> within)
    {
        /// <summary>A step finished: its status line.</summary>
        public void Step(string line) => step(line);

        /// <summary>The current step moved (a layer finished): where it is.</summary>
        public void Within(string status) => within(status);
    }

    /// <summary>The progress line of one step: step, loss, tokens/s, memory, and the time left.</summary>
    /// <param name="r">The step just taken.</param>
    /// <param name="steps">Steps of the whole run.</param>
    /// <param name="clock">Started when this process began stepping.</param>
    /// <param name="timeLimit">Seconds this process may run, if limited.</param>
    /// <param name="trackedPeak">Peak bytes the ledger tracked.</param>
    /// <param name="firstStep">Steps already done when this process began (a resumed run), for the pace.</param>
    public static string Line(Training.StepResult r, int steps, System.Diagnostics.Stopwatch clock, double? timeLimit, long trackedPeak, int firstStep = 0)
    {
        double elapsed = clock.Elapsed.TotalSeconds;
        double left = (steps - r.Step) * elapsed / Math.Max(1, r.Step - firstStep);
        if (timeLimit is double limit)
        {
            left = Math.Min(left, Math.Max(0, limit - elapsed));
        }

        var eta = TimeSpan.FromSeconds(Math.Ceiling(left));
        return FormattableString.Invariant(
            $"step {r.Step}/{steps}  loss {r.Loss:F4}  {r.TokensPerSecond:F0} tok/s  mem {Tensors.ByteSize.Format(trackedPeak)} tracked, {Tensors.ByteSize.Format(Tensors.ProcessMemory.CurrentRssBytes())} RSS  ETA {MinutesSeconds(eta)}");
    }
}
