// `miniseq bench attention`: placeholder until the attention benchmark lands.
using System.CommandLine;

namespace MiniSeq.Cli.Commands;

internal static class AttentionBench
{
    public static Command Create() => new("attention", "Flash attention forward/backward GFLOP/s");
}
