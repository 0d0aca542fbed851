// Writes a directory of files that MiniSeq owns (a saved model) so that readers, and a process killed at any instant,
// never see a half-written file, and so that nothing MiniSeq did not write is ever deleted or replaced. The contents
// are written into a hidden temporary sibling and flushed to disk; then:
// - no target yet: the sibling is renamed into place (atomic);
// - the target holds only files this writer owns (an earlier save): the two directories are swapped in one atomic
//   renameat2(RENAME_EXCHANGE) on Linux (elsewhere: rename aside, rename in, delete), so the whole set is atomic;
// - the target holds anything else (a tokenizer, notes, sub-directories): each new file is renamed over its old
//   version one by one (each file atomic; weights before config.json), stale owned files are removed, and every
//   other entry is left exactly as it was.
// A non-empty target is refused unless the caller asks to overwrite. Leftover temporaries of killed writers (their
// process is gone) are removed by the next write to the same target.
// Deliberately not: a lock. Two processes saving to the same directory at once each succeed; the last rename wins.
using System.Runtime.InteropServices;

namespace MiniSeq.IO;

/// <summary>Thrown when an output directory exists, is not empty, and overwriting was not asked for.</summary>
public sealed class OutputExistsException(string message) : IOException(message);

/// <summary>Writes a directory atomically through a temporary sibling and renames, never touching files it does not own.</summary>
/// <remarks>
/// Temporaries are named <c>.NAME.tmp-PID-ID</c> (and <c>.NAME.old-PID-ID</c> for the previous version during a swap
/// where <c>renameat2</c> is unavailable). Neither is ever partial; the next write to NAME deletes those whose process
/// has exited, and restores an <c>.old</c> one when a killed swap left no NAME at all.
/// </remarks>
public static partial class AtomicDirectory
{
    /// <summary>
    /// Throws unless <paramref name="directory"/> can be written: absent, an empty directory, or (with
    /// <paramref name="overwrite"/>) any directory. Call it before long work so a refusal costs nothing.
    /// </summary>
    /// <exception cref="OutputExistsException">The directory is not empty and <paramref name="overwrite"/> is false.</exception>
    /// <exception cref="IOException">The path exists as a file.</exception>
    public static void CheckWritable(string directory, bool overwrite, Func<string, bool> isOwned)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        ArgumentNullException.ThrowIfNull(isOwned);
        string target = FullPath(directory);
        if (File.Exists(target))
        {
            throw new IOException($"{directory}: exists as a file, not a directory. Choose another output directory.");
        }

        if (overwrite || !Directory.Exists(target))
        {
            return;
        }

        string[] entries = Directory.EnumerateFileSystemEntries(target).Select(e => Path.GetFileName(e) + (Directory.Exists(e) ? "/" : "")).Order(StringComparer.Ordinal).ToArray();
        if (entries.Length > 0)
        {
            string shown = string.Join(", ", entries.Take(3)) + (entries.Length > 3 ? $" and {entries.Length - 3} more" : "");
            throw new OutputExistsException(
                $"{directory}: the directory exists and is not empty ({shown}); nothing was written. Choose a new or empty directory, or pass --overwrite to replace only MiniSeq's own files there (others are kept).");
        }
    }

    /// <summary>Creates <paramref name="directory"/> or updates it with what <paramref name="writeContents"/> writes.</summary>
    /// <param name="directory">The target; its parent is created if missing.</param>
    /// <param name="writeContents">Called with the temporary directory to fill (files only, every name owned). Files it
    /// writes are flushed to disk before any rename. If it throws, the temporary directory is deleted,
    /// <paramref name="directory"/> is left untouched and the exception propagates.</param>
    /// <param name="isOwned">Whether a file name in the target is one this writer produces (and may replace or remove).</param>
    /// <param name="overwrite">Whether a non-empty target may be updated; without it a non-empty target is refused.</param>
    /// <exception cref="OutputExistsException">The target is not empty and <paramref name="overwrite"/> is false.</exception>
    /// <exception cref="IOException">The target exists as a file.</exception>
    public static void Write(string directory, Action<string> writeContents, Func<string, bool> isOwned, bool overwrite)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        ArgumentNullException.ThrowIfNull(writeContents);
        string target = FullPath(directory);
        string parent = System.IO.Path.GetDirectoryName(target)
            ?? throw new ArgumentException($"{directory}: cannot write a filesystem root.", nameof(directory));
        string name = System.IO.Path.GetFileName(target);
        Directory.CreateDirectory(parent);
        RemoveStaleTemporaries(parent, name, target);
        CheckWritable(directory, overwrite, isOwned);

        string unique = $"{Environment.ProcessId}-{Guid.NewGuid().ToString("N")[..12]}";
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

        bool onlyOwned = Directory.EnumerateDirectories(target).Any() is false
            && Directory.EnumerateFiles(target).All(f => isOwned(System.IO.Path.GetFileName(f)));
        if (onlyOwned)
        {
            ReplaceWhole(temp, target, parent, name, unique);
        }
        else
        {
            ReplaceFileByFile(temp, target, isOwned);
        }
    }

    // The target holds only owned files: swap the whole directory (one atomic step on Linux).
    private static void ReplaceWhole(string temp, string target, string parent, string name, string unique)
    {
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

    // The target holds files this writer does not own: rename each new file over its old version (atomic per file),
    // config.json last so that a reader never sees a new config with old weights; then remove owned files this write
    // did not produce (e.g. old shards after a save to one file). Nothing else in the target is touched.
    private static void ReplaceFileByFile(string temp, string target, Func<string, bool> isOwned)
    {
        string[] written = Directory.GetFiles(temp).Select(f => System.IO.Path.GetFileName(f)!)
            .OrderBy(f => f == "config.json" ? 1 : 0).ThenBy(f => f, StringComparer.Ordinal).ToArray();
        try
        {
            foreach (string file in written)
            {
                File.Move(System.IO.Path.Combine(temp, file), System.IO.Path.Combine(target, file), overwrite: true);
            }

            var fresh = new HashSet<string>(written, StringComparer.Ordinal);
            foreach (string file in Directory.GetFiles(target).Select(f => System.IO.Path.GetFileName(f)!))
            {
                if (isOwned(file) && !fresh.Contains(file))
                {
                    File.Delete(System.IO.Path.Combine(target, file));
                }
            }

            FlushDirectory(target);
        }
        finally
        {
            TryDelete(temp);
        }
    }

    /// <summary>Deletes <c>.NAME.tmp-*</c> siblings left by writers whose process has exited, and restores or
    /// deletes their <c>.NAME.old-*</c> ones (restored when a killed swap left no NAME).</summary>
    internal static void RemoveStaleTemporaries(string parent, string name, string target)
    {
        if (!Directory.Exists(parent))
        {
            return;
        }

        foreach (string entry in Directory.EnumerateDirectories(parent, $".{name}.*-*").ToArray())
        {
            string suffix = System.IO.Path.GetFileName(entry)[(name.Length + 2)..];
            bool isTemp = suffix.StartsWith("tmp-", StringComparison.Ordinal), isOld = suffix.StartsWith("old-", StringComparison.Ordinal);
            if (!(isTemp || isOld) || IsWriterAlive(suffix[4..]))
            {
                continue;
            }

            if (isOld && !Directory.Exists(target))
            {
                Directory.Move(entry, target);
                continue;
            }

            TryDelete(entry);
        }
    }

    // "PID-ID" of a live process (ours included) → true; older names without a PID count as dead.
    internal static bool IsWriterAlive(string pidAndId)
    {
        int dash = pidAndId.IndexOf('-', StringComparison.Ordinal);
        if (dash <= 0 || !int.TryParse(pidAndId.AsSpan(0, dash), out int pid))
        {
            return false;
        }

        if (pid == Environment.ProcessId)
        {
            return true;
        }

        if (OperatingSystem.IsLinux())
        {
            return Directory.Exists($"/proc/{pid}");
        }

        try
        {
            using var process = System.Diagnostics.Process.GetProcessById(pid);
            return !process.HasExited;
        }
        catch (ArgumentException)
        {
            return false;
        }
        catch (InvalidOperationException)
        {
            return false;
        }
    }

    /// <summary>Whether two paths name the same directory (after resolving ".", "..", and symbolic links).</summary>
    public static bool SameDirectory(string a, string b)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        return string.Equals(Canonical(a), Canonical(b), OperatingSystem.IsLinux() ? StringComparison.Ordinal : StringComparison.OrdinalIgnoreCase);
    }

    // Full path with every symbolic link resolved, component by component (missing components kept as they are).
    private static string Canonical(string path)
    {
        string full = FullPath(path);
        string? root = System.IO.Path.GetPathRoot(full);
        string current = root ?? "";
        foreach (string part in full[current.Length..].Split(System.IO.Path.DirectorySeparatorChar, StringSplitOptions.RemoveEmptyEntries))
        {
            current = System.IO.Path.Combine(current, part);
            var info = new DirectoryInfo(current);
            if (info.Exists && info.LinkTarget is not null && info.ResolveLinkTarget(returnFinalTarget: true) is FileSystemInfo target)
            {
                current = FullPath(target.FullName);
            }
        }

        return current;
    }

    private static string FullPath(string directory) => System.IO.Path.TrimEndingDirectorySeparator(System.IO.Path.GetFullPath(directory));

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
