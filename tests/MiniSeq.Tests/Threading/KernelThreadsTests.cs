using MiniSeq.Threading;

namespace MiniSeq.Tests.Threading;

public unsafe class KernelThreadsTests
{
    private struct FillBody : IParallelBody
    {
        public int* Output;

        public readonly void Execute(int index) => Output[index] = index * 3;
    }

    [Fact]
    public void For_EveryIndexRunsExactlyOnce()
    {
        var output = new int[1000];
        fixed (int* p = output)
        {
            for (int round = 0; round < 200; round++)
            {
                Array.Clear(output);
                var body = new FillBody { Output = p };
                KernelThreads.For(output.Length, ref body);
                for (int i = 0; i < output.Length; i++)
                {
                    Assert.Equal(i * 3, output[i]);
                }
            }
        }
    }

    private struct ThrowBody : IParallelBody
    {
        public readonly void Execute(int index)
        {
            if (index == 7)
            {
                throw new InvalidOperationException("boom");
            }
        }
    }

    [Fact]
    public void For_ExceptionInBody_IsRethrownOnCaller()
    {
        var body = new ThrowBody();
        Assert.Throws<InvalidOperationException>(() => KernelThreads.For(16, ref body));
    }
}
