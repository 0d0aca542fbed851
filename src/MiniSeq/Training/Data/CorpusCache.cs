// The token cache of a text or jsonl file: tokenize once, then map the result on every later load. It lives next to
// its source as a hidden file, DIR/.NAME.miniseq-tokens, little-endian:
//   0  "MSQTOKNS"          8-byte magic          48 uint64 tokenizer fingerprint (Tokenizer.Fingerprint)
//   8  int32 version (1)                         56 uint64 options key (everything else that changes the tokens)
//   12 int32 flags (1: mask)                     64 int64 documents D
//   16 int64 source size                         72 int64 tokens N
//   24 int64 source last-write time (UTC ticks)  80 16 bytes reserved (0)
//   32 uint64 source FNV-1a 64                   96 int64 offsets[D + 1], int32 tokens[N], then (flag 1) byte mask[N]
//   40 int64 when the source was read (UTC ticks)
// It is valid when magic, version, fingerprint, options key and size match and the content is the same: taken as the
// same when the last-write time matches and the file had not been written for 2 s when it was read (else an equal
// write time could hide a same-second rewrite, as git's "racy" index entries), otherwise checked by hashing the source.
// Written to .NAME.miniseq-tokens.tmp-PID-ID in the same directory and renamed over the old cache, so readers and a
// killed run never see a partial file; temporaries of dead processes are deleted by the next load of the directory.
// A file at the cache path that does not start with the magic is not ours: it is never read as a cache, replaced or
// deleted.
// Deliberately not: caching token shards (they are mapped as they are), or a lock (two loaders both write; the last
// rename wins, and both caches are valid).
using System.Buffers.Binary;
using MiniSeq.IO;

namespace MiniSeq.Training.Data;

/// <summary>Reading, validating and writing <c>.NAME.miniseq-tokens</c> token caches.</summary>
internal static unsafe class CorpusCache
{
    public const string Suffix = ".miniseq-tokens";
    public const int Version = 1;
    public const int HeaderBytes = 96;
    private const int FlagMask = 1;
    private const string TempMarker = ".tmp-";
    private static readonly long s_racyTicks = TimeSpan.FromSeconds(2).Ticks;

    private static ReadOnlySpan<byte> Magic => "MSQTOKNS"u8;

    /// <summary>What identifies a source file's version cheaply: its size and last-write time.</summary>
    internal readonly record struct Stamp(long Size, long WriteTicks)
    {
        public static Stamp Of(string path)
        {
            var info = new FileInfo(path);
            return new Stamp(info.Length, info.LastWriteTimeUtc.Ticks);
        }
    }

    /// <summary>What besides the source decides the tokens: the tokenizer's fingerprint and the token options.</summary>
    internal readonly record struct Key(ulong Tokenizer, ulong Options);

    /// <summary>Who owns the file at a cache path.</summary>
    internal enum Owner
    {
        Missing,
        Ours,
        Foreign,
    }

    /// <summary>DIR/.NAME.miniseq-tokens for DIR/NAME.</summary>
    public static string PathFor(string source)
        => Path.Combine(Path.GetDirectoryName(Path.GetFullPath(source))!, "." + Path.GetFileName(source) + Suffix);

    /// <summary>Whether a file name is a cache or a cache temporary (skipped when a directory is expanded).</summary>
    public static bool IsCacheFileName(string name)
        => name.StartsWith('.') && (name.EndsWith(Suffix, StringComparison.Ordinal) || name.Contains(Suffix + TempMarker, StringComparison.Ordinal));

    // Layout (all checked: offsets and lengths are int64 byte counts of arbitrarily large corpora).
    internal static long TokensAt(long documents) => checked(HeaderBytes + ((documents + 1) * sizeof(long)));

    internal static long MaskAt(long documents, long tokens) => checked(TokensAt(documents) + (tokens * sizeof(int)));

    internal static long FileLength(long documents, long tokens, bool mask) => checked(MaskAt(documents, tokens) + (mask ? tokens : 0));

    /// <summary>Whether the file at <paramref name="cachePath"/> is absent, ours (starts with the magic), or anything else
    /// (including unreadable and directories).</summary>
    public static Owner Check(string cachePath)
    {
        if (!File.Exists(cachePath))
        {
            return Directory.Exists(cachePath) ? Owner.Foreign : Owner.Missing;
        }

        try
        {
            using var stream = new FileStream(cachePath, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, bufferSize: 1);
            Span<byte> head = stackalloc byte[8];
            return stream.ReadAtLeast(head, head.Length, throwOnEndOfStream: false) == head.Length && head.SequenceEqual(Magic) ? Owner.Ours : Owner.Foreign;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return Owner.Foreign;
        }
    }

    /// <summary>Maps a valid cache of the source as a part, or returns null (missing, stale, another tokenizer or
    /// options, malformed). <paramref name="hashSource"/> is called only when the write time cannot be trusted.</summary>
    public static CorpusPart? TryOpen(string cachePath, Stamp stamp, Key key, int vocabSize, Func<ulong> hashSource, out ulong contentHash)
    {
        contentHash = 0;
        MappedFile mapping;
        try
        {
            mapping = MappedFile.Open(cachePath);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }

        try
        {
            if (mapping.Length < HeaderBytes)
            {
                return Reject(mapping);
            }

            var header = new ReadOnlySpan<byte>(mapping.Pointer, HeaderBytes);
            int flags = BinaryPrimitives.ReadInt32LittleEndian(header[12..]);
            long size = BinaryPrimitives.ReadInt64LittleEndian(header[16..]), writeTicks = BinaryPrimitives.ReadInt64LittleEndian(header[24..]);
            ulong hash = BinaryPrimitives.ReadUInt64LittleEndian(header[32..]);
            long readTicks = BinaryPrimitives.ReadInt64LittleEndian(header[40..]);
            var cachedKey = new Key(BinaryPrimitives.ReadUInt64LittleEndian(header[48..]), BinaryPrimitives.ReadUInt64LittleEndian(header[56..]));
            long documents = BinaryPrimitives.ReadInt64LittleEndian(header[64..]), tokens = BinaryPrimitives.ReadInt64LittleEndian(header[72..]);
            if (!header[..8].SequenceEqual(Magic) || BinaryPrimitives.ReadInt32LittleEndian(header[8..]) != Version
                || cachedKey != key || size != stamp.Size || (flags & ~FlagMask) != 0)
            {
                return Reject(mapping);
            }

            bool trustWriteTime = writeTicks == stamp.WriteTicks && writeTicks <= readTicks - s_racyTicks;
            if (!trustWriteTime && hashSource() != hash)
            {
                return Reject(mapping);
            }

            bool hasMask = (flags & FlagMask) != 0;
            if (documents < 0 || tokens < 0 || documents > (mapping.Length - HeaderBytes) / sizeof(long)
                || tokens > mapping.Length / sizeof(int) || FileLength(documents, tokens, hasMask) != mapping.Length)
            {
                return Reject(mapping);
            }

            long* offsets = (long*)(mapping.Pointer + HeaderBytes);
            int* ids = (int*)(mapping.Pointer + TokensAt(documents));
            if (!OffsetsValid(offsets, documents, tokens) || !TokensValid(ids, tokens, vocabSize))
            {
                return Reject(mapping);
            }

            contentHash = hash;
            byte* mask = hasMask ? mapping.Pointer + MaskAt(documents, tokens) : null;
            return CorpusPart.Create(documents, tokens, offsets, ids, mask, mapping, []);
        }
        catch
        {
            mapping.Dispose();
            throw;
        }
    }

    private static CorpusPart? Reject(MappedFile mapping)
    {
        mapping.Dispose();
        return null;
    }

    // offsets[0] = 0, non-decreasing, offsets[D] = N, every document at most MaxDocumentTokens long.
    private static bool OffsetsValid(long* offsets, long documents, long tokens)
    {
        if (offsets[0] != 0 || offsets[documents] != tokens)
        {
            return false;
        }

        for (long d = 0; d < documents; d++)
        {
            long length = offsets[d + 1] - offsets[d];
            if (length < 0 || length > TokenShards.MaxDocumentTokens)
            {
                return false;
            }
        }

        return true;
    }

    private static bool TokensValid(int* tokens, long count, int vocabSize)
    {
        for (long done = 0; done < count; done += 1 << 30)
        {
            var span = new ReadOnlySpan<int>(tokens + done, (int)Math.Min(1 << 30, count - done));
            if (span.IndexOfAnyExceptInRange(0, vocabSize - 1) >= 0)
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>Writes <paramref name="part"/> as the cache of a source atomically; returns null, or a one-line warning
    /// when the directory cannot be written (the caller continues without a cache).</summary>
    public static string? Write(string cachePath, Stamp stamp, ulong contentHash, long readTicks, Key key, CorpusPart part)
    {
        string directory = Path.GetDirectoryName(cachePath)!;
        string temp = $"{cachePath}{TempMarker}{Environment.ProcessId}-{Guid.NewGuid().ToString("N")[..12]}";
        try
        {
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
            {
                Span<byte> header = stackalloc byte[HeaderBytes];
                header.Clear();
                Magic.CopyTo(header);
                BinaryPrimitives.WriteInt32LittleEndian(header[8..], Version);
                BinaryPrimitives.WriteInt32LittleEndian(header[12..], part.HasMask ? FlagMask : 0);
                BinaryPrimitives.WriteInt64LittleEndian(header[16..], stamp.Size);
                BinaryPrimitives.WriteInt64LittleEndian(header[24..], stamp.WriteTicks);
                BinaryPrimitives.WriteUInt64LittleEndian(header[32..], contentHash);
                BinaryPrimitives.WriteInt64LittleEndian(header[40..], readTicks);
                BinaryPrimitives.WriteUInt64LittleEndian(header[48..], key.Tokenizer);
                BinaryPrimitives.WriteUInt64LittleEndian(header[56..], key.Options);
                BinaryPrimitives.WriteInt64LittleEndian(header[64..], part.DocumentCount);
                BinaryPrimitives.WriteInt64LittleEndian(header[72..], part.TokenCount);
                stream.Write(header);
                WriteBytes(stream, (byte*)part.Offsets, checked((part.DocumentCount + 1) * sizeof(long)));
                WriteBytes(stream, (byte*)part.Tokens, checked(part.TokenCount * sizeof(int)));
                if (part.HasMask)
                {
                    WriteBytes(stream, part.MaskPointer, part.TokenCount);
                }

                stream.Flush(flushToDisk: true);
            }

            // A file that appeared meanwhile and is not ours is still never replaced.
            if (Check(cachePath) == Owner.Foreign)
            {
                File.Delete(temp);
                return $"{cachePath}: not a MiniSeq token cache; left untouched, the tokens are not cached";
            }

            File.Move(temp, cachePath, overwrite: true);
            return null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            try
            {
                File.Delete(temp);
            }
            catch (Exception cleanup) when (cleanup is IOException or UnauthorizedAccessException)
            {
            }

            return $"{directory}: cannot write the token cache ({e.Message}); continuing without it (tokenizing again on the next run)";
        }
    }

    private static void WriteBytes(Stream stream, byte* bytes, long length)
    {
        for (long done = 0; done < length;)
        {
            int chunk = (int)Math.Min(length - done, 1 << 30);
            stream.Write(new ReadOnlySpan<byte>(bytes + done, chunk));
            done += chunk;
        }
    }

    /// <summary>Deletes cache temporaries (<c>.NAME.miniseq-tokens.tmp-PID-ID</c>) in <paramref name="directory"/> whose
    /// writing process has exited.</summary>
    public static void RemoveStaleTemporaries(string directory)
    {
        IEnumerable<string> temporaries;
        try
        {
            temporaries = Directory.EnumerateFiles(directory, "." + "*" + Suffix + TempMarker + "*").ToArray();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return;
        }

        foreach (string temp in temporaries)
        {
            string name = Path.GetFileName(temp);
            string pidAndId = name[(name.LastIndexOf(TempMarker, StringComparison.Ordinal) + TempMarker.Length)..];
            if (!AtomicDirectory.IsWriterAlive(pidAndId))
            {
                try
                {
                    File.Delete(temp);
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                }
            }
        }
    }
}
