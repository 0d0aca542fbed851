// A group of ranks inside one process, one thread each, for testing what runs over ICommunicator without MPI. Every
// collective publishes each rank's buffer, waits for all, combines in rank order (so sums are deterministic), waits
// again so nobody overwrites a buffer still being read, then writes its own result. Slow and simple on purpose.
using System.Runtime.CompilerServices;
using MiniSeq.Distributed;

namespace MiniSeq.Tests.Distributed;

internal sealed class InProcessGroup
{
    private readonly Barrier _barrier;
    private readonly object?[] _slots;
    private readonly Dictionary<(int Call, int Color), InProcessGroup> _subgroups = [];

    private InProcessGroup(int size)
    {
        _barrier = new Barrier(size);
        _slots = new object?[size];
    }

    /// <summary>Runs <paramref name="body"/> on <paramref name="size"/> threads, one rank each; returns their results in rank order.</summary>
    public static T[] Run<T>(int size, Func<ICommunicator, T> body)
    {
        var group = new InProcessGroup(size);
        var results = new T[size];
        var errors = new Exception?[size];
        Thread[] threads = [.. Enumerable.Range(0, size).Select(rank => new Thread(() =>
        {
            try
            {
                results[rank] = body(new Member(group, rank));
            }
            catch (Exception e)
            {
                errors[rank] = e;
                group._barrier.RemoveParticipant(); // let the others fail or finish instead of waiting forever
            }
        }, maxStackSize: 16 << 20))];
        foreach (Thread t in threads)
        {
            t.Start();
        }

        foreach (Thread t in threads)
        {
            t.Join();
        }

        if (errors.Any(e => e is not null))
        {
            throw new AggregateException(errors.OfType<Exception>());
        }

        return results;
    }

    private sealed class Member(InProcessGroup group, int rank) : ICommunicator
    {
        private int _splits;

        public int Rank => rank;

        // The ranks of the same color, by (key, rank); every member of a new group gets the same InProcessGroup
        // (looked up by the how-many-th split this is and the color).
        public ICommunicator Split(int color, int key)
        {
            int[][] all = [];
            Exchange<int>([color, key], a => all = a);
            int[] members = [.. Enumerable.Range(0, Size).Where(r => all[r][0] == color).OrderBy(r => all[r][1]).ThenBy(r => r)];
            int call = _splits++;
            InProcessGroup sub;
            lock (group._subgroups)
            {
                if (!group._subgroups.TryGetValue((call, color), out sub!))
                {
                    sub = new InProcessGroup(members.Length);
                    group._subgroups[(call, color)] = sub;
                }
            }

            return new Member(sub, Array.IndexOf(members, rank));
        }

        public int Size => group._slots.Length;

        public string Implementation => "in-process threads";

        public void Barrier() => group._barrier.SignalAndWait();

        /// <summary>Publishes a copy of this rank's data, then gives every rank's (in rank order) to <paramref name="read"/>.</summary>
        private void Exchange<T>(ReadOnlySpan<T> mine, Action<T[][]> read)
        {
            group._slots[rank] = mine.ToArray();
            Barrier();
            read([.. group._slots.Select(s => (T[])s!)]);
            Barrier();
        }

        public void AllReduce<T>(Span<T> values, ReduceOp op = ReduceOp.Sum)
            where T : unmanaged
        {
            T[] result = new T[values.Length];
            Exchange<T>(values, all =>
            {
                all[0].CopyTo(result, 0);
                for (int r = 1; r < all.Length; r++)
                {
                    for (int i = 0; i < result.Length; i++)
                    {
                        result[i] = Combine(result[i], all[r][i], op);
                    }
                }
            });
            result.CopyTo(values);
        }

        public void Broadcast<T>(Span<T> values, int root)
            where T : unmanaged
        {
            T[] result = [];
            Exchange<T>(values, all => result = all[root]);
            result.CopyTo(values);
        }

        public void ReduceScatter<T>(ReadOnlySpan<T> values, Span<T> block, ReduceOp op = ReduceOp.Sum)
            where T : unmanaged
        {
            T[] whole = values.ToArray();
            AllReduce<T>(whole, op);
            whole.AsSpan(rank * block.Length, block.Length).CopyTo(block);
        }

        public void AllGather<T>(ReadOnlySpan<T> block, Span<T> values)
            where T : unmanaged
        {
            T[] result = [];
            Exchange(block, all => result = [.. all.SelectMany(a => a)]);
            result.CopyTo(values);
        }

        public void AllToAll<T>(ReadOnlySpan<T> send, Span<T> receive)
            where T : unmanaged
        {
            int block = send.Length / Size;
            T[] result = [];
            Exchange(send, all => result = [.. all.SelectMany(a => a.AsSpan(rank * block, block).ToArray())]);
            result.CopyTo(receive);
        }

        public void AllToAllV<T>(ReadOnlySpan<T> send, ReadOnlySpan<int> sendCounts, Span<T> receive, ReadOnlySpan<int> receiveCounts)
            where T : unmanaged
        {
            int[] allCounts = new int[Size * Size];
            AllGather(sendCounts, allCounts.AsSpan());
            T[] result = [];
            Exchange(send, all =>
            {
                var list = new List<T>();
                for (int from = 0; from < Size; from++)
                {
                    int offset = 0;
                    for (int to = 0; to < rank; to++)
                    {
                        offset += allCounts[(from * Size) + to];
                    }

                    list.AddRange(all[from].AsSpan(offset, allCounts[(from * Size) + rank]).ToArray());
                }

                result = [.. list];
            });
            result.CopyTo(receive);
        }

        public void Dispose()
        {
        }

        private static T Combine<T>(T a, T b, ReduceOp op)
            where T : unmanaged
        {
            if (typeof(T) == typeof(float))
            {
                float x = Unsafe.As<T, float>(ref a), y = Unsafe.As<T, float>(ref b);
                float z = op == ReduceOp.Sum ? x + y : op == ReduceOp.Max ? Math.Max(x, y) : Math.Min(x, y);
                return Unsafe.As<float, T>(ref z);
            }

            if (typeof(T) == typeof(double))
            {
                double x = Unsafe.As<T, double>(ref a), y = Unsafe.As<T, double>(ref b);
                double z = op == ReduceOp.Sum ? x + y : op == ReduceOp.Max ? Math.Max(x, y) : Math.Min(x, y);
                return Unsafe.As<double, T>(ref z);
            }

            if (typeof(T) == typeof(int))
            {
                int x = Unsafe.As<T, int>(ref a), y = Unsafe.As<T, int>(ref b);
                int z = op == ReduceOp.Sum ? x + y : op == ReduceOp.Max ? Math.Max(x, y) : Math.Min(x, y);
                return Unsafe.As<int, T>(ref z);
            }

            long lx = Unsafe.As<T, long>(ref a), ly = Unsafe.As<T, long>(ref b);
            long lz = op == ReduceOp.Sum ? lx + ly : op == ReduceOp.Max ? Math.Max(lx, ly) : Math.Min(lx, ly);
            return Unsafe.As<long, T>(ref lz);
        }
    }
}
