// The held-out validation split (--val-fraction): a seeded shuffle of the document indices, the last part held out.
// Decided once per corpus and seed, independent of the training epochs' shuffles, so it never changes during a run.
using MiniSeq.Model;

namespace MiniSeq.Training.Data;

/// <summary>Training and validation document indices.</summary>
public sealed record DocumentSplit(IReadOnlyList<long> Training, IReadOnlyList<long> Validation)
{
    /// <summary>Holds out ⌈<paramref name="fraction"/>·N⌉ documents (at least 1, leaving at least 1 for training).</summary>
    /// <exception cref="ArgumentException">The fraction is outside (0, 1) or there are fewer than 2 documents.</exception>
    public static DocumentSplit HoldOut(long documentCount, double fraction, ulong seed)
    {
        if (!(fraction > 0 && fraction < 1))
        {
            throw new ArgumentException(FormattableString.Invariant($"--val-fraction must be between 0 and 1, exclusive (got {fraction})."));
        }

        if (documentCount < 2)
        {
            throw new ArgumentException($"--val-fraction needs at least 2 documents to hold one out; the data has {documentCount}. Give --val-data instead, or split the text into documents (--split-blank-lines).");
        }

        long[] order = new long[documentCount];
        for (long i = 0; i < documentCount; i++)
        {
            order[i] = i;
        }

        var rng = new DeterministicRandom(seed ^ 0xD1B54A32D192ED03UL);
        for (long k = documentCount - 1; k > 0; k--)
        {
            long j = (long)(rng.NextDouble() * (k + 1));
            (order[k], order[j]) = (order[j], order[k]);
        }

        long held = Math.Clamp((long)Math.Ceiling(fraction * documentCount), 1, documentCount - 1);
        long[] training = order[..(int)(documentCount - held)];
        long[] validation = order[(int)(documentCount - held)..];
        Array.Sort(training);
        Array.Sort(validation);
        return new DocumentSplit(training, validation);
    }
}
