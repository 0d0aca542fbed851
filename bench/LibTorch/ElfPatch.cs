// Flags one version need of an ELF shared library as weak (VER_FLG_WEAK in the Vernaux entry of .gnu.version_r), so
// that the dynamic loader accepts a libstdc++ that lacks that version. Used on the COPY of libLibTorchSharp.so in this
// program's build output (never on the NuGet cache's original): TorchSharp 0.107.0 records a need for GLIBCXX_3.4.32
// (GCC 13) whose only symbol is the never-called marker std::ios_base_library_init; Debian 12 ships GCC 12's
// libstdc++ (up to GLIBCXX_3.4.30). Check the result with `readelf -V`.
using System.Buffers.Binary;
using System.Text;

namespace MiniSeq.LibTorchBench;

internal static class ElfPatch
{
    private const uint ShtGnuVerneed = 0x6ffffffe;
    private const ushort VerFlgWeak = 0x2;

    /// <summary>Result of <see cref="MarkVersionWeak"/>.</summary>
    internal enum Outcome { Patched, AlreadyWeak, NotNeeded }

    /// <summary>Sets VER_FLG_WEAK on every Vernaux entry named <paramref name="version"/>; idempotent.</summary>
    internal static Outcome MarkVersionWeak(string path, string version)
    {
        byte[] elf = File.ReadAllBytes(path);
        if (elf.Length < 64 || elf[0] != 0x7f || elf[1] != (byte)'E' || elf[2] != (byte)'L' || elf[3] != (byte)'F' || elf[4] != 2 || elf[5] != 1)
        {
            throw new InvalidDataException($"{path}: not a little-endian ELF64 file");
        }

        var span = elf.AsSpan();
        long shoff = (long)BinaryPrimitives.ReadUInt64LittleEndian(span[0x28..]);
        int shentsize = BinaryPrimitives.ReadUInt16LittleEndian(span[0x3A..]);
        int shnum = BinaryPrimitives.ReadUInt16LittleEndian(span[0x3C..]);
        Span<byte> Section(int i) => elf.AsSpan((int)(shoff + (long)i * shentsize), shentsize);

        bool found = false, changed = false;
        for (int i = 0; i < shnum; i++)
        {
            Span<byte> sh = Section(i);
            if (BinaryPrimitives.ReadUInt32LittleEndian(sh[4..]) != ShtGnuVerneed)
            {
                continue;
            }

            long offset = (long)BinaryPrimitives.ReadUInt64LittleEndian(sh[0x18..]);
            int link = (int)BinaryPrimitives.ReadUInt32LittleEndian(sh[0x28..]);
            int count = (int)BinaryPrimitives.ReadUInt32LittleEndian(sh[0x2C..]);
            long strOffset = (long)BinaryPrimitives.ReadUInt64LittleEndian(Section(link)[0x18..]);
            string Str(uint at)
            {
                int start = (int)(strOffset + at), end = start;
                while (elf[end] != 0)
                {
                    end++;
                }

                return Encoding.ASCII.GetString(elf, start, end - start);
            }

            long vn = offset;
            for (int n = 0; n < count; n++)
            {
                int cnt = BinaryPrimitives.ReadUInt16LittleEndian(span[(int)(vn + 2)..]);
                long aux = vn + BinaryPrimitives.ReadUInt32LittleEndian(span[(int)(vn + 8)..]);
                for (int a = 0; a < cnt; a++)
                {
                    Span<byte> entry = span.Slice((int)aux, 16);
                    if (Str(BinaryPrimitives.ReadUInt32LittleEndian(entry[8..])) == version)
                    {
                        found = true;
                        ushort flags = BinaryPrimitives.ReadUInt16LittleEndian(entry[4..]);
                        if ((flags & VerFlgWeak) == 0)
                        {
                            BinaryPrimitives.WriteUInt16LittleEndian(entry[4..], (ushort)(flags | VerFlgWeak));
                            changed = true;
                        }
                    }

                    aux += BinaryPrimitives.ReadUInt32LittleEndian(entry[12..]);
                }

                uint next = BinaryPrimitives.ReadUInt32LittleEndian(span[(int)(vn + 12)..]);
                if (next == 0)
                {
                    break;
                }

                vn += next;
            }
        }

        if (!found)
        {
            return Outcome.NotNeeded;
        }

        if (!changed)
        {
            return Outcome.AlreadyWeak;
        }

        string tmp = path + ".patching";
        File.WriteAllBytes(tmp, elf);
        File.Move(tmp, path, overwrite: true);
        return Outcome.Patched;
    }
}
