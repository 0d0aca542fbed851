// The collectives a distributed run needs, over a fixed group of processes ("ranks"): all-reduce and broadcast for
// data parallel; reduce-scatter and all-gather for sharded optimizer state (ZeRO); all-to-all(v) for sequence parallel
// (Ulysses); barrier. Two implementations: MpiCommunicator (Open MPI by P/Invoke) and SingleProcessCommunicator (one
// rank, every collective the identity), so that a 1-rank run and the tests need no MPI. Split makes sub-groups (data ×
// sequence parallel: the Ulysses groups inside the world). Deliberately not: point-to-point messages, non-blocking
// requests — none has a user yet.
namespace MiniSeq.Distributed;

/// <summary>How <see cref="ICommunicator.AllReduce{T}"/> and <see cref="ICommunicator.ReduceScatter{T}"/> combine values.</summary>
public enum ReduceOp
{
    /// <summary>Element-wise sum.</summary>
    Sum,

    /// <summary>Element-wise maximum.</summary>
    Max,

    /// <summary>Element-wise minimum.</summary>
    Min,
}

/// <summary>
/// Blocking collectives over a group of <see cref="Size"/> processes. Every rank must make the same calls in the same
/// order with matching lengths. Element types: <see cref="float"/>, <see cref="double"/>, <see cref="int"/>,
/// <see cref="long"/> and <see cref="byte"/> (reductions: not <see cref="byte"/>).
/// </summary>
public interface ICommunicator : IDisposable
{
    /// <summary>This process's index in the group, 0 … <see cref="Size"/> − 1.</summary>
    int Rank { get; }

    /// <summary>Number of processes in the group.</summary>
    int Size { get; }

    /// <summary>What carries the messages, e.g. "Open MPI 4.1" or "single process".</summary>
    string Implementation { get; }

    /// <summary>Returns once every rank has called it.</summary>
    void Barrier();

    /// <summary>Replaces <paramref name="values"/> on every rank by their element-wise reduction over all ranks.</summary>
    /// <remarks>fp32 sums follow the library's reduction order (fixed for a given library, length and group size);
    /// data parallel checks that every rank got the same bits (DataParallel.CheckReplicasAgree).</remarks>
    void AllReduce<T>(Span<T> values, ReduceOp op = ReduceOp.Sum)
        where T : unmanaged;

    /// <summary>Copies <paramref name="values"/> of rank <paramref name="root"/> into every other rank's.</summary>
    void Broadcast<T>(Span<T> values, int root)
        where T : unmanaged;

    /// <summary>
    /// Reduces <paramref name="values"/> (<see cref="Size"/> blocks of <paramref name="block"/>.Length) element-wise over
    /// the ranks and leaves block <see cref="Rank"/> of the result in <paramref name="block"/>.
    /// </summary>
    void ReduceScatter<T>(ReadOnlySpan<T> values, Span<T> block, ReduceOp op = ReduceOp.Sum)
        where T : unmanaged;

    /// <summary>Concatenates every rank's <paramref name="block"/> in rank order into <paramref name="values"/> (<see cref="Size"/> × the block length).</summary>
    void AllGather<T>(ReadOnlySpan<T> block, Span<T> values)
        where T : unmanaged;

    /// <summary>
    /// Block j of <paramref name="send"/> (<see cref="Size"/> equal blocks) goes to rank j, which stores it as block
    /// <see cref="Rank"/> of its <paramref name="receive"/> (the same length).
    /// </summary>
    void AllToAll<T>(ReadOnlySpan<T> send, Span<T> receive)
        where T : unmanaged;

    /// <summary>
    /// All-to-all with a count per rank: the next <paramref name="sendCounts"/>[j] elements of <paramref name="send"/>
    /// (packed in rank order) go to rank j, which packs what it receives in rank order, <paramref name="receiveCounts"/>[i]
    /// elements from rank i. Each rank's receive count from i must equal i's send count to it.
    /// </summary>
    void AllToAllV<T>(ReadOnlySpan<T> send, ReadOnlySpan<int> sendCounts, Span<T> receive, ReadOnlySpan<int> receiveCounts)
        where T : unmanaged;

    /// <summary>
    /// The group of the ranks that pass the same <paramref name="color"/> (MPI_Comm_split), ranked by
    /// <paramref name="key"/>, then by rank here. Collective: every rank calls it. The caller disposes the result.
    /// </summary>
    ICommunicator Split(int color, int key);
}
