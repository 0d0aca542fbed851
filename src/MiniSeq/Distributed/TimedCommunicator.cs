// A communicator that measures how long its caller spends inside collectives: the communication overhead of a
// distributed run made visible (the step line, the metrics and the summary of `miniseq train` under mpirun). The time
// of a blocking collective is transfer plus waiting for the slowest rank to arrive, i.e. the time this rank did not
// compute; it is also the most that overlapping the collective with computation could hide.
using System.Diagnostics;

namespace MiniSeq.Distributed;

/// <summary>What a collective is for, as <see cref="TimedCommunicator"/> accounts it.</summary>
public enum CollectiveKind
{
    /// <summary>All-reduce, reduce-scatter, all-gather, broadcast, barrier: gradients, losses, counts, ZeRO-1.</summary>
    Reduction,

    /// <summary>All-to-all(v): Ulysses attention's head exchanges.</summary>
    AllToAll,
}

/// <summary>Forwards every call to <see cref="Inner"/> and adds the time spent in it to a running total per kind.</summary>
public sealed class TimedCommunicator : ICommunicator
{
    private readonly long[] _ticks;
    private readonly bool _ownsInner;

    /// <summary>Times the calls made through it to <paramref name="inner"/> (which it does not dispose).</summary>
    public TimedCommunicator(ICommunicator inner)
        : this(inner ?? throw new ArgumentNullException(nameof(inner)), new long[2], ownsInner: false)
    {
    }

    private TimedCommunicator(ICommunicator inner, long[] ticks, bool ownsInner)
    {
        Inner = inner;
        _ticks = ticks;
        _ownsInner = ownsInner;
    }

    /// <summary>The communicator that carries the calls.</summary>
    public ICommunicator Inner { get; }

    /// <inheritdoc/>
    public int Rank => Inner.Rank;

    /// <inheritdoc/>
    public int Size => Inner.Size;

    /// <inheritdoc/>
    public string Implementation => Inner.Implementation;

    /// <summary>Seconds spent in collectives of <paramref name="kind"/> since construction.</summary>
    public double Seconds(CollectiveKind kind) => (double)Volatile.Read(ref _ticks[(int)kind]) / Stopwatch.Frequency;

    /// <summary>Seconds spent so far in reductions and in all-to-alls (subtract two snapshots for an interval).</summary>
    public (double Reduction, double AllToAll) Snapshot() => (Seconds(CollectiveKind.Reduction), Seconds(CollectiveKind.AllToAll));

    /// <summary>Seconds spent in every collective since construction.</summary>
    public double TotalSeconds => Seconds(CollectiveKind.Reduction) + Seconds(CollectiveKind.AllToAll);

    /// <inheritdoc/>
    public void Barrier()
    {
        long start = Stopwatch.GetTimestamp();
        Inner.Barrier();
        Add(CollectiveKind.Reduction, start);
    }

    /// <inheritdoc/>
    public void AllReduce<T>(Span<T> values, ReduceOp op = ReduceOp.Sum)
        where T : unmanaged
    {
        long start = Stopwatch.GetTimestamp();
        Inner.AllReduce(values, op);
        Add(CollectiveKind.Reduction, start);
    }

    /// <inheritdoc/>
    public void Broadcast<T>(Span<T> values, int root)
        where T : unmanaged
    {
        long start = Stopwatch.GetTimestamp();
        Inner.Broadcast(values, root);
        Add(CollectiveKind.Reduction, start);
    }

    /// <inheritdoc/>
    public void ReduceScatter<T>(ReadOnlySpan<T> values, Span<T> block, ReduceOp op = ReduceOp.Sum)
        where T : unmanaged
    {
        long start = Stopwatch.GetTimestamp();
        Inner.ReduceScatter(values, block, op);
        Add(CollectiveKind.Reduction, start);
    }

    /// <inheritdoc/>
    public void AllGather<T>(ReadOnlySpan<T> block, Span<T> values)
        where T : unmanaged
    {
        long start = Stopwatch.GetTimestamp();
        Inner.AllGather(block, values);
        Add(CollectiveKind.Reduction, start);
    }

    /// <inheritdoc/>
    public void AllToAll<T>(ReadOnlySpan<T> send, Span<T> receive)
        where T : unmanaged
    {
        long start = Stopwatch.GetTimestamp();
        Inner.AllToAll(send, receive);
        Add(CollectiveKind.AllToAll, start);
    }

    /// <inheritdoc/>
    public void AllToAllV<T>(ReadOnlySpan<T> send, ReadOnlySpan<int> sendCounts, Span<T> receive, ReadOnlySpan<int> receiveCounts)
        where T : unmanaged
    {
        long start = Stopwatch.GetTimestamp();
        Inner.AllToAllV(send, sendCounts, receive, receiveCounts);
        Add(CollectiveKind.AllToAll, start);
    }

    /// <summary>A sub-group whose collectives add to the same totals as this one's.</summary>
    public ICommunicator Split(int color, int key) => new TimedCommunicator(Inner.Split(color, key), _ticks, ownsInner: true);

    /// <summary>Disposes <see cref="Inner"/> only when it is a sub-group made by <see cref="Split"/>; the communicator
    /// given to the constructor belongs to whoever made it.</summary>
    public void Dispose()
    {
        if (_ownsInner)
        {
            Inner.Dispose();
        }
    }

    private void Add(CollectiveKind kind, long start) => Interlocked.Add(ref _ticks[(int)kind], Stopwatch.GetTimestamp() - start);
}
