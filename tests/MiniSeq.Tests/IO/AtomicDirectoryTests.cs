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
        }));

        Assert.Empty(Directory.GetFileSystemEntries(dir.Path));
    }

    [Fact]
    public void Write_ExistingTarget_ReplacedAndOldRemoved()
    {
        using var dir = new TempDirectory();
        string target = dir.File("out");
        AtomicDirectory.Write(target, temp => File.WriteAllText(Path.Combine(temp, "a.txt"), "1"));
        AtomicDirectory.Write(target + Path.DirectorySeparatorChar, temp => File.WriteAllText(Path.Combine(temp, "b.txt"), "2"));

        Assert.Equal(["b.txt"], Directory.GetFiles(target).Select(Path.GetFileName));
        Assert.Equal(["out"], Directory.GetFileSystemEntries(dir.Path).Select(Path.GetFileName));
    }

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
