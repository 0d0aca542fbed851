using MiniSeq.Tensors;

namespace MiniSeq.Tests.Tensors;

public class MemoryTests
{
    [Fact]
    public void Arena_AccountsBytesToCategory_AndReleasesOnDispose()
    {
        var ledger = new MemoryLedger();
        var plan = new ArenaPlan("test", MemoryCategory.Scratch);
        ArenaSlot a = plan.Add("a", 10);
        ArenaSlot b = plan.Add("b", 17);
        Assert.Equal(16, b.Offset);
        Assert.Equal(48, plan.TotalFloats);
        using (var arena = new Arena(plan, ledger))
        {
            Assert.Equal(48 * 4, ledger.Current(MemoryCategory.Scratch));
            Assert.Equal(17, arena[b].Length);
            Assert.Equal(10, arena[a].Length);
        }

        Assert.Equal(0, ledger.Current(MemoryCategory.Scratch));
        Assert.Equal(48 * 4, ledger.Peak(MemoryCategory.Scratch));
    }

    [Theory]
    [InlineData("1GiB", 1L << 30)]
    [InlineData("512MiB", 512L << 20)]
    [InlineData("2GB", 2_000_000_000L)]
    [InlineData("4096", 4096L)]
    [InlineData("1.5G", 3L << 29)]
    public void ByteSize_Parse_Units(string text, long expected) => Assert.Equal(expected, ByteSize.Parse(text));

    [Fact]
    public void ByteSize_Parse_Garbage_Throws() => Assert.Throws<FormatException>(() => ByteSize.Parse("lots"));
}
