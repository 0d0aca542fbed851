// A persistent, low-latency worker pool for kernels: the calling thread works too, idle workers spin briefly and
// then park. Work is published through one job slot (function pointer + context pointer, no allocation); indices
// are claimed with a compare-and-swap on a (generation, next) word so a late worker can never run a stale job.
// Deliberately not: a general task scheduler. Bodies must write disjoint outputs so results never depend on which
// thread ran which index (that is what keeps every reduction deterministic and independent of thread count).
using System.Runtime.CompilerServices;
using System.Runtime.ExceptionServices;

namespace MiniSeq.Threading;

/// <summary>The process-wide pool that runs kernel loops on all cores.</summary>
public static unsafe class KernelThreads
{
    private const int SpinIterations = 4000;

    private static readonly object s_gate = new();
    private static readonly SemaphoreSlim s_wake = new(0, int.MaxValue);
    private static Thread[] s_workers = [];
    private static int s_threadCount = 1;

    // The published job. s_state packs (generation << 32) | nextIndex.
    private static delegate*<void*, int, void> s_body;
    private static void* s_context;
    private static int s_count;
    private static long s_state;
    private static int s_done;
    private static int s_generation;
    private static int s_sleepers;
    private static ExceptionDispatchInfo? s_error;

    [ThreadStatic] private static bool t_insideJob;

    static KernelThreads()
    {
        int threads = Environment.ProcessorCount;
        string? env = Environment.GetEnvironmentVariable("MINISEQ_THREADS");
        if (!string.IsNullOrEmpty(env) && int.TryParse(env, out int parsed) && parsed >= 1)
        {
            threads = parsed;
        }

        SetThreadCount(threads);
    }

    private static long s_workerIndices;

    /// <summary>Loop indices run by pool workers (not the caller) since start: tests use it to prove work really ran on
    /// more than one thread.</summary>
    public static long WorkerIndicesRun => Volatile.Read(ref s_workerIndices);

    /// <summary>Number of threads (workers + the caller) that kernels use.</summary>
    public static int ThreadCount => s_threadCount;

    /// <summary>Sets the number of threads kernels use (1 = run everything on the calling thread).</summary>
    public static void SetThreadCount(int threads)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        lock (s_gate)
        {
            // Workers are never torn down; extra ones just stay parked when the count shrinks.
            if (threads - 1 > s_workers.Length)
            {
                var workers = new Thread[threads - 1];
                Array.Copy(s_workers, workers, s_workers.Length);
                for (int i = s_workers.Length; i < workers.Length; i++)
                {
                    workers[i] = new Thread(WorkerLoop) { IsBackground = true, Name = $"miniseq-kernel-{i + 1}" };
                    workers[i].Start();
                }

                s_workers = workers;
            }

            s_threadCount = threads;
        }
    }

    /// <summary>
    /// Runs <paramref name="body"/>(context, i) for i in [0, count). Blocks until all are done. Nested calls and calls
    /// made while another thread owns the pool run inline on the calling thread.
    /// </summary>
    public static void For(int count, delegate*<void*, int, void> body, void* context)
    {
        if (count <= 0)
        {
            return;
        }

        if (count == 1 || s_threadCount == 1 || t_insideJob || !Monitor.TryEnter(s_gate))
        {
            for (int i = 0; i < count; i++)
            {
                body(context, i);
            }

            return;
        }

        try
        {
            t_insideJob = true;
            s_body = body;
            s_context = context;
            s_count = count;
            s_done = 0;
            s_error = null;
            int generation = s_generation + 1;
            Volatile.Write(ref s_state, (long)generation << 32);
            Interlocked.Exchange(ref s_generation, generation);
            int sleepers = Volatile.Read(ref s_sleepers);
            if (sleepers > 0)
            {
                s_wake.Release(Math.Min(sleepers, s_threadCount - 1));
            }

            RunClaimedIndices(generation, worker: false);
            var spin = new SpinWait();
            while (Volatile.Read(ref s_done) < count)
            {
                spin.SpinOnce(sleep1Threshold: -1);
            }

            // Retire the job: a worker that wakes late sees a different generation and claims nothing.
            Volatile.Write(ref s_state, long.MaxValue);
            s_error?.Throw();
        }
        finally
        {
            t_insideJob = false;
            Monitor.Exit(s_gate);
        }
    }

    /// <summary>Runs a struct body over [0, count) on the pool (convenience over the function-pointer form).</summary>
    /// <remarks><paramref name="body"/> must be a local (stack) variable: its address is handed to the workers.</remarks>
    public static void For<TBody>(int count, ref TBody body)
        where TBody : struct, IParallelBody
        => For(count, &Trampoline<TBody>, Unsafe.AsPointer(ref body));

    private static void Trampoline<TBody>(void* context, int index)
        where TBody : struct, IParallelBody
        => Unsafe.AsRef<TBody>(context).Execute(index);

    private static void RunClaimedIndices(int generation, bool worker)
    {
        long ran = 0;
        try
        {
            RunClaimedIndices(generation, ref ran);
        }
        finally
        {
            if (worker && ran > 0)
            {
                Interlocked.Add(ref s_workerIndices, ran);
            }
        }
    }

    private static void RunClaimedIndices(int generation, ref long ran)
    {
        // Read the job before claiming: a successful claim under this generation proves these fields belong to it.
        delegate*<void*, int, void> body = s_body;
        void* context = s_context;
        int count = s_count;
        while (true)
        {
            long state = Volatile.Read(ref s_state);
            if ((int)(state >> 32) != generation)
            {
                return;
            }

            int next = (int)(state & 0xFFFF_FFFF);
            if (next >= count)
            {
                return;
            }

            if (Interlocked.CompareExchange(ref s_state, state + 1, state) != state)
            {
                continue;
            }

            try
            {
                ran++;
                body(context, next);
            }
            catch (Exception e)
            {
                s_error ??= ExceptionDispatchInfo.Capture(e);
            }
            finally
            {
                Interlocked.Increment(ref s_done);
            }
        }
    }

    private static void WorkerLoop()
    {
        t_insideJob = true;
        int seen = 0;
        while (true)
        {
            int spins = 0;
            int generation;
            while ((generation = Volatile.Read(ref s_generation)) == seen)
            {
                if (++spins < SpinIterations)
                {
                    Thread.SpinWait(16);
                    continue;
                }

                Interlocked.Increment(ref s_sleepers);
                if (Volatile.Read(ref s_generation) == seen)
                {
                    s_wake.Wait();
                }

                Interlocked.Decrement(ref s_sleepers);
                spins = 0;
            }

            seen = generation;
            RunClaimedIndices(generation, worker: true);
        }
    }
}

/// <summary>A loop body for <see cref="KernelThreads.For{TBody}(int, ref TBody)"/>.</summary>
public interface IParallelBody
{
    /// <summary>Runs iteration <paramref name="index"/>; must write only outputs owned by that index.</summary>
    void Execute(int index);
}
