// FNV-1a 64 hashing of files, strings and byte spans: the one hash MiniSeq uses to tell a changed file (run identity,
// token caches, tokenizer fingerprints). Deliberately not a cryptographic hash: unlike SHA-256 it maps no crypto library
// into the process (OpenSSL adds ≈ 10 MiB of resident memory the planner would not see).
using System.Globalization;
using System.Text;

namespace MiniSeq.IO;

/// <summary>FNV-1a 64: <c>hash = (hash ^ byte) · 1099511628211</c> from the offset basis 14695981039346656037.</summary>
internal static class Fnv1a
{
    /// <summary>The offset basis: the hash of no bytes.</summary>
    public const ulong Offset = 14695981039346656037UL;

    private const ulong Prime = 1099511628211UL;

    /// <summary>Continues <paramref name="hash"/> over <paramref name="bytes"/>.</summary>
    public static ulong Append(ulong hash, ReadOnlySpan<byte> bytes)
    {
        foreach (byte b in bytes)
        {
            hash = (hash ^ b) * Prime;
        }

        return hash;
    }

    /// <summary>Continues <paramref name="hash"/> over the 8 little-endian bytes of <paramref name="value"/>.</summary>
    public static ulong Append(ulong hash, long value)
    {
        Span<byte> bytes = stackalloc byte[sizeof(long)];
        System.Buffers.Binary.BinaryPrimitives.WriteInt64LittleEndian(bytes, value);
        return Append(hash, bytes);
    }

    /// <summary>Continues <paramref name="hash"/> over the UTF-8 bytes of <paramref name="text"/> and a 0 terminator
    /// (so that "ab","c" and "a","bc" differ).</summary>
    public static ulong Append(ulong hash, string text)
        => Append(hash, Encoding.UTF8.GetBytes(text + "\0"));

    /// <summary>The hash of a file's bytes, read in 1 MiB blocks.</summary>
    public static ulong OfFile(string path)
    {
        using FileStream stream = File.OpenRead(path);
        return OfStream(stream);
    }

    /// <summary>The hash of a stream's remaining bytes, read in 1 MiB blocks.</summary>
    public static ulong OfStream(Stream stream)
    {
        byte[] buffer = new byte[1 << 20];
        ulong hash = Offset;
        int read;
        while ((read = stream.Read(buffer, 0, buffer.Length)) > 0)
        {
            hash = Append(hash, buffer.AsSpan(0, read));
        }

        return hash;
    }

    /// <summary>The hash of a string's UTF-8 bytes (no terminator).</summary>
    public static ulong OfText(string text) => Append(Offset, Encoding.UTF8.GetBytes(text));

    /// <summary>Lower-case hex, 16 digits.</summary>
    public static string Hex(ulong hash) => hash.ToString("x16", CultureInfo.InvariantCulture);
}
