// What every CLI test checks of a run: success (with the output shown on failure), or a one-line error that names
// what went wrong and never shows an exception.
namespace MiniSeq.Tests.Helpers;

internal static class CliAssert
{
    public static void Ok(CliResult r) => Assert.True(r.ExitCode == 0, r.Stderr + r.Stdout);

    public static void OneLineError(CliResult r, string mention, StringComparison comparison = StringComparison.Ordinal)
    {
        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains(mention, r.Stderr, comparison);
        Assert.Single(r.Stderr.Trim().Split('\n'));
        Assert.DoesNotContain("Exception", r.Stderr, StringComparison.Ordinal);
    }
}
