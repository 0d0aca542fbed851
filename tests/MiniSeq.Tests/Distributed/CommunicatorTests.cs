// The communicator contract without MPI: the single-process communicator and in-process groups of 1–4 ranks pass the
// same self-test `miniseq mpi-check` runs under mpirun; misuse (unsupported types, bad blocks or counts, a root
// outside the group) throws before anything is sent; Open MPI's version line shortens to "Open MPI x.y"; the timing
// decorator forwards every collective and counts its time.
using MiniSeq.Distributed;

namespace MiniSeq.Tests.Distributed;

public class CommunicatorTests
{
    [Fact]
    public void SingleProcess_SelfTest_Passes()
    {
        using var single = new SingleProcessCommunicator();
        Assert.Empty(CommunicatorSelfTest.Run(single));
        Assert.Equal((0, 1), (single.Rank, single.Size));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    public void InProcessGroup_SelfTest_PassesOnEveryRank(int size)
    {
        IReadOnlyList<string>[] failures = InProcessGroup.Run(size, CommunicatorSelfTest.Run);
        Assert.All(failures, Assert.Empty);
    }

    // Split: 4 ranks into 2 groups of 2 consecutive ranks (and the other way round, by key) pass the self-test inside
    // each group; the timed decorator's sub-groups count into the same totals.
    [Fact]
    public void Split_Subgroups_PassTheSelfTest()
    {
        (int Rank, int Size, int Reversed, IReadOnlyList<string> Failures, double Seconds)[] ranks = InProcessGroup.Run(4, c =>
        {
            var timed = new TimedCommunicator(c);
            using ICommunicator group = timed.Split(c.Rank / 2, c.Rank);
            using ICommunicator reversed = timed.Split(c.Rank % 2, -c.Rank);
            IReadOnlyList<string> failures = [.. CommunicatorSelfTest.Run(group), .. CommunicatorSelfTest.Run(reversed)];
            return (group.Rank, group.Size, reversed.Rank, failures, timed.TotalSeconds);
        });
        for (int r = 0; r < 4; r++)
        {
            Assert.Empty(ranks[r].Failures);
            Assert.Equal((r % 2, 2), (ranks[r].Rank, ranks[r].Size));
            Assert.Equal(r < 2 ? 1 : 0, ranks[r].Reversed); // keys −r: rank 2 before rank 0, rank 3 before rank 1
            Assert.True(ranks[r].Seconds > 0);
        }

        using var single = new SingleProcessCommunicator();
        using ICommunicator alone = single.Split(0, 0);
        Assert.Equal((0, 1), (alone.Rank, alone.Size));
    }

    // The timing decorator passes the self-test on every rank (it only forwards) and counts time per kind.
    [Fact]
    public void Timed_SelfTestPasses_AndTimeAccumulatesPerKind()
    {
        (IReadOnlyList<string> Failures, double Reduction, double AllToAll)[] ranks = InProcessGroup.Run(2, c =>
        {
            var timed = new TimedCommunicator(c);
            IReadOnlyList<string> failures = CommunicatorSelfTest.Run(timed);
            return (failures, timed.Seconds(CollectiveKind.Reduction), timed.Seconds(CollectiveKind.AllToAll));
        });
        foreach (var (failures, reduction, allToAll) in ranks)
        {
            Assert.Empty(failures);
            Assert.True(reduction > 0 && allToAll > 0, $"reductions {reduction} s, all-to-all {allToAll} s");
        }
    }

    [Fact]
    public void SingleProcess_Misuse_ThrowsNamingTheProblem()
    {
        using var c = new SingleProcessCommunicator();
        Assert.Throws<NotSupportedException>(() => c.AllReduce<byte>(new byte[3]));
        Assert.Throws<NotSupportedException>(() => c.Broadcast<char>(new char[3], 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => c.Broadcast<int>(new int[3], 1));
        Assert.Throws<ArgumentException>(() => c.AllGather<float>(new float[2], new float[3]));
        var e = Assert.Throws<ArgumentException>(() => c.AllToAllV<int>(new int[3], [2], new int[3], [3]));
        Assert.Contains("sum to 2", e.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => c.AllToAllV<int>(new int[3], [3, 0], new int[3], [3]));
    }

    [Theory]
    [InlineData("Open MPI v4.1.4, package: Debian OpenMPI, ident: 4.1.4, repo rev: v4.1.4, May 26, 2022", "Open MPI 4.1")]
    [InlineData("Open MPI v5.0.3, package: Open MPI Distribution", "Open MPI 5.0")]
    [InlineData("something else", "something else")]
    public void ShortName_OfTheLibraryVersionLine(string version, string expected)
        => Assert.Equal(expected, MpiLibrary.ShortNameOf(version));
}
