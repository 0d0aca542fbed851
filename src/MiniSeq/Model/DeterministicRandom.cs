// A seeded generator whose stream is the same on every platform and runtime (initialisation, the demo's data).
namespace MiniSeq.Model;

/// <summary>SplitMix64-based generator: the same stream on every platform and runtime.</summary>
public sealed class DeterministicRandom
{
    private ulong _state;

    /// <summary>Seeds the generator.</summary>
    public DeterministicRandom(ulong seed) => _state = seed;

    /// <summary>The generator's whole state: a generator created with this seed continues the same stream.</summary>
    public ulong State => _state;

    /// <summary>Next 64 random bits.</summary>
    public ulong NextUInt64()
    {
        ulong z = _state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>A seed derived from <paramref name="seed"/> and <paramref name="value"/> (one SplitMix64 step of their mix):
    /// streams for (run, step, micro-batch, tensor) that do not overlap in practice.</summary>
    public static ulong Mix(ulong seed, ulong value) => new DeterministicRandom(seed ^ (value * 0xD1B54A32D192ED03UL)).NextUInt64();

    /// <summary>Uniform in [0, 1).</summary>
    public double NextDouble() => (NextUInt64() >> 11) * (1.0 / (1UL << 53));

    /// <summary>Uniform integer in [0, maxExclusive).</summary>
    public int NextInt(int maxExclusive) => (int)(NextDouble() * maxExclusive);

    /// <summary>Fills with N(0, std²) samples (Box–Muller).</summary>
    public void FillNormal(Span<float> destination, float std)
    {
        for (int i = 0; i < destination.Length; i += 2)
        {
            double u1 = 1.0 - NextDouble(), u2 = NextDouble();
            double r = Math.Sqrt(-2.0 * Math.Log(u1));
            destination[i] = (float)(std * r * Math.Cos(2 * Math.PI * u2));
            if (i + 1 < destination.Length)
            {
                destination[i + 1] = (float)(std * r * Math.Sin(2 * Math.PI * u2));
            }
        }
    }
}
