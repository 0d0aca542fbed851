// MPI_COMM_WORLD of Open MPI (or a sub-group split from it) by P/Invoke: MPI_Init_thread on creation, MPI_Finalize on
// dispose (MPI_Comm_free for a sub-group), the collectives of
// ICommunicator as blocking MPI calls on pinned spans (all-reduce in place). One per process: MPI cannot be initialised
// again after MPI_Finalize. Errors abort the job (MPI_ERRORS_ARE_FATAL, MPI's default); a failed return code is
// thrown as MpiException all the same. Deliberately not: MPICH's ABI (MpiLibrary says why), non-blocking calls.
using System.Globalization;

namespace MiniSeq.Distributed;

/// <summary>The world communicator of an Open MPI job, or a sub-group of it (<see cref="Split"/>).</summary>
public sealed unsafe class MpiCommunicator : ICommunicator
{
    // MPI_THREAD_SERIALIZED: any thread may call MPI, one at a time (the same value in Open MPI and MPICH).
    private const int ThreadSerialized = 2;

    private static readonly object s_gate = new();
    private static bool s_used;

    private readonly MpiLibrary _mpi;
    private readonly bool _isWorld;
    private nint _comm;
    private bool _finalized;

    private MpiCommunicator(MpiLibrary mpi, nint comm, bool isWorld, int rank, int size)
    {
        _mpi = mpi;
        _comm = comm;
        _isWorld = isWorld;
        Rank = rank;
        Size = size;
    }

    /// <summary>
    /// Whether this process was started by Open MPI's mpirun (it sets OMPI_COMM_WORLD_SIZE), which is when a run uses
    /// MPI without being asked to.
    /// </summary>
    public static bool LaunchedByMpirun => Environment.GetEnvironmentVariable("OMPI_COMM_WORLD_SIZE") is not null;

    /// <summary>Processes of the job on this machine (OMPI_COMM_WORLD_LOCAL_SIZE), or 1 when not under mpirun.</summary>
    public static int LocalSize
        => int.TryParse(Environment.GetEnvironmentVariable("OMPI_COMM_WORLD_LOCAL_SIZE"), NumberStyles.None, CultureInfo.InvariantCulture, out int n) && n > 0 ? n : 1;

    /// <inheritdoc/>
    public int Rank { get; }

    /// <inheritdoc/>
    public int Size { get; }

    /// <summary>"Open MPI 4.1".</summary>
    public string Implementation => _mpi.ShortName;

    /// <summary>The library's own version line (MPI_Get_library_version).</summary>
    public string LibraryVersion => _mpi.Version;

    /// <summary>The library file that was loaded.</summary>
    public string LibraryPath => _mpi.Path;

    /// <summary>
    /// Loads Open MPI (see <see cref="MpiLibrary.Load"/>), initialises it and returns MPI_COMM_WORLD. Throws
    /// <see cref="MpiException"/> (one line) when MPI is missing, of MPICH's ABI, or was started by another MPI's launcher.
    /// </summary>
    public static MpiCommunicator InitializeWorld()
    {
        lock (s_gate)
        {
            if (s_used)
            {
                throw new InvalidOperationException("MPI is initialised once per process; use the communicator created first.");
            }

            if (!LaunchedByMpirun && Environment.GetEnvironmentVariable("PMI_SIZE") is string pmiSize)
            {
                // Open MPI would start as a singleton under another launcher: every rank would train alone.
                throw new MpiException($"started by a launcher other than Open MPI's (PMI_SIZE={pmiSize}: MPICH's mpiexec/Hydra?); MiniSeq supports Open MPI only: launch with Open MPI's mpirun ({MpiLibrary.InstallHint}).");
            }

            MpiLibrary mpi = MpiLibrary.Load();
            int initialized = 0, provided = 0, rank = 0, size = 0;
            Check(mpi.Initialized(&initialized), "MPI_Initialized");
            if (initialized == 0)
            {
                Check(mpi.InitThread(null, null, ThreadSerialized, &provided), "MPI_Init_thread");
            }

            s_used = true;
            Check(mpi.CommRank(mpi.CommWorld, &rank), "MPI_Comm_rank");
            Check(mpi.CommSize(mpi.CommWorld, &size), "MPI_Comm_size");
            var world = new MpiCommunicator(mpi, mpi.CommWorld, isWorld: true, rank, size);
            string? expected = Environment.GetEnvironmentVariable("OMPI_COMM_WORLD_SIZE");
            if (expected is not null && expected != size.ToString(CultureInfo.InvariantCulture))
            {
                world.Dispose();
                throw new MpiException($"mpirun started {expected} processes but MPI_COMM_WORLD has {size}: the mpirun on PATH and {mpi.Path} ({mpi.Version}) are from different MPI installations.");
            }

            return world;
        }
    }

    /// <inheritdoc/>
    public void Barrier() => Check(_mpi.Barrier(_comm), "MPI_Barrier");

    /// <inheritdoc/>
    public ICommunicator Split(int color, int key)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(color);
        nint sub = 0;
        int rank = 0, size = 0;
        Check(_mpi.CommSplit(_comm, color, key, &sub), "MPI_Comm_split");
        Check(_mpi.CommRank(sub, &rank), "MPI_Comm_rank");
        Check(_mpi.CommSize(sub, &size), "MPI_Comm_size");
        return new MpiCommunicator(_mpi, sub, isWorld: false, rank, size);
    }

    /// <inheritdoc/>
    public void AllReduce<T>(Span<T> values, ReduceOp op = ReduceOp.Sum)
        where T : unmanaged
    {
        CollectiveChecks.ElementType<T>(reduction: true);
        fixed (T* p = values)
        {
            Check(_mpi.Allreduce(MpiLibrary.InPlace, p, values.Length, Type<T>(), Op(op), _comm), "MPI_Allreduce");
        }
    }

    /// <inheritdoc/>
    public void Broadcast<T>(Span<T> values, int root)
        where T : unmanaged
    {
        CollectiveChecks.ElementType<T>(reduction: false);
        CollectiveChecks.Root(root, Size);
        fixed (T* p = values)
        {
            Check(_mpi.Bcast(p, values.Length, Type<T>(), root, _comm), "MPI_Bcast");
        }
    }

    /// <inheritdoc/>
    public void ReduceScatter<T>(ReadOnlySpan<T> values, Span<T> block, ReduceOp op = ReduceOp.Sum)
        where T : unmanaged
    {
        CollectiveChecks.ElementType<T>(reduction: true);
        CollectiveChecks.Blocks(values.Length, block.Length, Size, nameof(values));
        fixed (T* send = values)
        fixed (T* receive = block)
        {
            Check(_mpi.ReduceScatterBlock(send, receive, block.Length, Type<T>(), Op(op), _comm), "MPI_Reduce_scatter_block");
        }
    }

    /// <inheritdoc/>
    public void AllGather<T>(ReadOnlySpan<T> block, Span<T> values)
        where T : unmanaged
    {
        CollectiveChecks.ElementType<T>(reduction: false);
        CollectiveChecks.Blocks(values.Length, block.Length, Size, nameof(values));
        fixed (T* send = block)
        fixed (T* receive = values)
        {
            nint type = Type<T>();
            Check(_mpi.Allgather(send, block.Length, type, receive, block.Length, type, _comm), "MPI_Allgather");
        }
    }

    /// <inheritdoc/>
    public void AllToAll<T>(ReadOnlySpan<T> send, Span<T> receive)
        where T : unmanaged
    {
        CollectiveChecks.ElementType<T>(reduction: false);
        int block = send.Length / Size;
        CollectiveChecks.Blocks(send.Length, block, Size, nameof(send));
        CollectiveChecks.Blocks(receive.Length, block, Size, nameof(receive));
        fixed (T* s = send)
        fixed (T* r = receive)
        {
            nint type = Type<T>();
            Check(_mpi.Alltoall(s, block, type, r, block, type, _comm), "MPI_Alltoall");
        }
    }

    /// <inheritdoc/>
    public void AllToAllV<T>(ReadOnlySpan<T> send, ReadOnlySpan<int> sendCounts, Span<T> receive, ReadOnlySpan<int> receiveCounts)
        where T : unmanaged
    {
        CollectiveChecks.ElementType<T>(reduction: false);
        CollectiveChecks.Counts(sendCounts, send.Length, Size, nameof(sendCounts));
        CollectiveChecks.Counts(receiveCounts, receive.Length, Size, nameof(receiveCounts));
        int[] sendDisplacements = Displacements(sendCounts), receiveDisplacements = Displacements(receiveCounts);
        fixed (T* s = send)
        fixed (T* r = receive)
        fixed (int* sc = sendCounts)
        fixed (int* sd = sendDisplacements)
        fixed (int* rc = receiveCounts)
        fixed (int* rd = receiveDisplacements)
        {
            nint type = Type<T>();
            Check(_mpi.Alltoallv(s, sc, sd, type, r, rc, rd, type, _comm), "MPI_Alltoallv");
        }
    }

    /// <summary>
    /// Ends every process of the job with <paramref name="exitCode"/> (MPI_Abort): what a rank that failed must do, or
    /// the others would wait in their next collective forever. Open MPI does not return from it.
    /// </summary>
    public void Abort(int exitCode)
    {
        int code = _mpi.Abort(_mpi.CommWorld, exitCode);
        throw new MpiException($"MPI_Abort returned (MPI error {code}).");
    }

    /// <summary>MPI_Finalize for the world (once; every rank must call it, after disposing its sub-groups); MPI_Comm_free
    /// for a sub-group made by <see cref="Split"/>.</summary>
    public void Dispose()
    {
        if (_finalized)
        {
            return;
        }

        _finalized = true;
        if (!_isWorld)
        {
            int done = 0;
            Check(_mpi.Finalized(&done), "MPI_Finalized");
            if (done == 0)
            {
                nint comm = _comm;
                Check(_mpi.CommFree(&comm), "MPI_Comm_free");
                _comm = comm;
            }

            return;
        }

        int finalized = 0;
        Check(_mpi.Finalized(&finalized), "MPI_Finalized");
        if (finalized == 0)
        {
            Check(_mpi.Finalize(), "MPI_Finalize");
        }
    }

    private static int[] Displacements(ReadOnlySpan<int> counts)
    {
        int[] displacements = new int[counts.Length];
        for (int i = 1; i < counts.Length; i++)
        {
            displacements[i] = displacements[i - 1] + counts[i - 1];
        }

        return displacements;
    }

    private nint Type<T>()
        where T : unmanaged
        => typeof(T) == typeof(float) ? _mpi.Float
        : typeof(T) == typeof(double) ? _mpi.Double
        : typeof(T) == typeof(int) ? _mpi.Int
        : typeof(T) == typeof(long) ? _mpi.Long
        : _mpi.Byte;

    private nint Op(ReduceOp op) => op switch
    {
        ReduceOp.Sum => _mpi.OpSum,
        ReduceOp.Max => _mpi.OpMax,
        ReduceOp.Min => _mpi.OpMin,
        _ => throw new ArgumentOutOfRangeException(nameof(op), op, "Unknown reduction."),
    };

    private static void Check(int code, string function)
    {
        if (code != 0)
        {
            throw new MpiException($"{function} failed with MPI error {code}.");
        }
    }
}
