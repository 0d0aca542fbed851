// miniseq: the command-line front end. A thin layer over the MiniSeq library: parse options, call the library,
// print. Errors become one line on stderr and a non-zero exit code (the stack trace only with --verbose).
using System.CommandLine;
using MiniSeq.Cli.Commands;
using Spectre.Console;

if (Environment.GetEnvironmentVariable("OMPI_COMM_WORLD_SIZE") is not null)
{
    // mpirun hands each rank a pseudo-terminal and forwards it to wherever its own output goes (often a file): a
    // terminal type without keypad modes keeps .NET's console set-up from writing escape codes into that output.
    Environment.SetEnvironmentVariable("TERM", "dumb");
}

if (Console.IsOutputRedirected)
{
    // Logs and pipes: no colour codes, and tables wide enough to stay readable.
    AnsiConsole.Console = AnsiConsole.Create(new AnsiConsoleSettings
    {
        Ansi = AnsiSupport.No,
        ColorSystem = ColorSystemSupport.NoColors,
        Interactive = InteractionSupport.No,
        Out = new AnsiConsoleOutput(Console.Out),
    });
    AnsiConsole.Profile.Width = 180;
}

var root = new RootCommand("MiniSeq: train Llama-style models on long sequences with little memory (pure C#, CPU).");
root.Options.Add(CommonOptions.Verbose);
root.Subcommands.Add(TrainCommand.Create());
root.Subcommands.Add(InitCommand.Create());
root.Subcommands.Add(EvalCommand.Create());
root.Subcommands.Add(PlanCommand.Create());
root.Subcommands.Add(BenchCommand.Create());
root.Subcommands.Add(PlotCommand.Create());
root.Subcommands.Add(TokenizeCommand.Create());
root.Subcommands.Add(GenerateCommand.Create());
root.Subcommands.Add(MergeCommand.Create());
root.Subcommands.Add(MpiCheckCommand.Create());
return Cli.Run(root, args);
