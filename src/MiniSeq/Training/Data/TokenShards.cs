// Pre-tokenized inputs of the corpus: llm.c .bin shards (a 256 × int32 header, then the tokens) and headerless token
// arrays (.u16, .u32, or .bin with a given dtype). uint32 tokens are memory-mapped and used in place; uint16 tokens are
// widened once into native memory (4 bytes a token). Every id is checked against the vocabulary, then the stream is cut
// into documents after each separator token.
// The llm.c header, as karpathy/llm.c dev/data/data_common.py writes it (HEADERS_INFO) and llmc/dataloader.h reads it:
//   header[0] magic: 20240520 (GPT-2, version 1, uint16 tokens) or 20240801 (Llama 3, version 7, uint32 tokens)
//   header[1] version, header[2] token count; header[3..255] zero; the file is exactly 1024 + count × token size bytes.
// Deliberately not: writing shards, or the llm.c eval format (magic 20240522).
using MiniSeq.Diagnostics;

namespace MiniSeq.Training.Data;

/// <summary>Reading token shards into corpus parts.</summary>
internal static unsafe class TokenShards
{
    /// <summary>The llm.c header: 256 int32.</summary>
    public const int HeaderBytes = 256 * sizeof(int);

    /// <summary>llm.c GPT-2 shards (version 1, uint16 tokens).</summary>
    public const int MagicGpt2 = 20240520;

    /// <summary>llm.c Llama 3 shards (version 7, uint32 tokens).</summary>
    public const int MagicLlama3 = 20240801;

    /// <summary>The longest document a part holds: a longer run without a separator is cut into pieces of this many
    /// tokens (a document is a span, and a mask for it a managed array).</summary>
    public const long MaxDocumentTokens = 0x7FFFFFC7; // Array.MaxLength

    private const long Chunk = 1 << 30; // tokens per span when scanning (span lengths are int)

    /// <summary>What a shard holds: its kind, token type, where tokens start and how many there are.</summary>
    internal readonly record struct Layout(CorpusSourceKind Kind, TokenDtype Dtype, long DataOffset, long TokenCount);

    /// <summary>Reads the layout from the file's size and first bytes; every inconsistency is a one-line error.</summary>
    internal static Layout Inspect(string path, long fileBytes, ReadOnlySpan<byte> head, TokenDtype? rawDtype)
    {
        string extension = Path.GetExtension(path).ToLowerInvariant();
        if (extension == ".bin" && head.Length >= 12)
        {
            int magic = BitConverter.ToInt32(head), version = BitConverter.ToInt32(head[4..]), count = BitConverter.ToInt32(head[8..]);
            TokenDtype? dtype = (magic, version) switch
            {
                (MagicGpt2, 1) => TokenDtype.UInt16,
                (MagicLlama3, 7) => TokenDtype.UInt32,
                _ => null,
            };
            if (dtype is null && magic is MagicGpt2 or MagicLlama3)
            {
                Throw.InvalidData(path, $"llm.c shard magic {magic} with unknown version {version}",
                    "llm.c shards are version 1 (magic 20240520, uint16 tokens) or version 7 (magic 20240801, uint32 tokens); re-run the llm.c data preparation");
            }

            if (dtype is TokenDtype known)
            {
                int size = Size(known);
                if (count < 0 || fileBytes < HeaderBytes)
                {
                    Throw.InvalidData(path, $"truncated shard: the llm.c header is cut short or has a token count of {count}", "Copy or regenerate the shard");
                }

                long expected = checked(HeaderBytes + (long)count * size);
                if (fileBytes != expected)
                {
                    Throw.InvalidData(path,
                        fileBytes < expected
                            ? $"truncated shard: the header says {count} {Name(known)} tokens ({expected} bytes with the header) but the file has {fileBytes} bytes"
                            : $"the header says {count} {Name(known)} tokens ({expected} bytes with the header) but the file has {fileBytes} bytes (trailing data)",
                        "Copy or regenerate the shard");
                }

                return new Layout(CorpusSourceKind.LlmcShard, known, HeaderBytes, count);
            }
        }

        TokenDtype raw = extension switch
        {
            ".u16" => TokenDtype.UInt16,
            ".u32" => TokenDtype.UInt32,
            _ => rawDtype ?? NoDtype(path),
        };
        return new Layout(CorpusSourceKind.RawTokens, raw, 0, TokenCount(path, fileBytes, Size(raw)));
    }

    /// <summary>Tokens in a headerless file of <paramref name="payloadBytes"/> bytes; not a whole number → "truncated shard".</summary>
    internal static long TokenCount(string path, long payloadBytes, int tokenSize)
    {
        if (payloadBytes % tokenSize != 0)
        {
            Throw.InvalidData(path, $"truncated shard: {payloadBytes} bytes is not a whole number of {tokenSize}-byte tokens",
                "Copy or regenerate the file, or check --token-dtype");
        }

        return payloadBytes / tokenSize;
    }

    private static TokenDtype NoDtype(string path)
    {
        Throw.InvalidData(path, "a .bin file without an llm.c header (magic 20240520 or 20240801): its token type is unknown",
            "Pass --token-dtype uint16|uint32 for a headerless token file, or name it .u16/.u32");
        return default;
    }

    public static int Size(TokenDtype dtype) => dtype == TokenDtype.UInt16 ? sizeof(ushort) : sizeof(uint);

    private static string Name(TokenDtype dtype) => dtype == TokenDtype.UInt16 ? "uint16" : "uint32";

    /// <summary>Maps, validates and splits a shard.</summary>
    public static CorpusPart Load(string path, TokenDtype? rawDtype, int vocabSize, int? separator, out CorpusSourceKind kind)
    {
        MappedFile mapping = MappedFile.Open(path);
        var offsets = new NativeList<long>();
        int* widened = null;
        try
        {
            var head = new ReadOnlySpan<byte>(mapping.Pointer, (int)Math.Min(mapping.Length, HeaderBytes));
            Layout layout = Inspect(path, mapping.Length, head, rawDtype);
            kind = layout.Kind;
            long count = layout.TokenCount;
            byte* data = mapping.Pointer + layout.DataOffset;
            int* tokens;
            if (layout.Dtype == TokenDtype.UInt32)
            {
                CheckVocabulary(path, (uint*)data, count, vocabSize);
                tokens = (int*)data; // every id < vocabSize ≤ int.MaxValue: the same bits as int32
            }
            else
            {
                CheckVocabulary(path, (ushort*)data, count, vocabSize);
                widened = (int*)System.Runtime.InteropServices.NativeMemory.Alloc((nuint)Math.Max(1, count), sizeof(int));
                Widen((ushort*)data, widened, count);
                tokens = widened;
            }

            Split(tokens, count, separator, MaxDocumentTokens, offsets);
            long documents = offsets.Count - 1;
            long* o = offsets.Detach();
            CorpusPart part = CorpusPart.Create(documents, count, o, tokens, null,
                layout.Dtype == TokenDtype.UInt32 ? mapping : null, [(IntPtr)o, (IntPtr)widened]);
            if (layout.Dtype == TokenDtype.UInt16)
            {
                mapping.Dispose(); // widened: the file is no longer needed
            }

            return part;
        }
        catch
        {
            System.Runtime.InteropServices.NativeMemory.Free(widened);
            mapping.Dispose();
            throw;
        }
        finally
        {
            offsets.Dispose();
        }
    }

    private static void CheckVocabulary(string path, uint* tokens, long count, int vocabSize)
    {
        for (long done = 0; done < count; done += Chunk)
        {
            var span = new ReadOnlySpan<uint>(tokens + done, (int)Math.Min(Chunk, count - done));
            int bad = span.IndexOfAnyInRange((uint)vocabSize, uint.MaxValue);
            if (bad >= 0)
            {
                VocabularyMismatch(path, done + bad, span[bad], vocabSize);
            }
        }
    }

    private static void CheckVocabulary(string path, ushort* tokens, long count, int vocabSize)
    {
        if (vocabSize > ushort.MaxValue)
        {
            return;
        }

        for (long done = 0; done < count; done += Chunk)
        {
            var span = new ReadOnlySpan<ushort>(tokens + done, (int)Math.Min(Chunk, count - done));
            int bad = span.IndexOfAnyInRange((ushort)vocabSize, ushort.MaxValue);
            if (bad >= 0)
            {
                VocabularyMismatch(path, done + bad, span[bad], vocabSize);
            }
        }
    }

    private static void VocabularyMismatch(string path, long index, uint id, int vocabSize)
        => Throw.InvalidData(path,
            $"vocabulary mismatch: token {index} is {id}, outside the model's vocabulary [0, {vocabSize})",
            "The shard was made with another tokenizer: use the model's tokenizer to make the shards (or check --token-dtype)");

    private static void Widen(ushort* source, int* destination, long count)
    {
        for (long i = 0; i < count; i++)
        {
            destination[i] = source[i];
        }
    }

    /// <summary>Appends document offsets for <paramref name="count"/> tokens to <paramref name="offsets"/>: 0, then the
    /// end of each document. A document ends after each <paramref name="separator"/> (kept as its last token), at the end
    /// of the stream, and after <paramref name="maxDocumentTokens"/> tokens without a separator.</summary>
    internal static void Split(int* tokens, long count, int? separator, long maxDocumentTokens, NativeList<long> offsets)
    {
        offsets.Add(0);
        long start = 0, position = 0;
        while (position < count && separator is int sep)
        {
            var span = new ReadOnlySpan<int>(tokens + position, (int)Math.Min(Chunk, count - position));
            int found = span.IndexOf(sep);
            if (found < 0)
            {
                position += span.Length;
                continue;
            }

            position += found + 1;
            End(position);
        }

        if (start < count)
        {
            End(count);
        }

        void End(long end)
        {
            while (end - start > maxDocumentTokens)
            {
                start += maxDocumentTokens;
                offsets.Add(start);
            }

            offsets.Add(end);
            start = end;
        }
    }
}
