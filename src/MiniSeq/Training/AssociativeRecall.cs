// The built-in synthetic task of `miniseq train`: in-context associative recall (multi-query). Each sequence opens
// with its own random dictionary — Pairs entries, each one token "key k = value v" (distinct keys, distinct values) —
// and then asks for it: every later token is a query "key k?" (optionally separated by filler), scored against the
// value token the dictionary gave k. The values are never written again, so the only place to find a query's answer
// is the dictionary at the start of the sequence, up to SeqLen tokens back. The dictionary is fresh per sequence
// (Pairs! possible dictionaries with the default alphabets), so nothing can be memorised across sequences.
//
// Chance level: a model that knows which values are in the sequence but does not bind them to their keys scores
// 1 / Pairs (the values of one sequence are distinct; with the default alphabets every value occurs in every
// sequence, so this is also the best guess without reading the dictionary at all). Only the queries are scored.
namespace MiniSeq.Training;

/// <summary>Token layout and generator of the associative-recall task.</summary>
public sealed class AssociativeRecall
{
    /// <summary>Creates the task for a vocabulary of <paramref name="vocabSize"/> tokens.</summary>
    /// <param name="vocabSize">Vocabulary size of the model.</param>
    /// <param name="seqLen">Tokens per sequence.</param>
    /// <param name="pairs">Dictionary entries per sequence.</param>
    /// <param name="meanGap">Average number of filler tokens between two queries (0 = queries back to back).</param>
    /// <param name="keyCount">Size of the key alphabet (default: <paramref name="pairs"/>).</param>
    /// <param name="valueCount">Size of the value alphabet (default: <paramref name="pairs"/>).</param>
    public AssociativeRecall(int vocabSize, int seqLen, int pairs = 8, int meanGap = 0, int? keyCount = null, int? valueCount = null)
    {
        int keys = keyCount ?? pairs, values = valueCount ?? pairs;
        if (pairs < 1 || pairs > Math.Min(keys, values))
        {
            throw new ArgumentOutOfRangeException(nameof(pairs), $"pairs must be between 1 and the size of the key and value alphabets ({Math.Min(keys, values)}); got {pairs}.");
        }

        int needed = 1 + keys + values + (keys * values) + (meanGap > 0 ? 1 : 0);
        if (needed > vocabSize)
        {
            throw new ArgumentOutOfRangeException(nameof(vocabSize), $"The recall task with {keys} keys and {values} values needs {needed} tokens (BOS, queries, values, one entry token per key–value pair{(meanGap > 0 ? ", filler" : "")}); the vocabulary has {vocabSize}.");
        }

        if (meanGap < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(meanGap), $"The mean gap must be ≥ 0 (got {meanGap}).");
        }

        if (seqLen < pairs + 2)
        {
            throw new ArgumentOutOfRangeException(nameof(seqLen), $"A sequence of {pairs} pairs needs at least {pairs + 2} tokens (BOS, the dictionary, one query); got {seqLen}.");
        }

        // Vocabulary: 0 = BOS, then queries (one per key), values, entries (one per key–value pair), filler.
        QueryStart = 1;
        KeyCount = keys;
        ValueStart = QueryStart + keys;
        ValueCount = values;
        EntryStart = ValueStart + values;
        FillerStart = EntryStart + (keys * values);
        FillerCount = vocabSize - FillerStart;
        SeqLen = seqLen;
        Pairs = pairs;
        MeanGap = meanGap;
    }

#pragma warning disable CS1591
    public int QueryStart { get; }
    public int ValueStart { get; }
    public int EntryStart { get; }
    public int FillerStart { get; }
    public int KeyCount { get; }
    public int ValueCount { get; }
    public int FillerCount { get; }
    public int SeqLen { get; }
    public int Pairs { get; }
    public int MeanGap { get; }
#pragma warning restore CS1591

    /// <summary>First position after BOS and the dictionary: where the queries start.</summary>
    public int FirstQueryPosition => 1 + Pairs;

    /// <summary>Accuracy of picking uniformly among the values in the sequence without binding them to keys: 1 / Pairs.</summary>
    public double ChanceAccuracy => 1.0 / Pairs;

    /// <summary>The chance level, for summaries.</summary>
    public string ChanceDescription => FormattableString.Invariant($"{ChanceAccuracy:P1} (1 of {Pairs} values in context)");

    /// <summary>The token of the query "key <paramref name="key"/>?".</summary>
    public int QueryToken(int key) => QueryStart + key;

    /// <summary>The token of value <paramref name="value"/> (the labels).</summary>
    public int ValueToken(int value) => ValueStart + value;

    /// <summary>The dictionary-entry token "key <paramref name="key"/> = value <paramref name="value"/>".</summary>
    public int EntryToken(int key, int value) => EntryStart + (key * ValueCount) + value;

    /// <summary>Whether <paramref name="token"/> is a query.</summary>
    public bool IsQuery(int token) => token >= QueryStart && token < QueryStart + KeyCount;

    /// <summary>
    /// Fills <paramref name="inputIds"/> and <paramref name="labels"/> (rows × SeqLen each) with fresh sequences.
    /// Labels are −100 everywhere except at the queries, whose label is the value the row's dictionary gives that key.
    /// </summary>
    public void Generate(Model.DeterministicRandom rng, int rows, int[] inputIds, int[] labels)
    {
        ArgumentNullException.ThrowIfNull(rng);
        ArgumentNullException.ThrowIfNull(inputIds);
        ArgumentNullException.ThrowIfNull(labels);
        if (rows < 0 || inputIds.Length < rows * SeqLen || labels.Length < rows * SeqLen)
        {
            throw new ArgumentException($"Buffers must hold {rows}×{SeqLen} tokens.", nameof(inputIds));
        }

        Array.Fill(labels, Kernels.CrossEntropy.IgnoreIndex, 0, rows * SeqLen);
        var keys = new int[KeyCount];
        var values = new int[ValueCount];
        for (int r = 0; r < rows; r++)
        {
            Span<int> seq = inputIds.AsSpan(r * SeqLen, SeqLen);
            Span<int> lab = labels.AsSpan(r * SeqLen, SeqLen);
            PickDistinct(rng, keys, Pairs);
            PickDistinct(rng, values, Pairs);
            seq[0] = 0; // BOS
            for (int i = 0; i < Pairs; i++)
            {
                seq[1 + i] = EntryToken(keys[i], values[i]);
            }

            int t = FirstQueryPosition;
            while (t < SeqLen)
            {
                int gap = MeanGap == 0 ? 0 : rng.NextInt((2 * MeanGap) + 1);
                for (int g = 0; g < gap && t < SeqLen; g++)
                {
                    seq[t++] = FillerStart + rng.NextInt(FillerCount);
                }

                if (t < SeqLen)
                {
                    int p = rng.NextInt(Pairs);
                    seq[t] = QueryToken(keys[p]);
                    lab[t] = ValueToken(values[p]);
                    t++;
                }
            }
        }
    }

    /// <summary>Puts <paramref name="count"/> distinct random elements of 0..a.Length−1 into a[0..count).</summary>
    private static void PickDistinct(Model.DeterministicRandom rng, int[] a, int count)
    {
        for (int i = 0; i < a.Length; i++)
        {
            a[i] = i;
        }

        for (int i = 0; i < count; i++)
        {
            int j = i + rng.NextInt(a.Length - i);
            (a[i], a[j]) = (a[j], a[i]);
        }
    }
}
