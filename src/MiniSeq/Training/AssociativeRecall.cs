// The built-in synthetic long-context task of `miniseq train`: in-context associative recall. Each sequence draws
// its own random dictionary of key → value pairs and writes the pairs, again and again in random order, into a long
// stream of filler tokens. A key's value can be predicted only by finding an earlier occurrence of the same key,
// anywhere before in the sequence; those positions (every repeated key) are the scored labels. The loss starts at
// ln(V) and falls towards zero as the model learns to look back (an induction-style circuit).
namespace MiniSeq.Training;

/// <summary>Token layout and generator of the associative-recall task.</summary>
public sealed class AssociativeRecall
{
    /// <summary>Creates the task for a vocabulary of <paramref name="vocabSize"/> (≥ 64) tokens.</summary>
    /// <param name="vocabSize">Vocabulary size of the model.</param>
    /// <param name="seqLen">Tokens per sequence.</param>
    /// <param name="pairs">Dictionary entries per sequence.</param>
    /// <param name="meanGap">Average number of filler tokens between two pairs.</param>
    public AssociativeRecall(int vocabSize, int seqLen, int pairs = 16, int meanGap = 6)
    {
        if (vocabSize < 64)
        {
            throw new ArgumentOutOfRangeException(nameof(vocabSize), "The recall task needs a vocabulary of at least 64 tokens.");
        }

        if (seqLen < 16)
        {
            throw new ArgumentOutOfRangeException(nameof(seqLen), "The recall task needs sequences of at least 16 tokens.");
        }

        // Vocabulary: 0 = BOS, then keys, values and filler in equal thirds of the rest.
        int third = (vocabSize - 1) / 3;
        KeyStart = 1;
        ValueStart = KeyStart + third;
        FillerStart = ValueStart + third;
        KeyCount = third;
        ValueCount = third;
        FillerCount = vocabSize - FillerStart;
        SeqLen = seqLen;
        Pairs = Math.Min(pairs, KeyCount);
        MeanGap = meanGap;
    }

#pragma warning disable CS1591
    public int KeyStart { get; }
    public int ValueStart { get; }
    public int FillerStart { get; }
    public int KeyCount { get; }
    public int ValueCount { get; }
    public int FillerCount { get; }
    public int SeqLen { get; }
    public int Pairs { get; }
    public int MeanGap { get; }
#pragma warning restore CS1591

    /// <summary>
    /// Fills <paramref name="inputIds"/> and <paramref name="labels"/> (rows × SeqLen each) with fresh sequences.
    /// Labels are −100 except at a key that already occurred in the row, where the label is its value.
    /// </summary>
    public void Generate(Model.DeterministicRandom rng, int rows, int[] inputIds, int[] labels)
    {
        Array.Fill(labels, Kernels.CrossEntropy.IgnoreIndex);
        var keys = new int[KeyCount];
        var values = new int[Pairs];
        var seen = new bool[Pairs];
        for (int r = 0; r < rows; r++)
        {
            Span<int> seq = inputIds.AsSpan(r * SeqLen, SeqLen);
            Span<int> lab = labels.AsSpan(r * SeqLen, SeqLen);
            for (int i = 0; i < keys.Length; i++)
            {
                keys[i] = i;
            }

            for (int i = 0; i < Pairs; i++)
            {
                int j = i + rng.NextInt(keys.Length - i);
                (keys[i], keys[j]) = (keys[j], keys[i]);
                values[i] = rng.NextInt(ValueCount);
                seen[i] = false;
            }

            seq[0] = 0; // BOS
            int t = 1;
            while (t < SeqLen)
            {
                int gap = rng.NextInt((2 * MeanGap) + 1);
                for (int g = 0; g < gap && t < SeqLen; g++)
                {
                    seq[t++] = FillerStart + rng.NextInt(FillerCount);
                }

                if (t + 1 >= SeqLen)
                {
                    if (t < SeqLen)
                    {
                        seq[t++] = FillerStart + rng.NextInt(FillerCount);
                    }

                    break;
                }

                int p = rng.NextInt(Pairs);
                seq[t] = KeyStart + keys[p];
                seq[t + 1] = ValueStart + values[p];
                if (seen[p])
                {
                    lab[t] = seq[t + 1];
                }

                seen[p] = true;
                t += 2;
            }
        }
    }
}
