// Checks that a communicator's collectives move and combine data as ICommunicator says, with small integer values
// that every element type holds exactly (so sums are exact whatever the order): `miniseq mpi-check` runs it under
// mpirun, the tests run it on in-process groups of several sizes. Collective: every rank runs the same checks.
namespace MiniSeq.Distributed;

/// <summary>A self-test of a communicator's collectives.</summary>
public static class CommunicatorSelfTest
{
    /// <summary>Names of the collectives <see cref="Run"/> checks, in order (all-reduce: float, double, int and long;
    /// sum, max and min; and one of 1M floats, past the small-message algorithms).</summary>
    public static IReadOnlyList<string> Checks { get; } =
        ["barrier", "all-reduce", "broadcast", "reduce-scatter", "all-gather", "all-to-all", "all-to-all-v"];

    /// <summary>Runs every check on <paramref name="communicator"/>; returns what this rank found wrong (empty: all passed).</summary>
    public static IReadOnlyList<string> Run(ICommunicator communicator)
    {
        ArgumentNullException.ThrowIfNull(communicator);
        ICommunicator c = communicator;
        int p = c.Size, r = c.Rank;
        var failures = new List<string>();
        c.Barrier();

        // All-reduce: rank q contributes 7q + i + 1 at index i.
        AllReduce<float>(c, 5, failures);
        AllReduce<double>(c, 5, failures);
        AllReduce<int>(c, 5, failures);
        AllReduce<long>(c, 5, failures);
        AllReduce<float>(c, 1 << 20, failures);

        // Broadcast from the last rank.
        byte[] bytes = [.. Enumerable.Range(0, 9).Select(i => (byte)((r * 16) + i))];
        c.Broadcast<byte>(bytes, root: p - 1);
        Expect(failures, "broadcast (byte)", bytes, i => ((p - 1) * 16) + i);
        double[] doubles = [.. Enumerable.Range(0, 3).Select(i => (r * 0.5) + i)];
        c.Broadcast<double>(doubles, root: p - 1);
        Expect(failures, "broadcast (double)", doubles, i => ((p - 1) * 0.5) + i);

        // Reduce-scatter: element j of rank q is 7q + j + 1; block r (3 elements) of the sum comes back to rank r.
        const int Block = 3;
        long[] values = [.. Enumerable.Range(0, p * Block).Select(j => (long)((7 * r) + j + 1))];
        long[] mine = new long[Block];
        c.ReduceScatter<long>(values, mine);
        Expect(failures, "reduce-scatter (long sum)", mine, k => Enumerable.Range(0, p).Sum(q => (long)((7 * q) + (r * Block) + k + 1)));

        // All-gather: rank q's block is [10q, 10q + 1].
        float[] gathered = new float[2 * p];
        c.AllGather<float>([10f * r, (10f * r) + 1], gathered);
        Expect(failures, "all-gather (float)", gathered, j => (10 * (j / 2)) + (j % 2));

        // All-to-all: block k (2 elements) of rank q's send is 100q + 10k + e and goes to rank k.
        int[] send = [.. Enumerable.Range(0, 2 * p).Select(j => (100 * r) + (10 * (j / 2)) + (j % 2))];
        int[] receive = new int[2 * p];
        c.AllToAll<int>(send, receive);
        Expect(failures, "all-to-all (int)", receive, j => (100 * (j / 2)) + (10 * r) + (j % 2));

        // All-to-all-v: rank q sends rank j (q + j) % 3 + 1 elements 1000q + 100j + e.
        static int Count(int from, int to) => ((from + to) % 3) + 1;
        int[] sendCounts = [.. Enumerable.Range(0, p).Select(j => Count(r, j))];
        int[] receiveCounts = [.. Enumerable.Range(0, p).Select(i => Count(i, r))];
        double[] sendV = [.. Enumerable.Range(0, p).SelectMany(j => Enumerable.Range(0, Count(r, j)).Select(e => (1000.0 * r) + (100 * j) + e))];
        double[] expectedV = [.. Enumerable.Range(0, p).SelectMany(i => Enumerable.Range(0, Count(i, r)).Select(e => (1000.0 * i) + (100 * r) + e))];
        double[] receiveV = new double[expectedV.Length];
        c.AllToAllV<double>(sendV, sendCounts, receiveV, receiveCounts);
        Expect(failures, "all-to-all-v (double)", receiveV, j => expectedV[j]);

        c.Barrier();
        return failures;
    }

    private static void AllReduce<T>(ICommunicator c, int length, List<string> failures)
        where T : unmanaged
    {
        int p = c.Size, r = c.Rank;
        string type = typeof(T).Name;
        foreach (ReduceOp op in new[] { ReduceOp.Sum, ReduceOp.Max, ReduceOp.Min })
        {
            if (length > 5 && op != ReduceOp.Sum)
            {
                continue;
            }

            T[] values = new T[length];
            for (int i = 0; i < length; i++)
            {
                values[i] = From<T>((7 * r) + (i % 1000) + 1);
            }

            c.AllReduce<T>(values, op);
            Expect(failures, $"all-reduce ({type} {op.ToString().ToLowerInvariant()}, {length} elements)", values, i => op switch
            {
                ReduceOp.Sum => (7.0 * p * (p - 1) / 2) + (p * ((i % 1000) + 1)),
                ReduceOp.Max => (7 * (p - 1)) + (i % 1000) + 1,
                _ => (i % 1000) + 1,
            });
        }
    }

    private static T From<T>(int value)
        where T : unmanaged
        => typeof(T) == typeof(float) ? (T)(object)(float)value
        : typeof(T) == typeof(double) ? (T)(object)(double)value
        : typeof(T) == typeof(int) ? (T)(object)value
        : typeof(T) == typeof(long) ? (T)(object)(long)value
        : (T)(object)(byte)value;

    private static void Expect<T>(List<string> failures, string name, T[] actual, Func<int, double> expected)
        where T : unmanaged
    {
        for (int i = 0; i < actual.Length; i++)
        {
            double got = Convert.ToDouble(actual[i], System.Globalization.CultureInfo.InvariantCulture);
            if (got != expected(i))
            {
                failures.Add(FormattableString.Invariant($"{name}: element {i} is {got}, expected {expected(i)}"));
                return;
            }
        }
    }
}
