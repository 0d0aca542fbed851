// Shared CLI plumbing: parse-error and exception handling, option helpers.
using System.CommandLine;
using MiniSeq.Training;

namespace MiniSeq.Cli.Commands;

/// <summary>Options used by several commands.</summary>
internal static class CommonOptions
{
    public static readonly Option<bool> Verbose = new("--verbose") { Description = "Print stack traces of errors", Recursive = true };
}

/// <summary>Runs the parsed command line with one-line error reporting.</summary>
internal static class Cli
{
    public static int Run(RootCommand root, string[] args)
    {
        ParseResult parse = root.Parse(args);
        bool verbose = args.Contains("--verbose");
        if (parse.Errors.Count > 0)
        {
            Command command = parse.CommandResult.Command;
            string path = command == root ? "" : string.Join(" ", CommandPath(parse.CommandResult)) + " ";
            Console.Error.WriteLine($"miniseq: {ParseErrorLine(parse, command)} (see `miniseq {path}--help`)");
            return 2;
        }

        try
        {
            var config = new InvocationConfiguration { EnableDefaultExceptionHandler = false };
            return parse.Invoke(config);
        }
        catch (Exception e)
        {
            // Under MPI, MpiSession.Fail also ends the job, so that no rank waits for this one forever.
            int code = e is TrainingDivergedException && !verbose ? 3 : 1;
            return MpiSession.Fail(Describe(e), verbose ? e.ToString() : null, EveryRankMeets(e), code);
        }
    }

    /// <summary>Whether every rank of a data-parallel job meets this error alike (it follows from the options, the
    /// files, or the identical weights and gradients), so that rank 0 alone need report it.</summary>
    private static bool EveryRankMeets(Exception e)
        => Unwrap(e) is FileNotFoundException or DirectoryNotFoundException or InvalidDataException or MemoryBudgetException or ArgumentException
            or FormatException or TrainingDivergedException or IOException or Distributed.MpiException;

    private static Exception Unwrap(Exception e)
    {
        Exception inner = e;
        while (inner is System.Reflection.TargetInvocationException or AggregateException or TypeInitializationException && inner.InnerException is not null)
        {
            inner = inner.InnerException;
        }

        return inner;
    }

    // "Required command was not provided" and "Unrecognized command or argument" say little to a user who typed a
    // wrong command name: name the command and list the valid ones instead.
    private static string ParseErrorLine(ParseResult parse, Command command)
    {
        string[] subcommands = command.Subcommands.Select(c => c.Name).ToArray();
        if (subcommands.Length > 0)
        {
            string valid = string.Join(", ", subcommands);
            string? unknown = parse.UnmatchedTokens.FirstOrDefault(t => !t.StartsWith('-'));
            if (unknown is not null)
            {
                return $"unknown command '{unknown}' (commands: {valid})";
            }

            if (parse.UnmatchedTokens.Count == 0 && !parse.Errors.Any(e => e.Message.Contains("--", StringComparison.Ordinal)))
            {
                return $"no command given (commands: {valid})";
            }
        }

        return parse.Errors[0].Message;
    }

    private static IEnumerable<string> CommandPath(System.CommandLine.Parsing.CommandResult? result)
    {
        var names = new Stack<string>();
        for (System.CommandLine.Parsing.SymbolResult? r = result; r is System.CommandLine.Parsing.CommandResult c && c.Parent is not null; r = r.Parent)
        {
            names.Push(c.Command.Name);
        }

        return names;
    }

    /// <summary>Whether <paramref name="option"/> was given on the command line (not just filled by its default).</summary>
    public static bool IsGiven(this ParseResult parse, Option option) => parse.GetResult(option) is { Implicit: false };

    private static string Describe(Exception e)
    {
        Exception inner = Unwrap(e);
        string message = inner.Message.ReplaceLineEndings(" ");
        return inner switch
        {
            FileNotFoundException or DirectoryNotFoundException or InvalidDataException or MemoryBudgetException or ArgumentException or FormatException or TrainingDivergedException or IOException or InvalidOperationException => message,
            OutOfMemoryException => "out of memory: " + message,

            // Never a .NET type name without --verbose (which prints the whole exception below this line).
            _ => $"unexpected error: {message} (--verbose shows the details)",
        };
    }
}
