// The CLI's side of a distributed run: MPI is started only under Open MPI's mpirun (OMPI_COMM_WORLD_SIZE is set) or
// when --distributed asks, so a plain `miniseq train` never loads an MPI library. Rank 0 alone speaks: the other ranks'
// console output goes nowhere. A failure ends the whole job (MPI_Abort) instead of leaving the other ranks waiting in a
// collective; an error every rank meets alike (bad options, data, divergence) is printed once, by rank 0.
using MiniSeq.Distributed;
using MiniSeq.Threading;
using Spectre.Console;

namespace MiniSeq.Cli.Commands;

internal static class MpiSession
{
    // How long a rank waits for rank 0 to print an error they share and abort the job, before printing its own and aborting.
    private static readonly TimeSpan s_quietRankGrace = TimeSpan.FromSeconds(10);

    private static TextWriter? s_error;

    /// <summary>The MPI communicator of this process, once started.</summary>
    public static MpiCommunicator? Current { get; private set; }

    /// <summary>This process's rank in the mpirun job (OMPI_COMM_WORLD_RANK), known before MPI starts; 0 otherwise.</summary>
    private static int LauncherRank
        => int.TryParse(Environment.GetEnvironmentVariable("OMPI_COMM_WORLD_RANK"), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int r) ? r : 0;

    /// <summary>
    /// Runs <paramref name="body"/> with MPI_COMM_WORLD if this process was started by mpirun or
    /// <paramref name="requested"/> is set, else with a single-process communicator (no MPI loaded). Kernel threads
    /// default to the cores divided among the ranks on this machine. MPI is finalised after a normal return; a failure
    /// is left to <see cref="Fail"/>.
    /// </summary>
    public static int Run(bool requested, bool threadsGiven, Func<ICommunicator, int> body)
    {
        if (!requested && !MpiCommunicator.LaunchedByMpirun)
        {
            using var single = new SingleProcessCommunicator();
            return body(single);
        }

        MpiCommunicator world = MpiCommunicator.InitializeWorld();
        Current = world;
        if (!threadsGiven && Environment.GetEnvironmentVariable("MINISEQ_THREADS") is null)
        {
            // Environment.ProcessorCount already honours mpirun's binding (1 core per rank by default for -np ≤ 2).
            KernelThreads.SetThreadCount(Math.Max(1, Environment.ProcessorCount / MpiCommunicator.LocalSize));
        }

        // mpirun gives every rank a pseudo-terminal and forwards it line by line: plain lines, no colour, no live bar.
        if (world.Rank != 0)
        {
            s_error = Console.Error;
            Console.SetOut(TextWriter.Null);
            Console.SetError(TextWriter.Null);
        }

        AnsiConsole.Console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Ansi = AnsiSupport.No,
            ColorSystem = ColorSystemSupport.NoColors,
            Interactive = InteractionSupport.No,
            Out = new AnsiConsoleOutput(Console.Out),
        });
        AnsiConsole.Profile.Width = 180;

        int code = body(world);
        Current = null;
        world.Dispose();
        return code;
    }

    /// <summary>
    /// Reports a failure of this process and returns its exit code. Outside MPI: prints "miniseq: MESSAGE". Under MPI:
    /// rank 0 prints it at once; another rank ("miniseq: rank R: MESSAGE") at once if the error may be its own
    /// (<paramref name="everyRank"/> false), else only if rank 0 has not ended the job within a grace period (it met
    /// something else). Then the job is aborted (MPI_Abort does not return) — or, in a job of one, MPI is finalised.
    /// </summary>
    public static int Fail(string message, string? details, bool everyRank, int exitCode)
    {
        MpiCommunicator? world = Current;
        int rank = world?.Rank ?? LauncherRank;
        Current = null;
        if (rank != 0 && everyRank)
        {
            if (world is null || world.Size == 1)
            {
                return exitCode; // before MPI started, every rank of the job fails alike: rank 0 tells
            }

            // Rank 0 meets the same error, prints it and aborts the job, this process with it; unless it does not.
            Thread.Sleep(s_quietRankGrace);
        }

        TextWriter error = s_error ?? Console.Error;
        error.WriteLine(rank == 0 ? $"miniseq: {message}" : $"miniseq: rank {rank}: {message}");
        if (details is not null)
        {
            error.WriteLine(details);
        }

        error.Flush();
        if (world is null)
        {
            return exitCode;
        }

        if (world.Size == 1)
        {
            world.Dispose();
            return exitCode;
        }

        world.Abort(exitCode);
        return exitCode;
    }
}
