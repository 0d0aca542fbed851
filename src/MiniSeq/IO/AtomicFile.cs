// One text file written the way every MiniSeq output is: refused if something is already there unless the caller
// was asked to overwrite it, written to a temporary sibling and renamed into place, so a reader or a process killed at
// any instant never sees half a file, and a refusal can be checked before long work (CheckWritable).
namespace MiniSeq.IO;

/// <summary>Writes a single text file atomically, never replacing one without being asked to.</summary>
public static class AtomicFile
{
    /// <summary>
    /// Throws unless <paramref name="path"/> can be written: absent, or (with <paramref name="overwrite"/>) an existing
    /// file. Call it before long work so a refusal costs nothing.
    /// </summary>
    /// <exception cref="OutputExistsException">A file is there and <paramref name="overwrite"/> is false.</exception>
    /// <exception cref="IOException">The path is a directory.</exception>
    public static void CheckWritable(string path, bool overwrite)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (Directory.Exists(path))
        {
            throw new IOException($"{path}: is a directory; choose a file name.");
        }

        if (File.Exists(path) && !overwrite)
        {
            throw new OutputExistsException($"{path}: exists; nothing was written. Pass --overwrite to replace it, or choose another name.");
        }
    }

    /// <summary>Writes <paramref name="contents"/> to <paramref name="path"/> through a temporary sibling and a rename
    /// (after <see cref="CheckWritable"/>, so a file that appeared meanwhile is not replaced without <paramref name="overwrite"/>).</summary>
    public static void WriteAllText(string path, string contents, bool overwrite)
    {
        CheckWritable(path, overwrite);
        string temp = path + $".tmp-{Environment.ProcessId}";
        try
        {
            File.WriteAllText(temp, contents);
            File.Move(temp, path, overwrite);
        }
        finally
        {
            File.Delete(temp); // nothing there after the rename
        }
    }
}
