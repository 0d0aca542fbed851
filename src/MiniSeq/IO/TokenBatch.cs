// A batch of token sequences with per-position labels, and its JSON file format:
//   {"input_ids": [[1, 2, 3], [4, 5, 6]], "labels": [[2, 3, -100], [5, 6, -100]], "document_ids": [[0, 0, 1], [0, 0, 0]]}
// Labels are already aligned (position t is scored against labels[t]; no shift inside the model); -100 is ignored.
// Without "labels", they are input_ids shifted left by one with -100 at the end of each row (and at the last token of
// every document of a packed row). Optional "document_ids" (packed rows): a new document begins wherever the id
// changes within a row; attention never crosses that boundary and RoPE positions restart there.
// Deliberately not: tokenization, padding, packing or shuffling (Training/Data); rows must have one common length.
using System.Text;
using System.Text.Json;
using MiniSeq.Diagnostics;

namespace MiniSeq.IO;

/// <summary>B sequences of T token ids with B·T labels, row-major (<c>index = row · SeqLen + column</c>).</summary>
public sealed class TokenBatch
{
    /// <summary>The label value of positions that are not scored (as in PyTorch's <c>ignore_index</c>).</summary>
    public const int IgnoreIndex = -100;

    private const string FormatHint = "A token file is {\"input_ids\": [[ids of row 0], [ids of row 1], ...], \"labels\": [[...], ...]} (labels optional).";

    /// <summary>Wraps existing arrays (not copied).</summary>
    /// <param name="batchSize">Rows B (≥ 1).</param>
    /// <param name="seqLen">Tokens per row T (≥ 1).</param>
    /// <param name="inputIds">B·T token ids, row-major.</param>
    /// <param name="labels">B·T targets, row-major; <see cref="IgnoreIndex"/> where not scored.</param>
    /// <param name="documentIds">Optional B·T document index per token (packed rows; null: one document per row).</param>
    public TokenBatch(int batchSize, int seqLen, int[] inputIds, int[] labels, int[]? documentIds = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batchSize);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(seqLen);
        ArgumentNullException.ThrowIfNull(inputIds);
        ArgumentNullException.ThrowIfNull(labels);
        long count = (long)batchSize * seqLen;
        if (inputIds.Length != count || labels.Length != count)
        {
            throw new ArgumentException(
                $"A batch of {batchSize} × {seqLen} needs {count} input ids and labels, got {inputIds.Length} and {labels.Length}.",
                nameof(inputIds));
        }

        if (documentIds is not null && documentIds.Length != count)
        {
            throw new ArgumentException($"A batch of {batchSize} × {seqLen} needs {count} document ids, got {documentIds.Length}.", nameof(documentIds));
        }

        BatchSize = batchSize;
        SeqLen = seqLen;
        InputIds = inputIds;
        Labels = labels;
        DocumentIds = documentIds;
    }

    /// <summary>Rows B.</summary>
    public int BatchSize { get; }

    /// <summary>Tokens per row T.</summary>
    public int SeqLen { get; }

    /// <summary>Token ids (B·T), row-major.</summary>
    public int[] InputIds { get; }

    /// <summary>Targets (B·T), row-major: position t of a row is scored against <c>Labels[t]</c>; <see cref="IgnoreIndex"/> = not scored.</summary>
    public int[] Labels { get; }

    /// <summary>Optional document index per token (B·T, row-major; null: each row is one document). A document begins
    /// wherever the id changes within a row.</summary>
    public int[]? DocumentIds { get; }

    /// <summary>B·T.</summary>
    public int TokenCount => InputIds.Length;

    /// <summary>
    /// Ulysses shards of a row that the ranks do not divide: padding positions per row of the whole padded sequence
    /// (on every rank's shard, wherever the padding sits), left out of a step's token count. 0 otherwise.
    /// </summary>
    public int PaddedPositions { get; init; }

    /// <summary>A batch whose labels are <paramref name="inputIds"/> shifted left by one per row, with
    /// <see cref="IgnoreIndex"/> at the end of each row (next-token prediction).</summary>
    public static TokenBatch FromInputIds(int batchSize, int seqLen, int[] inputIds, int[]? documentIds = null)
    {
        ArgumentNullException.ThrowIfNull(inputIds);
        return new TokenBatch(batchSize, seqLen, inputIds, ShiftedLabels(inputIds, documentIds, batchSize, seqLen), documentIds);
    }

    /// <summary>Reads a token file (see <c>docs/formats.md</c>).</summary>
    /// <remarks>Accepts <c>"input_ids"</c> as a list of rows or as one flat list (one row); <c>"labels"</c>, when
    /// present, must have the same shape. Other top-level keys (e.g. <c>attention_mask</c>) are ignored. Ids are not
    /// range-checked here: call <see cref="Validate"/> with the model's vocabulary size.</remarks>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="InvalidDataException">Malformed JSON, ragged rows, non-integer ids, or labels of another shape;
    /// the message names the file and, where it applies, the row and column.</exception>
    public static TokenBatch Load(string path)
    {
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"{path}: token file not found.", path);
        }

        byte[] bytes = File.ReadAllBytes(path);
        var inputIds = new List<int>();
        var labels = new List<int>();
        var documents = new List<int>();
        (int Rows, int Cols)? inputShape = null, labelShape = null, documentShape = null;
        try
        {
            ReadOnlySpan<byte> json = bytes;
            if (json.StartsWith(Encoding.UTF8.Preamble))
            {
                json = json[Encoding.UTF8.Preamble.Length..];
            }

            var reader = new Utf8JsonReader(json, new JsonReaderOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
            {
                Throw.InvalidData(path, "the file is not a JSON object", FormatHint);
            }

            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                string key = reader.GetString()!;
                reader.Read();
                if (key == "input_ids" || key == "labels")
                {
                    if ((key == "input_ids" ? inputShape : labelShape) is not null)
                    {
                        Throw.InvalidData(path, $"\"{key}\" appears twice", FormatHint);
                    }

                    (int, int) shape = ReadMatrix(ref reader, path, key, key == "input_ids" ? inputIds : labels);
                    if (key == "input_ids")
                    {
                        inputShape = shape;
                    }
                    else
                    {
                        labelShape = shape;
                    }
                }
                else
                {
                    if (key == "document_ids")
                    {
                        if (documentShape is not null)
                        {
                            Throw.InvalidData(path, "\"document_ids\" appears twice", FormatHint);
                        }

                        documentShape = ReadMatrix(ref reader, path, key, documents);
                        continue;
                    }

                    reader.Skip();
                }
            }

            // Anything after the closing brace makes the reader throw (a JSON file holds one value).
            while (reader.Read())
            {
            }
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: not valid JSON ({e.Message}). {FormatHint}", e);
        }

        if (inputShape is not (int rows, int cols))
        {
            Throw.InvalidData(path, "has no \"input_ids\"", FormatHint);
            return null!;
        }

        if (documentShape is not null && documentShape != inputShape)
        {
            Throw.InvalidData(path,
                $"document_ids are {documentShape.Value.Rows} × {documentShape.Value.Cols} but input_ids are {rows} × {cols}",
                "document_ids must have the same shape as input_ids: one document index per token.");
        }

        int[]? documentIds = documentShape is null ? null : documents.ToArray();
        if (labelShape is null)
        {
            return FromInputIds(rows, cols, inputIds.ToArray(), documentIds);
        }

        if (labelShape != inputShape)
        {
            Throw.InvalidData(path,
                $"labels are {labelShape.Value.Rows} × {labelShape.Value.Cols} but input_ids are {rows} × {cols}",
                "labels must have the same shape as input_ids: labels[t] is the target of position t (already shifted); use -100 where nothing is scored.");
        }

        return new TokenBatch(rows, cols, inputIds.ToArray(), labels.ToArray(), documentIds);
    }

    /// <summary>Checks that every token id is in [0, <paramref name="vocabSize"/>) and every label in that range or
    /// <see cref="IgnoreIndex"/>.</summary>
    /// <param name="vocabSize">V of the model.</param>
    /// <param name="source">What to name in messages (usually the file path).</param>
    /// <exception cref="InvalidDataException">The first offending value, with its row and column.</exception>
    public void Validate(int vocabSize, string source)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(vocabSize);
        for (int i = 0; i < InputIds.Length; i++)
        {
            int id = InputIds[i];
            if ((uint)id >= (uint)vocabSize)
            {
                Throw.InvalidData(source,
                    $"input_ids row {i / SeqLen}, column {i % SeqLen} is {id}, outside the vocabulary [0, {vocabSize})",
                    "Tokenize with the model's own tokenizer, or use a config.json whose vocab_size covers these ids.");
            }
        }

        for (int i = 0; i < Labels.Length; i++)
        {
            int label = Labels[i];
            if (label != IgnoreIndex && (uint)label >= (uint)vocabSize)
            {
                Throw.InvalidData(source,
                    $"labels row {i / SeqLen}, column {i % SeqLen} is {label}, outside the vocabulary [0, {vocabSize}) and not {IgnoreIndex}",
                    $"Labels must be token ids of the model's vocabulary, or {IgnoreIndex} for positions that are not scored.");
            }
        }
    }

    /// <summary>Writes the batch as a token file with explicit labels (replacing <paramref name="path"/> atomically).</summary>
    public void Save(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        string full = Path.GetFullPath(path);
        string temp = full + $".tmp-{Guid.NewGuid():N}";
        try
        {
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
            {
                using (var json = new Utf8JsonWriter(stream))
                {
                    json.WriteStartObject();
                    WriteMatrix(json, "input_ids", InputIds);
                    WriteMatrix(json, "labels", Labels);
                    if (DocumentIds is not null)
                    {
                        WriteMatrix(json, "document_ids", DocumentIds);
                    }

                    json.WriteEndObject();
                }

                stream.WriteByte((byte)'\n');
                stream.Flush(flushToDisk: true);
            }

            File.Move(temp, full, overwrite: true);
        }
        catch
        {
            File.Delete(temp);
            throw;
        }
    }

    /// <summary>Rows [<paramref name="firstRow"/>, <paramref name="firstRow"/> + <paramref name="rowCount"/>) as a new batch (copied), e.g. a micro-batch.</summary>
    public TokenBatch Slice(int firstRow, int rowCount)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(firstRow);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(rowCount);
        if (firstRow + (long)rowCount > BatchSize)
        {
            throw new ArgumentOutOfRangeException(nameof(rowCount), $"Rows [{firstRow}, {firstRow + rowCount}) are outside a batch of {BatchSize} rows.");
        }

        int start = firstRow * SeqLen, count = rowCount * SeqLen;
        return new TokenBatch(rowCount, SeqLen, InputIds.AsSpan(start, count).ToArray(), Labels.AsSpan(start, count).ToArray(), DocumentIds?.AsSpan(start, count).ToArray());
    }

    /// <summary>Number of scored positions (labels other than <see cref="IgnoreIndex"/>).</summary>
    public int CountValidLabels()
    {
        int count = 0;
        foreach (int label in Labels)
        {
            if (label != IgnoreIndex)
            {
                count++;
            }
        }

        return count;
    }

    private static int[] ShiftedLabels(int[] inputIds, int[]? documentIds, int batchSize, int seqLen)
    {
        var labels = new int[inputIds.Length];
        for (int b = 0; b < batchSize; b++)
        {
            int row = b * seqLen;
            Array.Copy(inputIds, row + 1, labels, row, seqLen - 1);
            labels[row + seqLen - 1] = IgnoreIndex;
            if (documentIds is not null)
            {
                // The last token of a document would be scored against the next document's first: nothing to learn.
                for (int t = row; t < row + seqLen - 1; t++)
                {
                    if (documentIds[t + 1] != documentIds[t])
                    {
                        labels[t] = IgnoreIndex;
                    }
                }
            }
        }

        return labels;
    }

    /// <summary>Reads a list of rows, or one flat list as a single row, appending to <paramref name="values"/>.</summary>
    private static (int Rows, int Cols) ReadMatrix(ref Utf8JsonReader reader, string path, string key, List<int> values)
    {
        if (reader.TokenType != JsonTokenType.StartArray)
        {
            Throw.InvalidData(path, $"\"{key}\" is a JSON {reader.TokenType}, not a list", FormatHint);
        }

        reader.Read();
        if (reader.TokenType == JsonTokenType.EndArray)
        {
            Throw.InvalidData(path, $"\"{key}\" is empty", "Give at least one row with at least one token.");
        }

        if (reader.TokenType != JsonTokenType.StartArray)
        {
            // One flat list: a single row.
            int flat = ReadRow(ref reader, path, key, 0, values);
            return (1, flat);
        }

        int rows = 0, cols = 0;
        while (reader.TokenType == JsonTokenType.StartArray)
        {
            reader.Read();
            int length = ReadRow(ref reader, path, key, rows, values);
            if (rows == 0)
            {
                cols = length;
            }
            else if (length != cols)
            {
                Throw.InvalidData(path, $"\"{key}\" row {rows} has {length} tokens but row 0 has {cols}",
                    $"All rows must have the same length: pad short rows (with any valid token id) and set their labels to {IgnoreIndex} so the padding is not scored.");
            }

            rows++;
            reader.Read();
        }

        if (reader.TokenType != JsonTokenType.EndArray)
        {
            Throw.InvalidData(path, $"\"{key}\" row {rows} is a JSON {reader.TokenType}, not a list of token ids", FormatHint);
        }

        return (rows, cols);
    }

    /// <summary>Reads integers up to the row's closing bracket (the reader starts on the first element and ends on
    /// the EndArray); returns the count.</summary>
    private static int ReadRow(ref Utf8JsonReader reader, string path, string key, int row, List<int> values)
    {
        int column = 0;
        while (reader.TokenType != JsonTokenType.EndArray)
        {
            if (reader.TokenType != JsonTokenType.Number || !reader.TryGetInt32(out int value))
            {
                string text = reader.TokenType is JsonTokenType.Number or JsonTokenType.String
                    ? Encoding.UTF8.GetString(reader.ValueSpan) // whole-buffer reader: never a ValueSequence
                    : reader.TokenType.ToString();
                Throw.InvalidData(path, $"\"{key}\" row {row}, column {column} is {text}, not an integer token id", FormatHint);
                return 0;
            }

            values.Add(value);
            column++;
            reader.Read();
        }

        if (column == 0)
        {
            Throw.InvalidData(path, $"\"{key}\" row {row} is empty", "Give every row at least one token.");
        }

        return column;
    }

    private void WriteMatrix(Utf8JsonWriter json, string key, int[] values)
    {
        json.WriteStartArray(key);
        for (int b = 0; b < BatchSize; b++)
        {
            json.WriteStartArray();
            foreach (int v in values.AsSpan(b * SeqLen, SeqLen))
            {
                json.WriteNumberValue(v);
            }

            json.WriteEndArray();
        }

        json.WriteEndArray();
    }
}
