// Text inputs of the corpus: .txt files (one document, or blank-line-separated documents) and .jsonl files (a "text"
// string or chat "messages" per line), read as a stream of UTF-8 lines (never the whole of a large file at once),
// validated (invalid UTF-8 → its byte offset; a bad JSON line → its 1-based line number), then tokenized in parallel
// batches whose results are appended in input order, so the corpus is the same whatever the thread count.
// Deliberately not: rendering chat templates (CorpusOptions.RenderChat), caching (CorpusCache).
using System.Buffers;
using System.Text;
using System.Text.Json;
using System.Text.Unicode;
using MiniSeq.Diagnostics;
using MiniSeq.IO;
using MiniSeq.Text;

namespace MiniSeq.Training.Data;

/// <summary>One document before tokenization: its 1-based line (jsonl) or 0, and text or chat messages.</summary>
internal readonly record struct RawDocument(long Line, string? Text, IReadOnlyList<(string Role, string Content)>? Messages);

/// <summary>Reads a stream as lines of bytes (without the '\n'; a '\r' before it is kept), hashing every byte read
/// with FNV-1a on the way (the token cache's content hash, for free).</summary>
internal sealed class ByteLineReader(Stream stream)
{
    private byte[] _buffer = new byte[1 << 20];
    private int _start, _end;
    private long _bufferOffset;
    private bool _eof, _first = true;

    /// <summary>1-based number of the line last returned.</summary>
    public long LineNumber { get; private set; }

    /// <summary>File offset of the first byte of the line last returned.</summary>
    public long LineOffset { get; private set; }

    /// <summary>Bytes read from the stream so far.</summary>
    public long BytesRead { get; private set; }

    /// <summary>FNV-1a 64 of the bytes read so far (of the whole stream once <see cref="ReadLine"/> returned false).</summary>
    public ulong Hash { get; private set; } = Fnv1a.Offset;

    /// <summary>The next line (valid until the next call), a UTF-8 BOM at the start of the stream stripped.</summary>
    public bool ReadLine(out ReadOnlySpan<byte> line)
    {
        while (true)
        {
            if (_first && (_end - _start >= 3 || _eof))
            {
                _first = false;
                if (_buffer.AsSpan(_start, _end - _start).StartsWith(Encoding.UTF8.Preamble))
                {
                    _start += 3;
                }
            }

            if (!_first)
            {
                int newline = _buffer.AsSpan(_start, _end - _start).IndexOf((byte)'\n');
                if (newline >= 0 || (_eof && _start < _end))
                {
                    int length = newline >= 0 ? newline : _end - _start;
                    line = _buffer.AsSpan(_start, length);
                    LineOffset = _bufferOffset + _start;
                    LineNumber++;
                    _start += newline >= 0 ? length + 1 : length;
                    return true;
                }

                if (_eof)
                {
                    line = default;
                    return false;
                }
            }

            Fill();
        }
    }

    private void Fill()
    {
        if (_start > 0)
        {
            _buffer.AsSpan(_start, _end - _start).CopyTo(_buffer);
            _bufferOffset += _start;
            _end -= _start;
            _start = 0;
        }

        if (_end == _buffer.Length)
        {
            if (_buffer.Length >= Array.MaxLength / 2)
            {
                throw new InvalidDataException($"a line longer than {_buffer.Length} bytes");
            }

            Array.Resize(ref _buffer, _buffer.Length * 2);
        }

        int read = stream.Read(_buffer, _end, _buffer.Length - _end);
        if (read == 0)
        {
            _eof = true;
            return;
        }

        Hash = Fnv1a.Append(Hash, _buffer.AsSpan(_end, read));
        _end += read;
        BytesRead += read;
    }
}

/// <summary>Reading and tokenizing <c>.txt</c> and <c>.jsonl</c> files.</summary>
internal static class TextDocuments
{
    private const string JsonlHint = "Each line must be a JSON object with a \"text\" string, or a \"messages\" list of {\"role\": ..., \"content\": ...}";

    /// <summary>A whole <c>.txt</c> file is one document; it must fit in one string.</summary>
    public const long MaxWholeFileBytes = 1L << 30;

    /// <summary>Tokenizes a <c>.txt</c> or <c>.jsonl</c> file into a part, returning also the FNV-1a of its bytes.</summary>
    public static CorpusPart Load(string path, CorpusSourceKind kind, DocumentTokenizer tokenizer, CorpusOptions options, IProgress<CorpusProgress>? progress, out ulong contentHash)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1);
        long total = stream.Length;
        var reader = new ByteLineReader(stream);
        IEnumerable<RawDocument> documents = kind == CorpusSourceKind.JsonLines
            ? ReadJsonLines(path, reader, options.RenderChat is not null)
            : options.SplitOnBlankLines ? ReadBlocks(path, reader) : ReadWhole(path, reader, total);

        var offsets = new NativeList<long>();
        var tokens = new NativeList<int>();
        NativeList<byte>? mask = null;
        try
        {
            offsets.Add(0);
            var batch = new List<RawDocument>();
            long batchChars = 0;
            var parallel = new ParallelOptions { MaxDegreeOfParallelism = options.MaxDegreeOfParallelism ?? Environment.ProcessorCount };
            void Flush()
            {
                AppendBatch(path, batch, tokenizer, parallel, offsets, tokens, ref mask);
                batch.Clear();
                batchChars = 0;
                progress?.Report(new CorpusProgress(path, reader.BytesRead, total, offsets.Count - 1, tokens.Count));
            }

            foreach (RawDocument document in documents)
            {
                batch.Add(document);
                batchChars += document.Text?.Length ?? document.Messages!.Sum(m => m.Content.Length);
                if (batch.Count >= 4096 || batchChars >= 4 << 20)
                {
                    Flush();
                }
            }

            Flush();
            contentHash = reader.Hash;
            return CorpusPart.FromLists(offsets, tokens, mask);
        }
        finally
        {
            offsets.Dispose();
            tokens.Dispose();
            mask?.Dispose();
        }
    }

    // Tokenizes the batch on all threads, each result in its own slot, then appends them in order; the first failing
    // document (lowest index, so the same error whatever the scheduling) is rethrown.
    private static void AppendBatch(string path, List<RawDocument> batch, DocumentTokenizer tokenizer, ParallelOptions parallel,
        NativeList<long> offsets, NativeList<int> tokens, ref NativeList<byte>? mask)
    {
        var results = new (int[] Tokens, byte[]? Mask)[batch.Count];
        var errors = new Exception?[batch.Count];
        if (batch.Count == 1 || parallel.MaxDegreeOfParallelism == 1)
        {
            for (int i = 0; i < batch.Count; i++)
            {
                results[i] = tokenizer.Tokenize(path, batch[i]);
            }
        }
        else
        {
            Parallel.For(0, batch.Count, parallel, i =>
            {
                try
                {
                    results[i] = tokenizer.Tokenize(path, batch[i]);
                }
                catch (Exception e)
                {
                    errors[i] = e;
                }
            });
            if (Array.Find(errors, e => e is not null) is Exception first)
            {
                System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(first);
            }
        }

        foreach ((int[] ids, byte[]? trainable) in results)
        {
            if (ids.Length == 0)
            {
                continue; // nothing to train on (empty text, no special tokens)
            }

            if (trainable is not null && mask is null)
            {
                // The first chat document of the file: every token before it is trainable.
                mask = new NativeList<byte>(tokens.Count + ids.Length);
                mask.AddRepeated(1, tokens.Count);
            }

            tokens.AddRange(ids);
            if (mask is not null)
            {
                if (trainable is null)
                {
                    mask.AddRepeated(1, ids.Length);
                }
                else
                {
                    mask.AddRange(trainable);
                }
            }

            offsets.Add(tokens.Count);
        }
    }

    /// <summary>The whole file as one document (its text exactly, BOM stripped).</summary>
    private static IEnumerable<RawDocument> ReadWhole(string path, ByteLineReader reader, long total)
    {
        if (total > MaxWholeFileBytes)
        {
            Throw.InvalidData(path, $"a {total}-byte .txt file is one document, larger than the {MaxWholeFileBytes} bytes one document may have",
                "Split it into documents at blank lines (--split-on-blank-lines), or convert it to .jsonl");
        }

        var bytes = new List<byte>(checked((int)total));
        long firstOffset = -1;
        while (reader.ReadLine(out ReadOnlySpan<byte> line))
        {
            if (firstOffset < 0)
            {
                firstOffset = reader.LineOffset;
            }

            CheckUtf8(path, line, reader.LineOffset, 0);
            bytes.AddRange(line);
            if (reader.LineOffset + line.Length < reader.BytesRead)
            {
                bytes.Add((byte)'\n'); // the line ended with one (the last line of a file may not)
            }
        }

        if (bytes.Count > 0)
        {
            yield return new RawDocument(0, Encoding.UTF8.GetString(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(bytes)), null);
        }
    }

    /// <summary>Documents separated by one or more blank lines (empty, or just '\r'); each without its final line break.</summary>
    private static IEnumerable<RawDocument> ReadBlocks(string path, ByteLineReader reader)
    {
        var bytes = new List<byte>();
        while (true)
        {
            bool more = reader.ReadLine(out ReadOnlySpan<byte> line);
            bool blank = more && (line.IsEmpty || (line.Length == 1 && line[0] == (byte)'\r'));
            if (more && !blank)
            {
                CheckUtf8(path, line, reader.LineOffset, 0);
                if (bytes.Count > 0)
                {
                    bytes.Add((byte)'\n');
                }

                bytes.AddRange(line);
                continue;
            }

            if (bytes.Count > 0)
            {
                ReadOnlySpan<byte> text = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(bytes);
                if (text[^1] == (byte)'\r')
                {
                    text = text[..^1];
                }

                yield return new RawDocument(0, Encoding.UTF8.GetString(text), null);
                bytes.Clear();
            }

            if (!more)
            {
                yield break;
            }
        }
    }

    private static IEnumerable<RawDocument> ReadJsonLines(string path, ByteLineReader reader, bool canRenderChat)
    {
        while (reader.ReadLine(out ReadOnlySpan<byte> line))
        {
            if (line.Trim(" \t\r"u8).IsEmpty)
            {
                continue;
            }

            CheckUtf8(path, line, reader.LineOffset, reader.LineNumber);
            RawDocument document = ParseJsonLine(path, reader.LineNumber, line);
            if (document.Messages is not null && !canRenderChat)
            {
                Throw.InvalidLine(path, reader.LineNumber, "chat messages need a tokenizer with a chat_template (tokenizer_config.json)",
                    "Give a tokenizer directory whose tokenizer_config.json has a chat_template, or write the line as {\"text\": ...}");
            }

            yield return document;
        }
    }

    /// <summary>One jsonl line: <c>{"text": "..."}</c> or <c>{"messages": [{"role": "...", "content": "..."}, ...]}</c>;
    /// other keys are ignored.</summary>
    internal static RawDocument ParseJsonLine(string path, long lineNumber, ReadOnlySpan<byte> line)
    {
        string? text = null;
        List<(string, string)>? messages = null;
        try
        {
            var reader = new Utf8JsonReader(line);
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
            {
                Throw.InvalidLine(path, lineNumber, $"a JSON {reader.TokenType}, not an object", JsonlHint);
            }

            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                bool isText = reader.ValueTextEquals("text"u8), isMessages = reader.ValueTextEquals("messages"u8);
                reader.Read();
                if (isText)
                {
                    if (reader.TokenType != JsonTokenType.String)
                    {
                        Throw.InvalidLine(path, lineNumber, $"\"text\" is a JSON {reader.TokenType}, not a string", JsonlHint);
                    }

                    text = reader.GetString();
                }
                else if (isMessages)
                {
                    messages = ReadMessages(path, lineNumber, ref reader);
                }
                else
                {
                    reader.Skip();
                }
            }

            while (reader.Read())
            {
                // Anything after the object makes the reader throw.
            }
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path} line {lineNumber}: not valid JSON ({e.Message}). {JsonlHint}.", e);
        }

        if (text is not null && messages is not null)
        {
            Throw.InvalidLine(path, lineNumber, "has both \"text\" and \"messages\"", "Give one of them per line");
        }

        if (text is null && messages is null)
        {
            Throw.InvalidLine(path, lineNumber, "has neither a \"text\" string nor a \"messages\" list", JsonlHint);
        }

        return new RawDocument(lineNumber, text, messages);
    }

    private static List<(string, string)> ReadMessages(string path, long lineNumber, ref Utf8JsonReader reader)
    {
        if (reader.TokenType != JsonTokenType.StartArray)
        {
            Throw.InvalidLine(path, lineNumber, $"\"messages\" is a JSON {reader.TokenType}, not a list", JsonlHint);
        }

        var messages = new List<(string, string)>();
        while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
        {
            if (reader.TokenType != JsonTokenType.StartObject)
            {
                Throw.InvalidLine(path, lineNumber, $"messages[{messages.Count}] is a JSON {reader.TokenType}, not an object", JsonlHint);
            }

            string? role = null, content = null;
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                bool isRole = reader.ValueTextEquals("role"u8), isContent = reader.ValueTextEquals("content"u8);
                reader.Read();
                if ((isRole || isContent) && reader.TokenType != JsonTokenType.String)
                {
                    Throw.InvalidLine(path, lineNumber, $"messages[{messages.Count}].{(isRole ? "role" : "content")} is a JSON {reader.TokenType}, not a string", JsonlHint);
                }

                if (isRole)
                {
                    role = reader.GetString();
                }
                else if (isContent)
                {
                    content = reader.GetString();
                }
                else
                {
                    reader.Skip();
                }
            }

            if (role is null || content is null)
            {
                Throw.InvalidLine(path, lineNumber, $"messages[{messages.Count}] has no \"{(role is null ? "role" : "content")}\" string", JsonlHint);
            }

            messages.Add((role, content));
        }

        return messages;
    }

    /// <summary>Throws naming the byte offset (in the file) of the first invalid UTF-8 sequence, if any.</summary>
    internal static void CheckUtf8(string path, ReadOnlySpan<byte> bytes, long fileOffset, long lineNumber)
    {
        if (Utf8.IsValid(bytes))
        {
            return;
        }

        long at = fileOffset + FirstInvalidUtf8(bytes);
        const string Hint = "Save the file as UTF-8 (e.g. iconv -f LATIN1 -t UTF-8), or remove the bytes";
        if (lineNumber > 0)
        {
            Throw.InvalidLine(path, lineNumber, $"invalid UTF-8 at byte offset {at}", Hint);
        }

        Throw.InvalidData(path, $"invalid UTF-8 at byte offset {at}", Hint);
    }

    /// <summary>Index of the first byte of the first invalid UTF-8 sequence (the span must hold one).</summary>
    internal static int FirstInvalidUtf8(ReadOnlySpan<byte> bytes)
    {
        Span<char> scratch = stackalloc char[1024];
        int done = 0;
        while (true)
        {
            OperationStatus status = Utf8.ToUtf16(bytes[done..], scratch, out int read, out _, replaceInvalidSequences: false, isFinalBlock: true);
            done += read;
            if (status != OperationStatus.DestinationTooSmall)
            {
                return done;
            }
        }
    }
}

/// <summary>Turns raw documents into token ids (and, for chat, a trainable mask), the same on every thread.</summary>
/// <remarks>
/// Text: <c>Encode(text, AddSpecialTokens)</c> — the post-processor's template wraps the whole document, exactly as
/// Hugging Face <c>tokenizer(text)</c> does — then EOS if <see cref="CorpusOptions.AppendEos"/> and not already last.
/// Chat: each rendered segment is encoded on its own without special tokens (so a mask boundary never falls inside a
/// token) and the segments concatenated; then the post-processor's prefix (e.g. BOS) is added once at the start unless
/// the rendered text already begins with it (chat templates usually render BOS themselves: Hugging Face
/// <c>apply_chat_template</c> encodes with <c>add_special_tokens=False</c> for that reason; adding it blindly would give
/// two BOS), its suffix once at the end likewise, and EOS as for text. Prefix tokens are never trainable; suffix and EOS
/// tokens take the flag of the last segment (so the model learns to stop after an assistant turn). Encoding segments
/// separately equals encoding their concatenation when segments meet at special tokens or whitespace, as chat templates
/// do for byte-level BPE (Llama 3, Qwen); a normalizer that prepends to every text (Llama 2's "▁") adds it per segment.
/// </remarks>
internal sealed class DocumentTokenizer
{
    private readonly Tokenizer _tokenizer;
    private readonly CorpusOptions _options;
    private readonly int[] _prefix = [], _suffix = [];

    public DocumentTokenizer(Tokenizer tokenizer, CorpusOptions options)
    {
        _tokenizer = tokenizer;
        _options = options;
        if (options.AddSpecialTokens)
        {
            // The post-processor only wraps the ids, so the probe's plain ids sit between its prefix and suffix.
            int[] plain = tokenizer.Encode("a", addSpecialTokens: false), wrapped = tokenizer.Encode("a", addSpecialTokens: true);
            int at = wrapped.AsSpan().IndexOf(plain);
            if (at >= 0)
            {
                _prefix = wrapped[..at];
                _suffix = wrapped[(at + plain.Length)..];
            }
            else
            {
                _prefix = tokenizer.Encode("", addSpecialTokens: true);
            }
        }
    }

    /// <summary>The post-processor's prefix and suffix ids (what <c>Encode(x, true)</c> adds around <c>Encode(x, false)</c>).</summary>
    public (int[] Prefix, int[] Suffix) SpecialTokens => (_prefix, _suffix);

    public (int[] Tokens, byte[]? Mask) Tokenize(string path, RawDocument document)
    {
        int? eos = _options.AppendEos ? _tokenizer.EosId : null;
        if (document.Text is not null)
        {
            int[] ids = _tokenizer.Encode(document.Text, _options.AddSpecialTokens);
            if (document.Text.Length == 0 && ids.Length == _prefix.Length + _suffix.Length)
            {
                return ([], null); // an empty document: nothing but special tokens
            }

            return (eos is int e && (ids.Length == 0 || ids[^1] != e) ? [.. ids, e] : ids, null);
        }

        IReadOnlyList<(string Text, bool Trainable)> segments;
        try
        {
            segments = _options.RenderChat!(document.Messages!);
        }
        catch (Exception e) when (e is not InvalidDataException)
        {
            throw new InvalidDataException($"{path} line {document.Line}: the chat template failed ({e.Message}). Check the messages' roles and order against the template.", e);
        }

        var tokens = new List<int>();
        var mask = new List<byte>();
        bool lastTrainable = false;
        foreach ((string text, bool trainable) in segments)
        {
            int[] ids = _tokenizer.Encode(text, addSpecialTokens: false);
            tokens.AddRange(ids);
            for (int i = 0; i < ids.Length; i++)
            {
                mask.Add(trainable ? (byte)1 : (byte)0);
            }

            lastTrainable = trainable;
        }

        if (tokens.Count == 0)
        {
            return ([], null);
        }

        byte last = lastTrainable ? (byte)1 : (byte)0;
        if (_prefix.Length > 0 && !StartsWith(tokens, _prefix))
        {
            tokens.InsertRange(0, _prefix);
            mask.InsertRange(0, new byte[_prefix.Length]);
        }

        if (_suffix.Length > 0 && !EndsWith(tokens, _suffix))
        {
            tokens.AddRange(_suffix);
            mask.AddRange(Enumerable.Repeat(last, _suffix.Length));
        }

        if (eos is int eosId && tokens[^1] != eosId)
        {
            tokens.Add(eosId);
            mask.Add(last);
        }

        return (tokens.ToArray(), mask.ToArray());
    }

    private static bool StartsWith(List<int> tokens, int[] prefix)
        => System.Runtime.InteropServices.CollectionsMarshal.AsSpan(tokens).StartsWith(prefix);

    private static bool EndsWith(List<int> tokens, int[] suffix)
        => System.Runtime.InteropServices.CollectionsMarshal.AsSpan(tokens).EndsWith(suffix);
}
