// A group of one: every collective is the identity (or a copy), so a 1-rank run goes through the same code as a
// distributed one without loading MPI. Checks its arguments like MpiCommunicator does.
namespace MiniSeq.Distributed;

/// <summary>The communicator of a run that is not distributed: rank 0 of 1.</summary>
public sealed class SingleProcessCommunicator : ICommunicator
{
    /// <inheritdoc/>
    public int Rank => 0;

    /// <inheritdoc/>
    public int Size => 1;

    /// <inheritdoc/>
    public string Implementation => "single process";

    /// <inheritdoc/>
    public void Barrier()
    {
    }

    /// <inheritdoc/>
    public ICommunicator Split(int color, int key) => new SingleProcessCommunicator();

    /// <inheritdoc/>
    public void AllReduce<T>(Span<T> values, ReduceOp op = ReduceOp.Sum)
        where T : unmanaged
        => CollectiveChecks.ElementType<T>(reduction: true);

    /// <inheritdoc/>
    public void Broadcast<T>(Span<T> values, int root)
        where T : unmanaged
    {
        CollectiveChecks.ElementType<T>(reduction: false);
        CollectiveChecks.Root(root, 1);
    }

    /// <inheritdoc/>
    public void ReduceScatter<T>(ReadOnlySpan<T> values, Span<T> block, ReduceOp op = ReduceOp.Sum)
        where T : unmanaged
    {
        CollectiveChecks.ElementType<T>(reduction: true);
        CollectiveChecks.Blocks(values.Length, block.Length, 1, nameof(values));
        values.CopyTo(block);
    }

    /// <inheritdoc/>
    public void AllGather<T>(ReadOnlySpan<T> block, Span<T> values)
        where T : unmanaged
    {
        CollectiveChecks.ElementType<T>(reduction: false);
        CollectiveChecks.Blocks(values.Length, block.Length, 1, nameof(values));
        block.CopyTo(values);
    }

    /// <inheritdoc/>
    public void AllToAll<T>(ReadOnlySpan<T> send, Span<T> receive)
        where T : unmanaged
    {
        CollectiveChecks.ElementType<T>(reduction: false);
        CollectiveChecks.Blocks(receive.Length, send.Length, 1, nameof(receive));
        send.CopyTo(receive);
    }

    /// <inheritdoc/>
    public void AllToAllV<T>(ReadOnlySpan<T> send, ReadOnlySpan<int> sendCounts, Span<T> receive, ReadOnlySpan<int> receiveCounts)
        where T : unmanaged
    {
        CollectiveChecks.ElementType<T>(reduction: false);
        CollectiveChecks.Counts(sendCounts, send.Length, 1, nameof(sendCounts));
        CollectiveChecks.Counts(receiveCounts, receive.Length, 1, nameof(receiveCounts));
        if (sendCounts[0] != receiveCounts[0])
        {
            throw new ArgumentException($"Rank 0 sends itself {sendCounts[0]} elements but expects {receiveCounts[0]}.", nameof(receiveCounts));
        }

        send.CopyTo(receive);
    }

    /// <summary>Nothing to free.</summary>
    public void Dispose()
    {
    }
}
