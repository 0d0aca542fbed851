// The built-in synthetic long-context task of `miniseq train`: associative recall. Key–value pairs are scattered
// through a long stream of filler tokens; at the end the keys are queried again and the model must produce the
// value that followed each key, possibly thousands of tokens earlier. Only the answers are scored.
namespace MiniSeq.Training;

/// <summary>Token layout and generator of the associative-recall task.</summary>
public sealed class AssociativeRecall
{
    /// <summary>Marks the start of the query section.</summary>
    public const int QueryToken = 1;

    /// <summary>Creates the task for a vocabulary of <paramref name="vocabSize"/> (≥ 64) tokens.</summary>
    public AssociativeRecall(int vocabSize, int seqLen, int pairs, int queries)
    {
        if (vocabSize < 64)
        {
            throw new ArgumentOutOfRangeException(nameof(vocabSize), "The recall task needs a vocabulary of at least 64 tokens.");
        }

        // Vocabulary: 0..3 special, then keys, values, filler in equal thirds of the rest.
        int third = (vocabSize - 4) / 3;
        KeyStart = 4;
        ValueStart = KeyStart + third;
        FillerStart = ValueStart + third;
        KeyCount = third;
        ValueCount = third;
        FillerCount = vocabSize - FillerStart;
        SeqLen = seqLen;
        Pairs = Math.Min(pairs, KeyCount);
        Queries = Math.Min(queries, Pairs);
        if (seqLen < (2 * Pairs) + (2 * Queries) + 2)
        {
            throw new ArgumentOutOfRangeException(nameof(seqLen), $"Sequence length {seqLen} is too short for {Pairs} pairs and {Queries} queries.");
        }
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
    public int Queries { get; }
#pragma warning restore CS1591

    /// <summary>
    /// Fills <paramref name="inputIds"/> and <paramref name="labels"/> (rows × SeqLen each) with fresh sequences.
    /// Labels are −100 except at the positions whose next token is a queried value.
    /// </summary>
    public void Generate(Model.DeterministicRandom rng, int rows, int[] inputIds, int[] labels)
    {
        Array.Fill(labels, Kernels.CrossEntropy.IgnoreIndex);
        var keys = new int[KeyCount];
        var slots = new bool[SeqLen];
        for (int r = 0; r < rows; r++)
        {
            Span<int> seq = inputIds.AsSpan(r * SeqLen, SeqLen);
            Span<int> lab = labels.AsSpan(r * SeqLen, SeqLen);
            for (int t = 0; t < SeqLen; t++)
            {
                seq[t] = FillerStart + rng.NextInt(FillerCount);
            }

            seq[0] = 0; // BOS
            for (int i = 0; i < keys.Length; i++)
            {
                keys[i] = i;
            }

            for (int i = keys.Length - 1; i > 0; i--)
            {
                int j = rng.NextInt(i + 1);
                (keys[i], keys[j]) = (keys[j], keys[i]);
            }

            var values = new int[Pairs];
            int queryStart = SeqLen - (2 * Queries) - 1;
            Array.Clear(slots);
            for (int p = 0; p < Pairs; p++)
            {
                values[p] = rng.NextInt(ValueCount);
                int pos;
                do
                {
                    pos = 1 + rng.NextInt(queryStart - 2);
                }
                while (slots[pos] || slots[pos + 1] || (pos > 0 && slots[pos - 1]));

                slots[pos] = slots[pos + 1] = true;
                seq[pos] = KeyStart + keys[p];
                seq[pos + 1] = ValueStart + values[p];
            }

            seq[queryStart] = QueryToken;
            for (int q = 0; q < Queries; q++)
            {
                int p = rng.NextInt(Pairs);
                int t = queryStart + 1 + (2 * q);
                seq[t] = KeyStart + keys[p];
                seq[t + 1] = ValueStart + values[p];
                lab[t] = seq[t + 1];
            }
        }
    }
}
