// KernelSelector: MINISEQ_FORCE_ISA parsing and the per-thread override scope.
using MiniSeq.Kernels;

namespace MiniSeq.Tests.Kernels;

public class KernelSelectorTests
{
    [Theory]
    [InlineData(null, IsaWidth.V256)]
    [InlineData("", IsaWidth.V256)]
    [InlineData("scalar", IsaWidth.Scalar)]
    [InlineData(" V128 ", IsaWidth.V128)]
    [InlineData("V512", IsaWidth.V512)]
    public void ParseForced_ValidValues_SelectWidth(string? value, IsaWidth expected)
        => Assert.Equal(expected, KernelSelector.ParseForced(value, IsaWidth.V256));

    [Theory]
    [InlineData("AVX2")]
    [InlineData("3")]
    [InlineData("V1024")]
    public void ParseForced_UnknownValue_ThrowsNamingTheVariable(string value)
    {
        var e = Assert.Throws<InvalidOperationException>(() => KernelSelector.ParseForced(value, IsaWidth.V512));
        Assert.Contains(KernelSelector.ForceIsaVariable, e.Message);
    }

    [Fact]
    public void Force_NestedScopes_RestorePreviousWidth()
    {
        IsaWidth initial = KernelSelector.Width;
        using (KernelSelector.Force(IsaWidth.Scalar))
        {
            Assert.Equal(IsaWidth.Scalar, KernelSelector.Width);
            using (KernelSelector.Force(IsaWidth.V128))
            {
                Assert.Equal(IsaWidth.V128, KernelSelector.Width);
            }

            Assert.Equal(IsaWidth.Scalar, KernelSelector.Width);
        }

        Assert.Equal(initial, KernelSelector.Width);
        Assert.Null(KernelSelector.Override);
    }
}
