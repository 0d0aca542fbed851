// `miniseq mpi-check`: is MPI usable from MiniSeq here? Loads and starts Open MPI (under mpirun: the job's ranks;
// without: a job of one), runs every collective of the communicator on small exact values (CommunicatorSelfTest) and
// says what it found, on one line from rank 0; a rank that got a wrong result names it. Not a benchmark.
using System.CommandLine;
using MiniSeq.Distributed;
using Spectre.Console;

namespace MiniSeq.Cli.Commands;

internal static class MpiCheckCommand
{
    public static Command Create()
    {
        var command = new Command("mpi-check", "Check MPI: load Open MPI, run every collective over the ranks (mpirun -np P dotnet miniseq.dll mpi-check)");
        command.SetAction(p => MpiSession.Run(requested: true, threadsGiven: false, world =>
        {
            var mpi = (MpiCommunicator)world;
            IReadOnlyList<string> failures = CommunicatorSelfTest.Run(world);
            Span<int> failed = [failures.Count > 0 ? 1 : 0];
            world.AllReduce(failed);
            if (failures.Count > 0)
            {
                throw new InvalidOperationException($"{failures[0]}{(failures.Count > 1 ? $" (and {failures.Count - 1} more)" : "")}");
            }

            if (failed[0] > 0)
            {
                // Another rank failed and reports it; this one must not report success.
                throw new InvalidOperationException($"{failed[0]} of {world.Size} ranks got wrong results.");
            }

            AnsiConsole.MarkupLine(Markup.Escape($"mpi-check: {mpi.Implementation} ({mpi.LibraryPath}), {world.Size} rank{(world.Size == 1 ? "" : "s")}: {string.Join(", ", CommunicatorSelfTest.Checks)} — ok"));
            return 0;
        }));
        return command;
    }
}
