// One ISA choice for every kernel: MatMul and FlashAttention take their default width from KernelSelector (the only
// MINISEQ_FORCE_ISA parser), capped at the widest width with hardware FMA; no other source file reads the variable.
using MiniSeq.Kernels;

namespace MiniSeq.Tests.Kernels;

public class IsaSelectionTests
{
    [Fact]
    public void DefaultVariant_EveryForcedWidth_FollowsKernelSelectorCappedAtFma()
    {
        foreach (IsaWidth width in KernelSelector.AllWidths)
        {
            using var _ = KernelSelector.Force(width);
            IsaWidth expected = width > KernelSelector.WidestFma ? KernelSelector.WidestFma : width;
            Assert.Equal(width, KernelSelector.Width);
            Assert.Equal(expected, KernelSelector.TiledWidth);
            Assert.Equal(expected, MatMul.DefaultVariant);
            Assert.Equal(expected, FlashAttention.DefaultIsa);
        }
    }

    [Fact]
    public void DefaultVariant_NoOverride_FollowsTheEnvironmentParse()
    {
        IsaWidth parsed = KernelSelector.ParseForced(Environment.GetEnvironmentVariable(KernelSelector.ForceIsaVariable), KernelSelector.Widest);
        Assert.Equal(parsed, KernelSelector.Selected);
        Assert.Equal(KernelSelector.CapToFma(parsed), MatMul.DefaultVariant);
        Assert.Equal(KernelSelector.CapToFma(parsed), FlashAttention.DefaultIsa);
    }

    [Fact]
    public void WidestFma_NeverWiderThanWidestAccelerated()
        => Assert.True(KernelSelector.WidestFma <= KernelSelector.Widest);

    [Fact]
    public void ForceIsaVariable_ReadOnlyByKernelSelector()
    {
        // The source tree is next to the build output in a checkout; elsewhere there is nothing to scan.
        string? src = FindSourceDirectory();
        if (src is null)
        {
            return;
        }

        string[] readers = Directory.EnumerateFiles(src, "*.cs", SearchOption.AllDirectories)
            .Where(f => File.ReadAllText(f) is string text
                && (text.Contains("\"MINISEQ_FORCE_ISA\"", StringComparison.Ordinal)
                    || text.Contains("GetEnvironmentVariable(KernelSelector.ForceIsaVariable", StringComparison.Ordinal)
                    || text.Contains("GetEnvironmentVariable(ForceIsaVariable", StringComparison.Ordinal)))
            .Select(Path.GetFileName)
            .ToArray()!;
        Assert.Equal(["KernelSelector.cs"], readers);
    }

    private static string? FindSourceDirectory()
    {
        for (DirectoryInfo? dir = new(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            string candidate = Path.Combine(dir.FullName, "src", "MiniSeq", "Kernels", "KernelSelector.cs");
            if (File.Exists(candidate))
            {
                return Path.Combine(dir.FullName, "src");
            }
        }

        return null;
    }
}
