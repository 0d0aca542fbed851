// The data of a training run on real text: the corpus loaded from files (tokenized once, cached), the held-out
// validation part (--val-fraction of the documents, or separate --val-data files), and the packed batch sources over
// both. What identifies the data for resume is the corpus fingerprint (files, tokenizer, options) plus the packing.
using System.Globalization;
using MiniSeq.Text;

namespace MiniSeq.Training.Data;

/// <summary>How to read and pack the data of a run.</summary>
public sealed record DataOptions
{
    /// <summary>Training files or directories.</summary>
    public required IReadOnlyList<string> Paths { get; init; }

    /// <summary>Separate validation files, or null.</summary>
    public IReadOnlyList<string>? ValidationPaths { get; init; }

    /// <summary>Fraction of the training documents held out for validation (exclusive with <see cref="ValidationPaths"/>), or null.</summary>
    public double? ValidationFraction { get; init; }

    /// <summary>Rows per batch.</summary>
    public required int BatchSize { get; init; }

    /// <summary>Tokens per row.</summary>
    public required int SeqLen { get; init; }

    /// <summary>Seed of the epoch shuffles and of the validation split.</summary>
    public ulong Seed { get; init; } = 1;

    /// <summary>Skip documents longer than a row instead of splitting them.</summary>
    public bool DropLong { get; init; }

    /// <summary>Keep attention inside each document and restart RoPE positions per document (default); off: a packed
    /// row attends across documents like one sequence.</summary>
    public bool DocumentMask { get; init; } = true;

    /// <summary>Reading and tokenizing.</summary>
    public required CorpusOptions Corpus { get; init; }
}

/// <summary>Corpus, split and packed sources of a run.</summary>
public sealed class TrainingData : IDisposable
{
    private TrainingData(DataOptions options, DocumentCorpus corpus, DocumentCorpus? validationCorpus, PackedSource training, PackedSource? validation)
    {
        Options = options;
        Corpus = corpus;
        ValidationCorpus = validationCorpus;
        Training = training;
        Validation = validation;
    }

    /// <summary>The options it was loaded with.</summary>
    public DataOptions Options { get; }

    /// <summary>The training files' documents (the validation documents of a held-out split included).</summary>
    public DocumentCorpus Corpus { get; }

    /// <summary>The separate validation files' documents, or null.</summary>
    public DocumentCorpus? ValidationCorpus { get; }

    /// <summary>Endless shuffled batches of the training documents.</summary>
    public PackedSource Training { get; }

    /// <summary>One ordered pass over the validation documents, or null without validation data.</summary>
    public PackedSource? Validation { get; }

    /// <summary>What identifies the data for resume: corpus fingerprints and every packing option.</summary>
    public string Description => string.Create(CultureInfo.InvariantCulture,
        $"corpus={Corpus.Fingerprint} val={(ValidationCorpus?.Fingerprint ?? (Options.ValidationFraction is double f ? f.ToString("R", CultureInfo.InvariantCulture) : "none"))} seed={Options.Seed} drop_long={Options.DropLong} document_mask={Options.DocumentMask}");

    /// <summary>Loads (or reads from cache) the corpus and builds the sources.</summary>
    /// <exception cref="InvalidDataException">Unreadable data (one line naming the file), or nothing to train on.</exception>
    public static TrainingData Load(DataOptions options, Tokenizer? tokenizer, IProgress<CorpusProgress>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.ValidationPaths is not null && options.ValidationFraction is not null)
        {
            throw new ArgumentException("--val-data and --val-fraction are alternatives: give one.");
        }

        DocumentCorpus corpus = DocumentCorpus.Load(options.Paths, tokenizer, options.Corpus, progress);
        DocumentCorpus? validationCorpus = null;
        try
        {
            IReadOnlyList<long>? trainingDocuments = null;
            PackedSource? validation = null;
            if (options.ValidationFraction is double fraction)
            {
                DocumentSplit split = DocumentSplit.HoldOut(corpus.DocumentCount, fraction, options.Seed);
                trainingDocuments = split.Training;
                validation = new PackedSource(corpus, split.Validation, options.BatchSize, options.SeqLen, options.Seed, shuffle: false, endless: false, documentMask: options.DocumentMask);
            }
            else if (options.ValidationPaths is { } validationPaths)
            {
                validationCorpus = DocumentCorpus.Load(validationPaths, tokenizer, options.Corpus, progress);
                validation = new PackedSource(validationCorpus, null, options.BatchSize, options.SeqLen, options.Seed, shuffle: false, endless: false, documentMask: options.DocumentMask);
            }

            var training = new PackedSource(corpus, trainingDocuments, options.BatchSize, options.SeqLen, options.Seed, dropLong: options.DropLong, documentMask: options.DocumentMask);
            return new TrainingData(options, corpus, validationCorpus, training, validation);
        }
        catch
        {
            corpus.Dispose();
            validationCorpus?.Dispose();
            throw;
        }
    }

    /// <summary>Unmaps the corpora.</summary>
    public void Dispose()
    {
        Corpus.Dispose();
        ValidationCorpus?.Dispose();
    }
}
