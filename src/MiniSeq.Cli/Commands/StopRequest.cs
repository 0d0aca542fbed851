// Ctrl-C (SIGINT), SIGTERM (a job scheduler's notice) or SIGUSR1 during `train` finishes the running step, then ends
// the run as a time limit would — the model (with --save-every, the training state too) saved to --save, the
// summary, metrics and plot written — and exits with 128 + the signal's number. A second signal terminates at once.
// Under mpirun, whose own SIGINT/SIGTERM kill the job, SIGUSR1 is the one it forwards to every rank (Open MPI's
// mpirun(1), "Signal Propagation"); the ranks agree with one tiny all-reduce per step to stop after the same step.
using System.Runtime.InteropServices;
using MiniSeq.Distributed;

namespace MiniSeq.Cli.Commands;

internal sealed class StopRequest : IDisposable
{
    private readonly PosixSignalRegistration[] _registrations;
    private volatile int _signalNumber; // 0 until the first signal here, or another rank's (ShouldStop)
    private int _received; // signals this process received itself

    /// <summary>Listens for SIGINT and SIGTERM; <paramref name="notice"/> hears the first (on the signal's thread).</summary>
    public StopRequest(Action<string> notice)
    {
        _registrations = [.. Signals.Select(s => PosixSignalRegistration.Create(s.Signal, context => Handle(context, s.Number, notice)))];
    }

    // SIGUSR1 by its raw number (PosixSignal names only the portable signals); 10 on Linux.
    private static readonly (PosixSignal Signal, int Number, string Name)[] Signals = OperatingSystem.IsLinux()
        ? [(PosixSignal.SIGINT, 2, "SIGINT"), (PosixSignal.SIGTERM, 15, "SIGTERM"), ((PosixSignal)10, 10, "SIGUSR1")]
        : [(PosixSignal.SIGINT, 2, "SIGINT"), (PosixSignal.SIGTERM, 15, "SIGTERM")];

    private static string NameOf(int number) => Signals.First(s => s.Number == number).Name;

    /// <summary>The signal received first (by any rank), if any: "SIGINT", "SIGTERM" or "SIGUSR1".</summary>
    public string? SignalName => _signalNumber == 0 ? null : NameOf(_signalNumber);

    /// <summary>0, or 128 + the number of the signal that stopped the run (130 for SIGINT, 143 for SIGTERM, 138 for
    /// SIGUSR1).</summary>
    public int ExitCode => _signalNumber == 0 ? 0 : 128 + _signalNumber;

    /// <summary>Whether <see cref="ShouldStop"/> has stopped the run: the same on every rank (a signal arriving after the
    /// last step does not set it).</summary>
    public bool Stopped { get; private set; }

    /// <summary>Whether to stop after the step just taken: a signal reached this process (or, collectively, any rank).</summary>
    public bool ShouldStop(ICommunicator world)
    {
        ArgumentNullException.ThrowIfNull(world);
        if (world.Size == 1)
        {
            return Stopped = _signalNumber != 0;
        }

        Span<int> signal = [_signalNumber];
        world.AllReduce(signal, ReduceOp.Max);
        if (_signalNumber == 0 && signal[0] != 0)
        {
            _signalNumber = signal[0]; // another rank's signal: exit as it does
        }

        return Stopped = signal[0] != 0;
    }

    private void Handle(PosixSignalContext context, int number, Action<string> notice)
    {
        // Counted per process, not by _signalNumber: under mpirun another rank's copy of the same SIGUSR1 may have
        // stopped the run (through ShouldStop) before this rank's copy arrives, and that first copy here must not
        // end the process mid-save.
        if (Interlocked.Increment(ref _received) > 1)
        {
            return; // the second signal: the default action ends the process now
        }

        context.Cancel = true;
        if (_signalNumber == 0)
        {
            _signalNumber = number;
        }

        notice(NameOf(number));
    }

    public void Dispose()
    {
        foreach (PosixSignalRegistration r in _registrations)
        {
            r.Dispose();
        }
    }
}
