// Packing: every token of every document once per epoch, document ids restarting per row and per document, labels
// inside documents only (and only on trainable targets), a batch at any cursor equal to the one reached by stepping
// (what resume relies on), a seeded shuffle that changes per epoch, the validation pass padded, the split stable.
using MiniSeq.IO;
using MiniSeq.Training.Data;

namespace MiniSeq.Tests.Training;

public class PackedSourceTests
{
    /// <summary>Documents held in memory; document d's tokens are 1000·(d+1) + i so every token says where it came from.</summary>
    private sealed class Documents(int[] lengths, bool[]? chat = null) : IDocumentSet
    {
        private readonly int[][] _docs = [.. lengths.Select((n, d) => Enumerable.Range(0, n).Select(i => (1000 * (d + 1)) + i).ToArray())];

        public long DocumentCount => _docs.Length;

        public ReadOnlySpan<int> Document(long index) => _docs[index];

        // Chat documents: only odd positions are targets.
        public ReadOnlySpan<byte> Trainable(long index)
            => chat?[index] == true ? _docs[index].Select((_, i) => (byte)(i % 2)).ToArray() : [];
    }

    private static readonly int[] s_lengths = [5, 17, 3, 40, 1, 9, 12];

    [Fact]
    public void OneEpoch_EveryTokenOnce_DocumentIdsAndLabelsFollowDocuments()
    {
        var docs = new Documents(s_lengths);
        int total = s_lengths.Sum(); // 87
        var source = new PackedSource(docs, null, batchSize: 2, seqLen: 8, seed: 3);
        Assert.Equal(total, source.Stats.Tokens);
        Assert.Equal(4, source.Stats.LongDocuments); // 17, 40, 9 and 12 tokens
        var seen = new List<int>();
        long batches = (total + 15) / 16;
        Assert.Equal(batches, source.BatchesPerEpoch);
        for (int b = 0; b < batches; b++)
        {
            TokenBatch batch = source.Next();
            for (int i = 0; i < batch.TokenCount; i++)
            {
                if (seen.Count < total)
                {
                    seen.Add(batch.InputIds[i]);
                }

                int t = i % 8;
                int id = batch.InputIds[i];
                int doc = (id / 1000) - 1, within = id % 1000;
                if (t == 0)
                {
                    Assert.Equal(0, batch.DocumentIds![i]);
                }
                else
                {
                    bool sameDocument = batch.InputIds[i - 1] / 1000 == id / 1000 && within > 0;
                    Assert.Equal(batch.DocumentIds![i - 1] + (sameDocument ? 0 : 1), batch.DocumentIds[i]);
                }

                // The label is the next token of the same document, or nothing after its last token.
                int expected = within + 1 < s_lengths[doc] ? id + 1 : TokenBatch.IgnoreIndex;
                Assert.Equal(expected, batch.Labels[i]);
            }
        }

        int[] all = [.. Enumerable.Range(0, s_lengths.Length).SelectMany(d => Enumerable.Range(0, s_lengths[d]).Select(i => (1000 * (d + 1)) + i))];
        Assert.Equal(all.Order(), seen.Order());
        Assert.NotEqual(all, seen.ToArray()); // shuffled
    }

    [Fact]
    public void RestoredCursor_GivesTheBatchSteppingReaches_AcrossEpochs()
    {
        var docs = new Documents(s_lengths);
        var stepping = new PackedSource(docs, null, 3, 5, seed: 9);
        var snapshots = new List<(int[] Ids, int[] Labels, int[] Docs)>();
        for (int i = 0; i < 20; i++) // 20 × 15 tokens = 3.4 epochs
        {
            TokenBatch b = stepping.Next();
            snapshots.Add((b.InputIds.ToArray(), b.Labels.ToArray(), b.DocumentIds!.ToArray()));
        }

        foreach (int cursor in new[] { 0, 5, 6, 13, 19 })
        {
            var resumed = new PackedSource(docs, null, 3, 5, seed: 9);
            resumed.Restore(cursor, null);
            TokenBatch b = resumed.Next();
            Assert.Equal(snapshots[cursor].Ids, b.InputIds);
            Assert.Equal(snapshots[cursor].Labels, b.Labels);
            Assert.Equal(snapshots[cursor].Docs, b.DocumentIds!);
        }

        // Another seed, another order; and epochs differ from each other.
        var other = new PackedSource(docs, null, 3, 5, seed: 10);
        Assert.NotEqual(snapshots[0].Ids, other.Next().InputIds);
    }

    [Fact]
    public void DropLong_SkipsDocumentsLongerThanARow_AndSaysSo()
    {
        var source = new PackedSource(new Documents(s_lengths), null, 1, 16, seed: 1, dropLong: true);
        Assert.Equal(5, source.Stats.Documents);
        Assert.Equal(s_lengths.Where(n => n <= 16).Sum(), source.Stats.Tokens);
        Assert.Equal(2, source.Stats.LongDocuments);
        Assert.Contains("2 longer than 16 tokens dropped", source.Stats.Describe(16));
        Assert.Throws<InvalidDataException>(() => new PackedSource(new Documents([40, 50]), null, 1, 16, seed: 1, dropLong: true));
    }

    [Fact]
    public void ChatDocuments_OnlyTrainableTargetsScored()
    {
        var docs = new Documents([6, 6], chat: [true, false]);
        var source = new PackedSource(docs, null, 1, 12, seed: 1, shuffle: false);
        TokenBatch b = source.Next();
        // document 0 (chat): targets at odd positions 1, 3, 5 → labels at 0, 2, 4; document 1 (text): 6..10.
        int[] expected = [1001, -100, 1003, -100, 1005, -100, 2001, 2002, 2003, 2004, 2005, -100];
        Assert.Equal(expected, b.Labels);
    }

    [Fact]
    public void Validation_OnePassInOrder_LastBatchPadded()
    {
        var docs = new Documents(s_lengths);
        var source = new PackedSource(docs, [1, 4], 1, 8, seed: 0, shuffle: false, endless: false);
        TokenBatch[] batches = [.. source.FirstEpoch().Select(b => new TokenBatch(1, 8, b.InputIds.ToArray(), b.Labels.ToArray(), b.DocumentIds!.ToArray()))];
        Assert.Equal(3, batches.Length); // 18 tokens in rows of 8
        Assert.Equal(Enumerable.Range(2000, 17).Append(5000).ToArray(), batches.SelectMany(b => b.InputIds).Take(18).ToArray());
        Assert.All(batches[2].Labels.Skip(2), l => Assert.Equal(TokenBatch.IgnoreIndex, l));
        Assert.Throws<InvalidOperationException>(() => source.Next());
    }

    [Fact]
    public void HoldOut_StableDisjointAndComplete()
    {
        DocumentSplit a = DocumentSplit.HoldOut(100, 0.1, seed: 5), b = DocumentSplit.HoldOut(100, 0.1, seed: 5);
        Assert.Equal(a.Validation, b.Validation);
        Assert.Equal(10, a.Validation.Count);
        Assert.Equal(Enumerable.Range(0, 100).Select(i => (long)i), a.Training.Concat(a.Validation).Order());
        Assert.NotEqual(a.Validation, DocumentSplit.HoldOut(100, 0.1, seed: 6).Validation);
        Assert.Throws<ArgumentException>(() => DocumentSplit.HoldOut(1, 0.5, 1));
        Assert.Throws<ArgumentException>(() => DocumentSplit.HoldOut(10, 1.5, 1));
    }
}
