// AtomicDirectory: a failing writer leaves nothing behind; replacement swaps whole directories.
using MiniSeq.IO;

namespace MiniSeq.Tests.IO;

public class AtomicDirectoryTests
{
    [Fact]
    public void Write_WriterThrows_TargetAbsentAndNoTempLeft()
    {
        using var dir = new TempDirectory();
        string target = dir.File("out");

        Assert.Throws<InvalidOperationException>(() => AtomicDirectory.Write(target, temp =>
        {
            File.WriteAllText(Path.Combine(temp, "half.bin"), "partial");
            throw new InvalidOperationException("simulated failure");
        }, AllOwned, overwrite: false));

        Assert.Empty(Directory.GetFileSystemEntries(dir.Path));
    }

    [Fact]
    public void Write_ExistingTargetOfOwnedFiles_Overwrite_ReplacedAndOldRemoved()
    {
        using var dir = new TempDirectory();
        string target = dir.File("out");
        AtomicDirectory.Write(target, temp => File.WriteAllText(Path.Combine(temp, "a.txt"), "1"), AllOwned, overwrite: false);
        AtomicDirectory.Write(target + Path.DirectorySeparatorChar, temp => File.WriteAllText(Path.Combine(temp, "b.txt"), "2"), AllOwned, overwrite: true);

        Assert.Equal(["b.txt"], Directory.GetFiles(target).Select(Path.GetFileName));
        Assert.Equal(["out"], Directory.GetFileSystemEntries(dir.Path).Select(Path.GetFileName));
    }

    [Fact]
    public void Write_NonEmptyTarget_WithoutOverwrite_RefusedBeforeWriting()
    {
        using var dir = new TempDirectory();
        string target = dir.File("out");
        Directory.CreateDirectory(target);
        File.WriteAllText(Path.Combine(target, "notes.txt"), "keep");
        bool called = false;

        var e = Assert.Throws<OutputExistsException>(() => AtomicDirectory.Write(target, _ => called = true, AllOwned, overwrite: false));

        Assert.False(called);
        Assert.Contains("notes.txt", e.Message, StringComparison.Ordinal);
        Assert.Single(e.Message.Split('\n'));
        Assert.Equal("keep", File.ReadAllText(Path.Combine(target, "notes.txt")));
        Assert.Equal(["out"], Directory.GetFileSystemEntries(dir.Path).Select(Path.GetFileName));
    }

    [Fact]
    public void Write_EmptyExistingTarget_Allowed()
    {
        using var dir = new TempDirectory();
        string target = dir.File("out");
        Directory.CreateDirectory(target);

        AtomicDirectory.Write(target, temp => File.WriteAllText(Path.Combine(temp, "a.txt"), "1"), AllOwned, overwrite: false);

        Assert.Equal("1", File.ReadAllText(Path.Combine(target, "a.txt")));
    }

    [Fact]
    public void SameDirectory_DotDotAndSymlinks_Resolved()
    {
        using var dir = new TempDirectory();
        string real = dir.File("real");
        Directory.CreateDirectory(Path.Combine(real, "child"));
        Assert.True(AtomicDirectory.SameDirectory(real, Path.Combine(real, "child", "..") + Path.DirectorySeparatorChar));
        Assert.False(AtomicDirectory.SameDirectory(real, Path.Combine(real, "child")));
        if (OperatingSystem.IsLinux())
        {
            string link = dir.File("link");
            Directory.CreateSymbolicLink(link, real);
            Assert.True(AtomicDirectory.SameDirectory(link, real));
        }
    }

    private static bool AllOwned(string name) => true;

    [Fact]
    public void TryExchange_OnLinux_SwapsDirectoriesAtomically()
    {
        if (!OperatingSystem.IsLinux())
        {
            return;
        }

        using var dir = new TempDirectory();
        string a = dir.File("a"), b = dir.File("b");
        Directory.CreateDirectory(a);
        Directory.CreateDirectory(b);
        File.WriteAllText(Path.Combine(a, "from-a"), "");
        File.WriteAllText(Path.Combine(b, "from-b"), "");

        Assert.True(AtomicDirectory.TryExchange(a, b));

        Assert.True(File.Exists(Path.Combine(a, "from-b")));
        Assert.True(File.Exists(Path.Combine(b, "from-a")));
    }
}
