// Ctrl-C (SIGINT) or SIGTERM (a job scheduler's notice) during `train` finishes the running step, then ends the run
// as a time limit would — the model and training state saved to --save, the summary, metrics and plot written — and
// exits with 128 + the signal's number. A second signal terminates at once. Under mpirun every rank stops after the
// same step: the ranks agree on it with one tiny all-reduce per step.
using System.Runtime.InteropServices;
using MiniSeq.Distributed;

namespace MiniSeq.Cli.Commands;

internal sealed class StopRequest : IDisposable
{
    private readonly PosixSignalRegistration[] _registrations;
    private volatile int _signalNumber; // 0 until the first SIGINT (2) or SIGTERM (15)

    /// <summary>Listens for SIGINT and SIGTERM; <paramref name="notice"/> hears the first (on the signal's thread).</summary>
    public StopRequest(Action<string> notice)
    {
        _registrations =
        [
            PosixSignalRegistration.Create(PosixSignal.SIGINT, context => Handle(context, 2, "SIGINT", notice)),
            PosixSignalRegistration.Create(PosixSignal.SIGTERM, context => Handle(context, 15, "SIGTERM", notice)),
        ];
    }

    /// <summary>The signal received first, if any (e.g. "SIGINT").</summary>
    public string? SignalName { get; private set; }

    /// <summary>0, or 128 + the number of the signal that stopped the run (130 for SIGINT, 143 for SIGTERM).</summary>
    public int ExitCode => _signalNumber == 0 ? 0 : 128 + _signalNumber;

    /// <summary>Whether to stop after the step just taken: a signal reached this process (or, collectively, any rank).</summary>
    public bool ShouldStop(ICommunicator world)
    {
        ArgumentNullException.ThrowIfNull(world);
        if (world.Size == 1)
        {
            return _signalNumber != 0;
        }

        Span<int> signal = [_signalNumber];
        world.AllReduce(signal, ReduceOp.Max);
        if (_signalNumber == 0 && signal[0] != 0)
        {
            _signalNumber = signal[0]; // another rank's signal: exit as it does
            SignalName ??= signal[0] == 2 ? "SIGINT" : "SIGTERM";
        }

        return signal[0] != 0;
    }

    private void Handle(PosixSignalContext context, int number, string name, Action<string> notice)
    {
        if (_signalNumber != 0)
        {
            return; // the second signal: the default action ends the process now
        }

        context.Cancel = true;
        SignalName = name;
        _signalNumber = number;
        notice(name);
    }

    public void Dispose()
    {
        foreach (PosixSignalRegistration r in _registrations)
        {
            r.Dispose();
        }
    }
}
