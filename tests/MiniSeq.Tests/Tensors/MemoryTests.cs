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
        Assert.Equal(48 * sizeof(float), plan.TotalBytes);
        using (var arena = new Arena(plan, ledger))
        {
            Assert.Equal(48 * 4, ledger.Current(MemoryCategory.Scratch));
            Assert.Equal(17, arena[b].Length);
            Assert.Equal(10, arena[a].Length);
        }

        Assert.Equal(0, ledger.Current(MemoryCategory.Scratch));
        Assert.Equal(48 * 4, ledger.Peak(MemoryCategory.Scratch));
    }

    [Fact]
    public unsafe void Arena_MixedFp32AndBf16Slots_ExactBytesAlignedAndTyped()
    {
        var ledger = new MemoryLedger();
        var plan = new ArenaPlan("mixed", MemoryCategory.Activations);
        ArenaSlot f = plan.Add("f32", 10);                       // 40 bytes → 64
        ArenaSlot h = plan.Add("bf16", 100, ElementType.BF16);    // 200 bytes → 256
        ArenaSlot g = plan.Add("f32b", 3);                        // 12 bytes → 64
        Assert.Equal((0L, 64L, 320L), (f.ByteOffset, h.ByteOffset, g.ByteOffset));
        Assert.Equal(200, h.ByteLength);
        Assert.Equal(384, plan.TotalBytes);
        using var arena = new Arena(plan, ledger);
        Assert.Equal(384, ledger.Current(MemoryCategory.Activations));
        ushort* bf = arena.Bf16(h);
        Assert.Equal(0, (long)bf % 64);
        bf[99] = 0x3F80; // 1.0 in bf16
        Assert.Equal(0f, arena[g].Span[0]); // the bf16 slot ends before the next fp32 slot
        Assert.Equal(10, arena[f].Length);
        Assert.Throws<InvalidOperationException>(() => arena[h]);
        Assert.Throws<InvalidOperationException>(() => arena.Bf16(f));
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
