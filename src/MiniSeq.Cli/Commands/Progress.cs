// Live progress: a Spectre.Console progress bar on a terminal, periodic plain lines otherwise (CI, pipes).
using Spectre.Console;

namespace MiniSeq.Cli.Commands;

internal static class Progress
{
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

        int every = Math.Max(1, steps / 20);
        for (int s = 1; s <= steps; s++)
        {
            string? line = step(s);
            if (line is null)
            {
                return;
            }

            if (s == 1 || s % every == 0 || s == steps)
            {
                Console.WriteLine(line);
            }
        }
    }
}
