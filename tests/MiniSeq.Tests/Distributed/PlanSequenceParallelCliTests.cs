// `plan --sequence-parallel P`: one Ulysses rank's memory (its positions; the sequence-chunked policies too; ZeRO-1 over
// the Ulysses ranks); refusals in one line.
using MiniSeq.Tests.Helpers;

namespace MiniSeq.Tests.Distributed;

public class PlanSequenceParallelCliTests
{
    [Fact]
    public void Plan_SequenceParallel_PerRank_ChunkedPoliciesIncluded_RefusalsOneLine()
    {
        CliResult r = CliRunner.Run("plan", "--config", "tiny", "--seq-len", "64", "--sequence-parallel", "2");
        CliAssert.Ok(r);
        Assert.Contains("Ulysses", r.Stdout, StringComparison.Ordinal);
        Assert.Contains("mst+checkpoint", r.Stdout, StringComparison.Ordinal);
        Assert.Contains("chunked+offload", r.Stdout, StringComparison.Ordinal);
        Assert.Contains("runtime includes 34.0 MiB per rank for MPI", r.Stdout, StringComparison.Ordinal);
        Assert.DoesNotContain("for MPI", CliRunner.Run("plan", "--config", "tiny", "--seq-len", "64").Stdout, StringComparison.Ordinal);
        CliAssert.OneLineError(CliRunner.Run("plan", "--config", "tiny", "--seq-len", "64", "--sequence-parallel", "3"), "query heads to divide by 3");
        CliResult both = CliRunner.Run("plan", "--config", "tiny", "--seq-len", "64", "--batch", "2", "--ranks", "2", "--sequence-parallel", "2", "--zero", "1");
        CliAssert.Ok(both);
        Assert.Contains("2 data-parallel replicas (1 row each)", both.Stdout, StringComparison.Ordinal);
        Assert.Contains("ZeRO-1: optimizer state ÷ 4", both.Stdout, StringComparison.Ordinal);
        CliAssert.OneLineError(CliRunner.Run("plan", "--config", "tiny", "--seq-len", "64", "--sequence-parallel", "0"), "must be ≥ 1");
        CliResult zero = CliRunner.Run("plan", "--config", "tiny", "--seq-len", "64", "--sequence-parallel", "2", "--zero", "1");
        CliAssert.Ok(zero);
        Assert.Contains("ZeRO-1: optimizer state ÷ 2", zero.Stdout, StringComparison.Ordinal);
    }
}
