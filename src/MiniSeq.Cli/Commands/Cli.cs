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
            string command = parse.CommandResult.Command.Name;
            Console.Error.WriteLine($"miniseq: {parse.Errors[0].Message} (see `miniseq {(command == root.Name ? "" : command + " ")}--help`)");
            return 2;
        }

        try
        {
            var config = new InvocationConfiguration { EnableDefaultExceptionHandler = false };
            return parse.Invoke(config);
        }
        catch (Exception e) when (!verbose)
        {
            Console.Error.WriteLine($"miniseq: {Describe(e)}");
            return e is TrainingDivergedException ? 3 : 1;
        }
        catch (Exception e)
        {
            Console.Error.WriteLine($"miniseq: {Describe(e)}");
            Console.Error.WriteLine(e);
            return 1;
        }
    }

    private static string Describe(Exception e)
    {
        Exception inner = e;
        while (inner is System.Reflection.TargetInvocationException or AggregateException && inner.InnerException is not null)
        {
            inner = inner.InnerException;
        }

        string message = inner.Message.ReplaceLineEndings(" ");
        return inner switch
        {
            FileNotFoundException or DirectoryNotFoundException or InvalidDataException or MiniSeq.Model.MemoryBudgetException or ArgumentException or FormatException or TrainingDivergedException or IOException => message,
            OutOfMemoryException => "out of memory: " + message,
            _ => $"{inner.GetType().Name}: {message}",
        };
    }
}
