// GemmBenchmark.StepShapes: the step's GEMM shapes follow the config and N (`miniseq bench gemm --config --seq-len`),
// and config small at 4096 keeps the shapes every committed GEMM table was measured on.
// Deliberately not: timing anything (benchmarks, not tests, check speed).
using MiniSeq.Benchmarks;
using MiniSeq.Model;

namespace MiniSeq.Tests.Benchmarks;

public class GemmShapesTests
{
    [Fact]
    public void TrainingShapes_AreTheSmallConfigAt4096_AsCommitted()
    {
        (bool, bool, int, int, int)[] committed =
        [
            (false, true, 4096, 896, 256), (false, true, 4096, 256, 896), (false, true, 4096, 8192, 256),
            (false, true, 4096, 256, 256), (false, true, 4096, 64, 256), (false, false, 4096, 256, 896),
            (false, false, 4096, 256, 8192), (true, false, 896, 256, 4096), (true, false, 8192, 256, 4096),
        ];
        Assert.Equal(committed, GemmBenchmark.TrainingShapes.Select(s => (s.TransA, s.TransB, s.M, s.N, s.K)));
    }

    [Fact]
    public void StepShapes_FollowTheConfigAndN()
    {
        var config = new LlamaConfig { HiddenSize = 896, IntermediateSize = 4864, NumAttentionHeads = 14, NumKeyValueHeads = 2, VocabSize = 8192 };
        IReadOnlyList<GemmShape> shapes = GemmBenchmark.StepShapes(config, 2048);
        GemmShape Named(string name) => shapes.Single(s => s.Name == name);
        (int M, int N, int K) Mnk(string name) => (Named(name).M, Named(name).N, Named(name).K);
        Assert.Equal((2048, 4864, 896), Mnk("fwd gate/up X·Wᵀ"));
        Assert.Equal((2048, 128, 896), Mnk("fwd k/v X·Wᵀ"));
        Assert.Equal((8192, 896, 2048), Mnk("bwd dW (lm-head) dYᵀ·X"));
        Assert.Equal(2.0 * 4864 * 896 * 2048, Named("bwd dW (gate/up) dYᵀ·X").Flops);
    }
}
