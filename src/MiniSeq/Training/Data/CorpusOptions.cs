// What DocumentCorpus.Load is told (options), and what it tells back (per-source summary, progress and warnings).
// Deliberately not: packing, shuffling or batch shapes (the batch source on top of the corpus decides those).
namespace MiniSeq.Training.Data;

/// <summary>The element type of a headerless token file.</summary>
public enum TokenDtype
{
    /// <summary>Little-endian unsigned 16-bit ids (vocabularies up to 65 536).</summary>
    UInt16,

    /// <summary>Little-endian unsigned 32-bit ids.</summary>
    UInt32,
}

/// <summary>How an input file was read.</summary>
public enum CorpusSourceKind
{
    /// <summary><c>.txt</c>: UTF-8 text, one document per file or per blank-line-separated block.</summary>
    Text,

    /// <summary><c>.jsonl</c>: one JSON object per line, <c>text</c> or chat <c>messages</c>.</summary>
    JsonLines,

    /// <summary>llm.c <c>.bin</c> shard: 256 × int32 header, then uint16 or uint32 token ids.</summary>
    LlmcShard,

    /// <summary>Headerless token array (<c>.u16</c>, <c>.u32</c>, or <c>.bin</c> with <see cref="CorpusOptions.RawTokenDtype"/>).</summary>
    RawTokens,
}

/// <summary>Options of <see cref="DocumentCorpus.Load"/>.</summary>
public sealed record CorpusOptions
{
    /// <summary>The model's vocabulary size V: every token id must be in [0, V), and a tokenizer may have at most V tokens.</summary>
    public required int VocabSize { get; init; }

    /// <summary><c>.txt</c> files: split into documents at blank lines (one or more empty lines, <c>\n\n</c> or
    /// <c>\r\n\r\n</c>) instead of one document per file.</summary>
    public bool SplitOnBlankLines { get; init; }

    /// <summary>Let the tokenizer's post-processor add its special tokens (e.g. BOS) to each text document; for chat
    /// documents, its prefix once at the document start and its suffix once at the end (see <c>docs/formats.md</c>).</summary>
    public bool AddSpecialTokens { get; init; } = true;

    /// <summary>Append the tokenizer's EOS id to each text or chat document that does not already end with it.</summary>
    public bool AppendEos { get; init; } = true;

    /// <summary>The element type of headerless <c>.bin</c> token files (<c>.u16</c>/<c>.u32</c> say it by extension).</summary>
    public TokenDtype? RawTokenDtype { get; init; }

    /// <summary>Token shards are split into documents after each occurrence of this id; null: the tokenizer's EOS id,
    /// or, without a tokenizer, no split (each shard is one document).</summary>
    public int? DocumentSeparator { get; init; }

    /// <summary>Keep tokenized text next to each <c>.txt</c>/<c>.jsonl</c> file (<c>.NAME.miniseq-tokens</c>) and read
    /// it instead of tokenizing when it is still valid.</summary>
    public bool UseCache { get; init; } = true;

    /// <summary>Renders <c>.jsonl</c> chat <c>messages</c> (role, content) into text segments, each marked trainable (its
    /// tokens may be training targets) or not; null: a line with <c>messages</c> is an error.</summary>
    /// <remarks>Normally the tokenizer's chat template (<c>MiniSeq.Text.ChatTemplate</c>). It must be a pure function of
    /// the messages and of the tokenizer files (token caches key on <see cref="Text.Tokenizer.Fingerprint"/>, which
    /// covers <c>tokenizer_config.json</c> and <c>chat_template.jinja</c>), and safe to call from several threads.</remarks>
    public Func<IReadOnlyList<(string Role, string Content)>, IReadOnlyList<(string Text, bool Trainable)>>? RenderChat { get; init; }

    /// <summary>Threads tokenizing documents (results keep the input order whatever the count); null: all processors.</summary>
    public int? MaxDegreeOfParallelism { get; init; }
}

/// <summary>One input file of a corpus.</summary>
/// <param name="Path">The file (full path).</param>
/// <param name="Kind">How it was read.</param>
/// <param name="Documents">Documents it contributed.</param>
/// <param name="Tokens">Tokens it contributed.</param>
/// <param name="FromCache">Whether its tokens came from a valid token cache instead of the tokenizer.</param>
public sealed record CorpusSource(string Path, CorpusSourceKind Kind, long Documents, long Tokens, bool FromCache);

/// <summary>Progress of <see cref="DocumentCorpus.Load"/>, reported after each batch of documents, at the end of each
/// file, and for each warning (e.g. a token cache that could not be written).</summary>
/// <param name="Path">The file being read.</param>
/// <param name="BytesDone">Bytes of it read so far.</param>
/// <param name="BytesTotal">Its size.</param>
/// <param name="Documents">Documents read from it so far.</param>
/// <param name="Tokens">Tokens read from it so far.</param>
/// <param name="Warning">A one-line warning, or null.</param>
public sealed record CorpusProgress(string Path, long BytesDone, long BytesTotal, long Documents, long Tokens, string? Warning = null);
