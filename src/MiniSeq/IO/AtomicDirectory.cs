// Replaces a whole directory so that readers (and a process killed at any instant) see either the old complete
// directory or the new complete one, never a partly written one: the contents are written into a hidden temporary
// sibling, flushed to disk, then renamed into place. Same-filesystem renames of directories are atomic on Linux,
// macOS and Windows; the sibling guarantees the same filesystem.
// Deliberately not: a lock. Two processes saving to the same directory at once each succeed; the last rename wins.
using System.Runtime.InteropServices;

namespace MiniSeq.IO;

/// <summary>Writes a directory atomically through a temporary sibling and renames.</summary>
/// <remarks>
/// On Linux an existing directory is swapped with the new one in a single atomic <c>renameat2(RENAME_EXCHANGE)</c>.
/// Where that is unavailable, replacing takes three steps: rename the old one aside to <c>.NAME.old-*</c>, rename the new
/// one in, delete the old one. A process killed between the first two renames leaves no <c>NAME</c> at all, but the
/// previous complete version is still in <c>.NAME.old-*</c> (and the new complete one in <c>.NAME.tmp-*</c>); neither is
/// ever partial. Leftover <c>.NAME.tmp-*</c> directories from killed writers are safe to delete.
/// </remarks>
public static partial class AtomicDirectory
{
    /// <summary>Creates or replaces <paramref name="directory"/> with what <paramref name="writeContents"/> writes.</summary>
    /// <param name="directory">The directory to create or replace; its parent is created if missing.</param>
    /// <param name="writeContents">Called with the temporary directory to fill. Files it writes should be flushed
    /// to disk (e.g. <c>FileStream.Flush(true)</c>); every file is flushed again before the rename regardless.
    /// If it throws, the temporary directory is deleted, <paramref name="directory"/> is left untouched and the
    /// exception propagates.</param>
    /// <exception cref="IOException"><paramref name="directory"/> exists as a file.</exception>
    public static void Write(string directory, Action<string> writeContents)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        ArgumentNullException.ThrowIfNull(writeContents);
        string target = System.IO.Path.TrimEndingDirectorySeparator(System.IO.Path.GetFullPath(directory));
        string parent = System.IO.Path.GetDirectoryName(target)
            ?? throw new ArgumentException($"{directory}: cannot replace a filesystem root.", nameof(directory));
        string name = System.IO.Path.GetFileName(target);
        if (File.Exists(target))
        {
            throw new IOException($"{target}: exists as a file, not a directory. Choose another output directory or remove the file.");
        }

        Directory.CreateDirectory(parent);
        string unique = Guid.NewGuid().ToString("N")[..12];
        string temp = System.IO.Path.Combine(parent, $".{name}.tmp-{unique}");
        Directory.CreateDirectory(temp);
        try
        {
            writeContents(temp);
            foreach (string file in Directory.EnumerateFiles(temp, "*", SearchOption.AllDirectories))
            {
                FlushFile(file);
            }

            FlushDirectory(temp);
        }
        catch
        {
            TryDelete(temp);
            throw;
        }

        if (!Directory.Exists(target))
        {
            MoveOrCleanUp(temp, target);
            FlushDirectory(parent);
            return;
        }

        // Linux: swap the two directories in one step (renameat2 RENAME_EXCHANGE); the old version lands in temp.
        if (TryExchange(temp, target))
        {
            FlushDirectory(parent);
            TryDelete(temp);
            return;
        }

        string old = System.IO.Path.Combine(parent, $".{name}.old-{unique}");
        try
        {
            Directory.Move(target, old);
        }
        catch
        {
            TryDelete(temp);
            throw;
        }

        try
        {
            Directory.Move(temp, target);
        }
        catch
        {
            // Put the previous version back; the new one is abandoned.
            Directory.Move(old, target);
            TryDelete(temp);
            throw;
        }

        FlushDirectory(parent);
        TryDelete(old);
    }

    private static void MoveOrCleanUp(string temp, string target)
    {
        try
        {
            Directory.Move(temp, target);
        }
        catch
        {
            TryDelete(temp);
            throw;
        }
    }

    private static void TryDelete(string directory)
    {
        try
        {
            Directory.Delete(directory, recursive: true);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }

    private static void FlushFile(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite, bufferSize: 1);
        stream.Flush(flushToDisk: true);
    }

    /// <summary>fsync of a directory (makes renames and new entries durable); best effort, POSIX only.</summary>
    private static void FlushDirectory(string path)
    {
        if (OperatingSystem.IsWindows())
        {
            return;
        }

        try
        {
            int fd = Open(path, 0); // O_RDONLY
            if (fd >= 0)
            {
                _ = Fsync(fd);
                _ = Close(fd);
            }
        }
        catch (DllNotFoundException)
        {
        }
        catch (EntryPointNotFoundException)
        {
        }
    }

    /// <summary>Atomically swaps two paths on Linux; false where unsupported (other OS, old kernel or filesystem).</summary>
    internal static bool TryExchange(string a, string b)
    {
        if (!OperatingSystem.IsLinux())
        {
            return false;
        }

        try
        {
            const int AtFdCwd = -100, RenameExchange = 2;
            return RenameAt2(AtFdCwd, a, AtFdCwd, b, RenameExchange) == 0;
        }
        catch (DllNotFoundException)
        {
            return false;
        }
        catch (EntryPointNotFoundException)
        {
            return false;
        }
    }

    [LibraryImport("libc", EntryPoint = "renameat2", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int RenameAt2(int oldDirFd, string oldPath, int newDirFd, string newPath, uint flags);

    [LibraryImport("libc", EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync")]
    private static partial int Fsync(int fd);

    [LibraryImport("libc", EntryPoint = "close")]
    private static partial int Close(int fd);
}
