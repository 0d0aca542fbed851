// Live progress: a Spectre.Console progress bar on a terminal, periodic plain lines otherwise (CI, pipes).
using Spectre.Console;

namespace MiniSeq.Cli.Commands;

internal static class Progress
{
    /// <summary>Longest wall time between two plain progress lines.</summary>
    public static readonly TimeSpan LineInterval = TimeSpan.FromSeconds(1.5);

    /// <summary>Runs <paramref name="step"/>(1..steps); each call returns a status line, or null to stop early.</summary>
    public static void Run(int steps, Func<int, string?> step)
    {
        if (AnsiConsole.Profile.Capabilities.Interactive && !Console.IsOutputRedirected)
        {
            AnsiConsole.Progress()
                .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn())
                .Start(ctx =>
                {
                    ProgressTask task = ctx.AddTask("starting", maxValue: steps);
                    for (int s = 1; s <= steps; s++)
                    {
                        string? line = step(s);
                        if (line is null)
                        {
                            task.Value = task.MaxValue;
                            break;
                        }

                        task.Description = Markup.Escape(line);
                        task.Increment(1);
                    }
                });
            return;
        }

        // Plain lines: the first step, then at least one line every LineInterval of wall time, and the last step.
        long last = System.Diagnostics.Stopwatch.GetTimestamp();
        string? previous = null;
        for (int s = 1; s <= steps; s++)
        {
            string? line = step(s);
            if (line is null)
            {
                if (previous is not null && s > 1)
                {
                    Console.WriteLine(previous);
                }

                return;
            }

            previous = line;
            if (s == 1 || s == steps || System.Diagnostics.Stopwatch.GetElapsedTime(last) >= LineInterval)
            {
                Console.WriteLine(line);
                previous = null;
                last = System.Diagnostics.Stopwatch.GetTimestamp();
            }
        }
    }

    /// <summary>The progress line of one step: step, loss, tokens/s, memory, and the time left.</summary>
    public static string Line(Training.StepResult r, int steps, System.Diagnostics.Stopwatch clock, double? timeLimit, long trackedPeak)
    {
        double elapsed = clock.Elapsed.TotalSeconds;
        double left = (steps - r.Step) * elapsed / Math.Max(1, r.Step);
        if (timeLimit is double limit)
        {
            left = Math.Min(left, Math.Max(0, limit - elapsed));
        }

        var eta = TimeSpan.FromSeconds(Math.Ceiling(left));
        return FormattableString.Invariant(
            $"step {r.Step}/{steps}  loss {r.Loss:F4}  {r.TokensPerSecond:F0} tok/s  mem {Tensors.ByteSize.Format(trackedPeak)} tracked, {Tensors.ByteSize.Format(Tensors.ProcessMemory.CurrentRssBytes())} RSS  ETA {(int)eta.TotalMinutes}:{eta.Seconds:00}");
    }

    /// <summary>
    /// The number of steps a time-limited run will reach: <paramref name="steps"/>, or fewer if the <paramref name="done"/>
    /// steps so far, at their average pace, say that the rest does not fit in <paramref name="limitSeconds"/>.
    /// </summary>
    public static int StepsWithin(int steps, int done, double elapsedSeconds, double limitSeconds)
    {
        if (done < 5 || elapsedSeconds <= 0)
        {
            return steps;
        }

        double projected = done + ((limitSeconds - elapsedSeconds) * done / elapsedSeconds);
        return (int)Math.Clamp(Math.Floor(projected), done + 1, steps);
    }
}
