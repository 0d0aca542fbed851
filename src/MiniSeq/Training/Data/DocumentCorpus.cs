// The training data as a list of tokenized documents: loaded from text (.txt), JSON lines (.jsonl, text or chat
// messages) and token shards (llm.c .bin, headerless .bin/.u16/.u32), with text tokenized once into a token cache next
// to each file (CorpusCache) so that later loads only map it. Documents are addressed by a 64-bit index and stored with
// 64-bit offsets, so neither the number of tokens nor of documents is bounded by 2^31 (a single document is: a span).
// The corpus is immutable and may be read from several threads; the packer and batch source are built on top of it.
// Deliberately not: packing, shuffling, splitting into train/validation, or the CLI flags (all callers of Load).
using System.Globalization;
using MiniSeq.Diagnostics;
using MiniSeq.IO;
using MiniSeq.Text;

namespace MiniSeq.Training.Data;

/// <summary>An immutable list of tokenized documents with, for chat data, a per-token trainable mask.</summary>
/// <remarks>Spans returned by <see cref="Document"/> and <see cref="Trainable"/> point into native memory or
/// memory-mapped files owned by the corpus: they stay valid until <see cref="Dispose"/>, and the corpus must be kept
/// alive (referenced) while they are used.</remarks>
public sealed class DocumentCorpus : IDocumentSet, IDisposable
{
    private readonly CorpusPart[] _parts;
    private readonly long[] _firstDocument; // (parts + 1): index of each part's first document; last = DocumentCount
    private byte[] _ones = [];
    private bool _disposed;

    private DocumentCorpus(CorpusPart[] parts, IReadOnlyList<CorpusSource> sources, string fingerprint)
    {
        _parts = parts;
        _firstDocument = new long[parts.Length + 1];
        for (int p = 0; p < parts.Length; p++)
        {
            _firstDocument[p + 1] = checked(_firstDocument[p] + parts[p].DocumentCount);
            TokenCount = checked(TokenCount + parts[p].TokenCount);
            HasTrainableMask |= parts[p].HasMask;
        }

        DocumentCount = _firstDocument[^1];
        Sources = sources;
        Fingerprint = fingerprint;
    }

    /// <summary>Number of documents.</summary>
    public long DocumentCount { get; }

    /// <summary>Number of tokens over all documents.</summary>
    public long TokenCount { get; }

    /// <summary>Whether some document has tokens that are not training targets (chat data: prompts).</summary>
    public bool HasTrainableMask { get; }

    /// <summary>The input files in load order, with what each contributed.</summary>
    public IReadOnlyList<CorpusSource> Sources { get; }

    /// <summary>FNV-1a 64 (hex) of everything that decides the documents: each file's full path, size, last-write time
    /// and content hash (text: the cache's; shards are not hashed — size and write time stand for them), the tokenizer's
    /// fingerprint and the options that change tokens. A resumed run compares it with the saved one.</summary>
    public string Fingerprint { get; }

    /// <summary>The token ids of document <paramref name="index"/> (0 ≤ index &lt; <see cref="DocumentCount"/>).</summary>
    public ReadOnlySpan<int> Document(long index)
    {
        (CorpusPart part, long local) = Locate(index);
        return part.Document(local);
    }

    /// <summary>One byte per token of document <paramref name="index"/>: 1 if the token may be a training target, 0 if
    /// not (chat prompts, BOS). Text and shard documents are all 1.</summary>
    public ReadOnlySpan<byte> Trainable(long index)
    {
        (CorpusPart part, long local) = Locate(index);
        if (part.HasMask)
        {
            return part.Mask(local);
        }

        (long start, long end) = part.Range(local);
        return Ones(checked((int)(end - start)));
    }

    // A shared all-ones block at least this long; a longer one replaces it (spans over the old one stay valid: it is a
    // managed array they keep alive).
    private ReadOnlySpan<byte> Ones(int length)
    {
        byte[] ones = Volatile.Read(ref _ones);
        if (ones.Length < length)
        {
            ones = new byte[Math.Max(length, (int)Math.Min(Array.MaxLength, Math.Max(4096, 2L * ones.Length)))];
            ones.AsSpan().Fill(1);
            Volatile.Write(ref _ones, ones);
        }

        return ones.AsSpan(0, length);
    }

    private (CorpusPart Part, long Local) Locate(long index)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if ((ulong)index >= (ulong)DocumentCount)
        {
            throw new ArgumentOutOfRangeException(nameof(index), $"Document {index} is outside a corpus of {DocumentCount} documents.");
        }

        int p = PartOf(_firstDocument, index);
        return (_parts[p], index - _firstDocument[p]);
    }

    /// <summary>The part holding document <paramref name="index"/>: the last p with firstDocument[p] ≤ index (empty
    /// parts skipped, as several parts may start at the same index).</summary>
    internal static int PartOf(long[] firstDocument, long index)
    {
        int found = Array.BinarySearch(firstDocument, index);
        if (found < 0)
        {
            return ~found - 1;
        }

        while (found + 1 < firstDocument.Length - 1 && firstDocument[found + 1] == index)
        {
            found++;
        }

        return Math.Min(found, firstDocument.Length - 2);
    }

    /// <summary>Releases the native memory and file mappings; spans obtained before are invalid after.</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        foreach (CorpusPart part in _parts)
        {
            part.Dispose();
        }
    }

    /// <summary>The file extensions Load reads (a directory expands to its files with these).</summary>
    public static IReadOnlyList<string> Extensions { get; } = [".txt", ".jsonl", ".bin", ".u16", ".u32"];

    /// <summary>Loads documents from files and directories (see <c>docs/formats.md</c>, "Data").</summary>
    /// <param name="paths">Files, or directories: each expands to its own files (not sub-directories) with a known
    /// extension, in ordinal order of name, skipping hidden files (such as token caches).</param>
    /// <param name="tokenizer">Tokenizes text and chat; its EOS id is the default document separator of shards. Null
    /// is allowed for shards only (each shard is then one document unless <see cref="CorpusOptions.DocumentSeparator"/>
    /// is given).</param>
    /// <param name="options">Validation, special tokens, separators, caching, chat rendering.</param>
    /// <param name="progress">Progress per batch and file, and one-line warnings (caches that cannot be written…).</param>
    /// <exception cref="InvalidDataException">A malformed input, a token outside the vocabulary, a tokenizer larger than
    /// the model's vocabulary; the message is one line naming the file (and line or byte offset) and what to do.</exception>
    /// <exception cref="FileNotFoundException">A path that does not exist.</exception>
    public static DocumentCorpus Load(IReadOnlyList<string> paths, Tokenizer? tokenizer, CorpusOptions options, IProgress<CorpusProgress>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(paths);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(options.VocabSize);
        if (tokenizer is not null && tokenizer.VocabSize > options.VocabSize)
        {
            throw new InvalidDataException(
                $"tokenizer has {tokenizer.VocabSize} tokens, the model {options.VocabSize}: its ids would fall outside the model's vocabulary. Use the model's own tokenizer (tokenizer.json of the model directory).");
        }

        if (options.DocumentSeparator is int separator && (uint)separator >= (uint)options.VocabSize)
        {
            throw new ArgumentOutOfRangeException(nameof(options), $"The document separator {separator} is outside the vocabulary [0, {options.VocabSize}).");
        }

        IReadOnlyList<string> files = Expand(paths, progress);
        int? shardSeparator = options.DocumentSeparator ?? tokenizer?.EosId;
        ulong tokenizerHash = tokenizer is null ? 0 : Convert.ToUInt64(tokenizer.Fingerprint, 16);
        DocumentTokenizer? documentTokenizer = null;
        var parts = new List<CorpusPart>();
        var sources = new List<CorpusSource>();
        var warnedDirectories = new HashSet<string>(StringComparer.Ordinal);
        var cleanedDirectories = new HashSet<string>(StringComparer.Ordinal);
        ulong fingerprint = Fnv1a.Append(Fnv1a.Offset, "miniseq-corpus-v1");
        fingerprint = Fnv1a.Append(fingerprint, tokenizer?.Fingerprint ?? "no tokenizer");
        fingerprint = Fnv1a.Append(fingerprint, FingerprintOptions(options, tokenizer, shardSeparator));
        try
        {
            foreach (string file in files)
            {
                CorpusSourceKind kind = KindOf(file);
                var stamp = CorpusCache.Stamp.Of(file);
                CorpusPart part;
                ulong contentHash = 0;
                bool fromCache = false;
                if (kind is CorpusSourceKind.Text or CorpusSourceKind.JsonLines)
                {
                    if (tokenizer is null)
                    {
                        Throw.InvalidData(file, "text needs a tokenizer", "Give the tokenizer (a directory with tokenizer.json), or pre-tokenized shards (.bin/.u16/.u32)");
                    }

                    documentTokenizer ??= new DocumentTokenizer(tokenizer, options);
                    var key = new CorpusCache.Key(tokenizerHash, Fnv1a.OfText(CacheOptions(options, tokenizer, kind)));
                    (part, contentHash, fromCache) = LoadText(file, kind, stamp, key, documentTokenizer, options, progress, warnedDirectories, cleanedDirectories);
                }
                else
                {
                    part = TokenShards.Load(file, options.RawTokenDtype, options.VocabSize, shardSeparator, out kind);
                }

                parts.Add(part);
                sources.Add(new CorpusSource(file, kind, part.DocumentCount, part.TokenCount, fromCache));
                progress?.Report(new CorpusProgress(file, stamp.Size, stamp.Size, part.DocumentCount, part.TokenCount));
                fingerprint = Fnv1a.Append(fingerprint, file);
                fingerprint = Fnv1a.Append(Fnv1a.Append(fingerprint, stamp.Size), stamp.WriteTicks);
                fingerprint = Fnv1a.Append(fingerprint, (long)contentHash);
            }

            if (parts.All(p => p.TokenCount == 0))
            {
                Throw.InvalidData(string.Join(", ", paths), "no tokens in the data", "Check the files: empty documents are skipped");
            }

            return new DocumentCorpus([.. parts], sources, Fnv1a.Hex(fingerprint));
        }
        catch
        {
            foreach (CorpusPart part in parts)
            {
                part.Dispose();
            }

            throw;
        }
    }

    // A text source through its cache: a valid cache is mapped; otherwise the file is tokenized and (when allowed, and
    // the path is ours or free) the result written as the new cache and mapped from there.
    private static (CorpusPart Part, ulong ContentHash, bool FromCache) LoadText(string file, CorpusSourceKind kind, CorpusCache.Stamp stamp,
        CorpusCache.Key key, DocumentTokenizer tokenizer, CorpusOptions options, IProgress<CorpusProgress>? progress,
        HashSet<string> warnedDirectories, HashSet<string> cleanedDirectories)
    {
        string cachePath = CorpusCache.PathFor(file);
        string directory = Path.GetDirectoryName(cachePath)!;
        CorpusCache.Owner owner = CorpusCache.Owner.Missing;
        if (options.UseCache)
        {
            if (cleanedDirectories.Add(directory))
            {
                CorpusCache.RemoveStaleTemporaries(directory);
            }

            owner = CorpusCache.Check(cachePath);
            if (owner == CorpusCache.Owner.Ours
                && CorpusCache.TryOpen(cachePath, stamp, key, options.VocabSize, () => Fnv1a.OfFile(file), out ulong cachedHash) is CorpusPart cached)
            {
                return (cached, cachedHash, true);
            }

            if (owner == CorpusCache.Owner.Foreign)
            {
                progress?.Report(new CorpusProgress(file, 0, stamp.Size, 0, 0,
                    $"{cachePath}: exists but is not a MiniSeq token cache; left untouched, {Path.GetFileName(file)} is tokenized without a cache"));
            }
        }

        long readTicks = DateTime.UtcNow.Ticks;
        CorpusPart part = TextDocuments.Load(file, kind, tokenizer, options, progress, out ulong contentHash);
        if (!options.UseCache || owner == CorpusCache.Owner.Foreign || CorpusCache.Stamp.Of(file) != stamp)
        {
            return (part, contentHash, false); // (a file that changed while it was read is not cached)
        }

        string? warning = CorpusCache.Write(cachePath, stamp, contentHash, readTicks, key, part);
        if (warning is not null)
        {
            if (warnedDirectories.Add(directory))
            {
                progress?.Report(new CorpusProgress(file, stamp.Size, stamp.Size, part.DocumentCount, part.TokenCount, warning));
            }

            return (part, contentHash, false);
        }

        // Map the cache just written instead of keeping the tokens in process memory (the OS pages them as needed).
        if (CorpusCache.TryOpen(cachePath, stamp, key, options.VocabSize, () => contentHash, out _) is CorpusPart mapped)
        {
            part.Dispose();
            return (mapped, contentHash, false);
        }

        return (part, contentHash, false);
    }

    /// <summary>What besides the tokenizer files and the source changes the tokens of a text file of
    /// <paramref name="kind"/>: the token cache's options key.</summary>
    private static string CacheOptions(CorpusOptions options, Tokenizer tokenizer, CorpusSourceKind kind)
        => FormattableString.Invariant($"v{CorpusCache.Version};special={options.AddSpecialTokens};eos={options.AppendEos};eos_id={tokenizer.EosId}")
            + (kind == CorpusSourceKind.JsonLines ? ";jsonl" : FormattableString.Invariant($";txt;split={options.SplitOnBlankLines}"));

    /// <summary>Every option that changes the tokens of any file (part of the fingerprint).</summary>
    private static string FingerprintOptions(CorpusOptions options, Tokenizer? tokenizer, int? shardSeparator)
        => FormattableString.Invariant(
            $"special={options.AddSpecialTokens};eos={options.AppendEos};eos_id={tokenizer?.EosId};split={options.SplitOnBlankLines};separator={shardSeparator};dtype={options.RawTokenDtype}");

    /// <summary>The kind of a file by its extension.</summary>
    internal static CorpusSourceKind KindOf(string file) => Path.GetExtension(file).ToLowerInvariant() switch
    {
        ".txt" => CorpusSourceKind.Text,
        ".jsonl" => CorpusSourceKind.JsonLines,
        ".bin" => CorpusSourceKind.LlmcShard, // or RawTokens: decided by the header
        ".u16" or ".u32" => CorpusSourceKind.RawTokens,
        _ => throw new InvalidDataException($"{file}: unknown data file type. Use .txt (text), .jsonl (text or chat messages per line), .bin (llm.c shard or headerless tokens), .u16 or .u32 (headerless tokens)."),
    };

    /// <summary>Files in order: each path as given, a directory as its non-hidden files with a known extension in
    /// ordinal order of name.</summary>
    internal static IReadOnlyList<string> Expand(IReadOnlyList<string> paths, IProgress<CorpusProgress>? progress = null)
    {
        var files = new List<string>();
        foreach (string path in paths)
        {
            string full = Path.GetFullPath(path);
            if (File.Exists(full))
            {
                KindOf(full);
                files.Add(full);
                continue;
            }

            if (!Directory.Exists(full))
            {
                throw new FileNotFoundException($"{path}: no such file or directory.", path);
            }

            var names = new List<string>();
            int skipped = 0;
            foreach (string file in Directory.EnumerateFiles(full))
            {
                string name = Path.GetFileName(file);
                if (name.StartsWith('.') || CorpusCache.IsCacheFileName(name))
                {
                    continue;
                }

                if (Extensions.Contains(Path.GetExtension(name).ToLowerInvariant()))
                {
                    names.Add(name);
                }
                else
                {
                    skipped++;
                }
            }

            if (names.Count == 0)
            {
                Throw.InvalidData(path, "the directory has no data files", $"Put {string.Join(", ", Extensions)} files in it");
            }

            if (skipped > 0)
            {
                progress?.Report(new CorpusProgress(full, 0, 0, 0, 0,
                    string.Create(CultureInfo.InvariantCulture, $"{path}: {skipped} file(s) with other extensions skipped (data files are {string.Join(", ", Extensions)})")));
            }

            names.Sort(StringComparer.Ordinal);
            files.AddRange(names.Select(n => Path.Combine(full, n)));
        }

        return files;
    }
}
