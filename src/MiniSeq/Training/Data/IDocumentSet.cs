// Tokenized documents as the packer sees them: a corpus loaded from files (DocumentCorpus) or a subset of one (the
// training or validation part of a split).
namespace MiniSeq.Training.Data;

/// <summary>An indexed list of tokenized documents.</summary>
public interface IDocumentSet
{
    /// <summary>Number of documents.</summary>
    long DocumentCount { get; }

    /// <summary>The token ids of document <paramref name="index"/>.</summary>
    ReadOnlySpan<int> Document(long index);

    /// <summary>Per token of the document, nonzero where it may be a training target (chat data: assistant turns);
    /// empty when every token may be.</summary>
    ReadOnlySpan<byte> Trainable(long index);
}
