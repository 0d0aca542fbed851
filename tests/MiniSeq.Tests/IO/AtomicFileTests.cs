// AtomicFile: never replaces a file without overwrite, refuses directories, leaves no temporary behind.
using MiniSeq.IO;

namespace MiniSeq.Tests.IO;

public class AtomicFileTests
{
    [Fact]
    public void WriteAllText_NewFile_WrittenAndNoTempLeft()
    {
        using var dir = new TempDirectory();
        string path = dir.File("report.md");
        AtomicFile.WriteAllText(path, "table", overwrite: false);
        Assert.Equal("table", File.ReadAllText(path));
        Assert.Equal(["report.md"], Directory.GetFileSystemEntries(dir.Path).Select(Path.GetFileName));
    }

    [Fact]
    public void WriteAllText_ExistingFile_RefusedUnlessOverwrite()
    {
        using var dir = new TempDirectory();
        string path = dir.File("notes.md");
        File.WriteAllText(path, "the user's notes");
        Assert.Throws<OutputExistsException>(() => AtomicFile.CheckWritable(path, overwrite: false));
        Assert.Throws<OutputExistsException>(() => AtomicFile.WriteAllText(path, "table", overwrite: false));
        Assert.Equal("the user's notes", File.ReadAllText(path));
        AtomicFile.WriteAllText(path, "table", overwrite: true);
        Assert.Equal("table", File.ReadAllText(path));
        Assert.Single(Directory.GetFileSystemEntries(dir.Path));
    }

    [Fact]
    public void CheckWritable_Directory_Refused_EvenWithOverwrite()
    {
        using var dir = new TempDirectory();
        Directory.CreateDirectory(dir.File("d.md"));
        Assert.Throws<IOException>(() => AtomicFile.CheckWritable(dir.File("d.md"), overwrite: true));
    }
}
