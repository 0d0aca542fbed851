// The demo's task generator: labels only at the queries, each the value the row's own dictionary gives the key,
// dictionaries with distinct keys and values, the chance level, and held-out data from another seed.
using MiniSeq.Kernels;
using MiniSeq.Model;
using MiniSeq.Training;

namespace MiniSeq.Tests.Training;

public class AssociativeRecallTests
{
    private static (int[] Ids, int[] Labels) Generate(AssociativeRecall task, ulong seed, int rows)
    {
        var ids = new int[rows * task.SeqLen];
        var labels = new int[rows * task.SeqLen];
        task.Generate(new DeterministicRandom(seed), rows, ids, labels);
        return (ids, labels);
    }

    [Theory]
    [InlineData(8, 0, null, null)]
    [InlineData(4, 3, 6, 5)]
    [InlineData(1, 1, null, null)]
    public void LabelsOnlyAtQueries_AndEachIsTheDictionaryValue(int pairs, int gap, int? keys, int? values)
    {
        var task = new AssociativeRecall(256, 97, pairs, gap, keys, values);
        (int[] ids, int[] labels) = Generate(task, 3, rows: 5);
        int scored = 0;
        for (int r = 0; r < 5; r++)
        {
            ReadOnlySpan<int> seq = ids.AsSpan(r * task.SeqLen, task.SeqLen);
            ReadOnlySpan<int> lab = labels.AsSpan(r * task.SeqLen, task.SeqLen);
            Assert.Equal(0, seq[0]);

            // The dictionary: entry tokens right after BOS, distinct keys and distinct values.
            var dictionary = new Dictionary<int, int>();
            var seenValues = new HashSet<int>();
            for (int i = 1; i <= pairs; i++)
            {
                int e = seq[i] - task.EntryStart;
                Assert.InRange(e, 0, (task.KeyCount * task.ValueCount) - 1);
                int key = e / task.ValueCount, value = e % task.ValueCount;
                Assert.Equal(task.EntryToken(key, value), seq[i]);
                dictionary.Add(key, task.ValueToken(value));
                Assert.True(seenValues.Add(value));
                Assert.Equal(CrossEntropy.IgnoreIndex, lab[i]);
            }

            Assert.Equal(CrossEntropy.IgnoreIndex, lab[0]);
            for (int t = task.FirstQueryPosition; t < task.SeqLen; t++)
            {
                if (task.IsQuery(seq[t]))
                {
                    Assert.Equal(dictionary[seq[t] - task.QueryStart], lab[t]);
                    scored++;
                }
                else
                {
                    Assert.True(seq[t] >= task.FillerStart, $"row {r} position {t}: token {seq[t]} is neither a query nor filler");
                    Assert.Equal(CrossEntropy.IgnoreIndex, lab[t]);
                }
            }
        }

        int expectedMin = gap == 0 ? 5 * (task.SeqLen - task.FirstQueryPosition) : 5;
        Assert.True(scored >= expectedMin, $"{scored} scored positions");
        Assert.Equal(scored, labels.Count(l => l != CrossEntropy.IgnoreIndex));
    }

    [Fact]
    public void ChanceLevel_IsOneOverPairs()
    {
        var task = new AssociativeRecall(256, 64, pairs: 8);
        Assert.Equal(0.125, task.ChanceAccuracy);
        Assert.Equal("12.5 % (1 of 8 values in context)", task.ChanceDescription.Replace("\u00a0", " ", StringComparison.Ordinal));
        Assert.Equal(0.25, new AssociativeRecall(256, 64, pairs: 4, keyCount: 8, valueCount: 8).ChanceAccuracy);
    }

    [Fact]
    public void ChanceLevel_MatchesGuessingAmongTheValuesInContext()
    {
        // A guesser that picks, per query, one of the row's dictionary values at random scores 1 / pairs.
        var task = new AssociativeRecall(256, 512, pairs: 8, keyCount: 12, valueCount: 12);
        (int[] ids, int[] labels) = Generate(task, 11, rows: 16);
        var guess = new Random(5);
        long hits = 0, total = 0;
        for (int r = 0; r < 16; r++)
        {
            int[] inContext = ids.Skip((r * task.SeqLen) + 1).Take(task.Pairs).Select(e => task.ValueToken((e - task.EntryStart) % task.ValueCount)).ToArray();
            for (int t = r * task.SeqLen; t < (r + 1) * task.SeqLen; t++)
            {
                if (labels[t] != CrossEntropy.IgnoreIndex)
                {
                    hits += inContext[guess.Next(inContext.Length)] == labels[t] ? 1 : 0;
                    total++;
                }
            }
        }

        Assert.InRange((double)hits / total, task.ChanceAccuracy - 0.02, task.ChanceAccuracy + 0.02);
    }

    [Fact]
    public void SameSeed_SameData_OtherSeed_OtherData()
    {
        var task = new AssociativeRecall(256, 128);
        Assert.Equal(Generate(task, 1, 2).Ids, Generate(task, 1, 2).Ids);
        Assert.NotEqual(Generate(task, 1, 2).Ids, Generate(task, 1 + 1_000_003, 2).Ids);
    }

    [Fact]
    public void BadShapes_Throw()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new AssociativeRecall(256, 128, pairs: 9, keyCount: 8));
        Assert.Throws<ArgumentOutOfRangeException>(() => new AssociativeRecall(64, 128, pairs: 8)); // 1 + 8 + 8 + 64 > 64
        Assert.Throws<ArgumentOutOfRangeException>(() => new AssociativeRecall(256, 9, pairs: 8));
        Assert.Throws<ArgumentOutOfRangeException>(() => new AssociativeRecall(256, 128, meanGap: -1));
    }
}
