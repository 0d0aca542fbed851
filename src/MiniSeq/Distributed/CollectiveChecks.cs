// Argument checks shared by every communicator, so that a misuse fails the same way in one process as under MPI
// (where it would otherwise hang or corrupt memory): element types, block shapes, per-rank counts, roots.
using System.Diagnostics.CodeAnalysis;

namespace MiniSeq.Distributed;

internal static class CollectiveChecks
{
    /// <summary>Throws unless <typeparamref name="T"/> is a supported element type (reductions exclude byte).</summary>
    public static void ElementType<T>(bool reduction)
        where T : unmanaged
    {
        bool ok = typeof(T) == typeof(float) || typeof(T) == typeof(double) || typeof(T) == typeof(int) || typeof(T) == typeof(long)
            || (!reduction && typeof(T) == typeof(byte));
        if (!ok)
        {
            Unsupported(typeof(T), reduction);
        }
    }

    [DoesNotReturn]
    private static void Unsupported(Type type, bool reduction)
        => throw new NotSupportedException($"Collectives carry float, double, int, long{(reduction ? "" : " or byte")} elements, not {type.Name}.");

    public static void Root(int root, int size)
    {
        if ((uint)root >= (uint)size)
        {
            throw new ArgumentOutOfRangeException(nameof(root), $"Root {root} is not a rank of a group of {size}.");
        }
    }

    /// <summary><paramref name="whole"/> must hold exactly <paramref name="size"/> blocks of <paramref name="block"/>.</summary>
    public static void Blocks(int whole, int block, int size, string wholeName)
    {
        if ((long)block * size != whole)
        {
            throw new ArgumentException($"{wholeName} has {whole} elements; {size} ranks × {block} per block need {(long)block * size}.", wholeName);
        }
    }

    /// <summary>One count per rank, none negative, summing to <paramref name="length"/>.</summary>
    public static void Counts(ReadOnlySpan<int> counts, int length, int size, string name)
    {
        if (counts.Length != size)
        {
            throw new ArgumentException($"{name} has {counts.Length} entries; give one per rank ({size}).", name);
        }

        long total = 0;
        foreach (int c in counts)
        {
            if (c < 0)
            {
                throw new ArgumentOutOfRangeException(name, $"{name} holds a negative count ({c}).");
            }

            total += c;
        }

        if (total != length)
        {
            throw new ArgumentException($"{name} sum to {total} but the buffer holds {length} elements.", name);
        }
    }
}
