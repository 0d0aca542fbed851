// TrainingData: the held-out split and separate validation files give disjoint, complete document sets; the
// description that identifies the data for resume changes with the data and every packing option.
using MiniSeq.Tests.Helpers;
using MiniSeq.Tests.Text;
using MiniSeq.Training.Data;

namespace MiniSeq.Tests.Training;

public class TrainingDataTests
{
    private static DataOptions Options(string[] paths, int vocab) => new()
    {
        Paths = paths,
        BatchSize = 1,
        SeqLen = 32,
        Corpus = new CorpusOptions { VocabSize = vocab, SplitOnBlankLines = true, UseCache = false },
    };

    private static string Paragraphs(int count, string word) => string.Join("\n\n", Enumerable.Range(0, count).Select(i => $"{word} {i} {word}.")) + "\n";

    [Fact]
    public void ValidationFraction_HoldsOutDocuments_ValidationData_ReadsSeparateFiles()
    {
        using var tmp = new TempDir();
        File.WriteAllText(tmp["train.txt"], Paragraphs(20, "alpha"));
        File.WriteAllText(tmp["val.txt"], Paragraphs(3, "omega"));
        var tokenizer = TokenizerFiles.Ours("llama2");

        using (TrainingData split = TrainingData.Load(Options([tmp["train.txt"]], 32000) with { ValidationFraction = 0.1 }, tokenizer))
        {
            Assert.Equal(18, split.Training.Stats.Documents);
            Assert.Equal(2, split.Validation!.Stats.Documents);
            Assert.Equal(split.Corpus.TokenCount, split.Training.Stats.Tokens + split.Validation.Stats.Tokens);
            Assert.Contains("val=0.1", split.Description, StringComparison.Ordinal);
        }

        using (TrainingData separate = TrainingData.Load(Options([tmp["train.txt"]], 32000) with { ValidationPaths = [tmp["val.txt"]] }, tokenizer))
        {
            Assert.Equal(20, separate.Training.Stats.Documents);
            Assert.Equal(3, separate.Validation!.Stats.Documents);
            Assert.Equal(separate.ValidationCorpus!.TokenCount, separate.Validation.Stats.Tokens);
            Assert.Contains("val=" + separate.ValidationCorpus.Fingerprint, separate.Description, StringComparison.Ordinal);
        }

        Assert.Throws<ArgumentException>(() => TrainingData.Load(Options([tmp["train.txt"]], 32000) with { ValidationPaths = [tmp["val.txt"]], ValidationFraction = 0.1 }, tokenizer));
    }

    [Fact]
    public void Description_ChangesWithDataAndPackingOptions()
    {
        using var tmp = new TempDir();
        File.WriteAllText(tmp["a.txt"], Paragraphs(5, "alpha"));
        var tokenizer = TokenizerFiles.Ours("llama2");
        string Describe(DataOptions o)
        {
            using TrainingData d = TrainingData.Load(o, tokenizer);
            return d.Description;
        }

        DataOptions baseline = Options([tmp["a.txt"]], 32000);
        string first = Describe(baseline);
        Assert.Equal(first, Describe(baseline));
        Assert.NotEqual(first, Describe(baseline with { Seed = 2 }));
        Assert.NotEqual(first, Describe(baseline with { DropLong = true }));
        Assert.NotEqual(first, Describe(baseline with { DocumentMask = false }));
        File.AppendAllText(tmp["a.txt"], "\nmore\n");
        Assert.NotEqual(first, Describe(baseline));
    }
}
