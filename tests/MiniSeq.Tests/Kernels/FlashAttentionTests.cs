// Tests of FlashAttention against the scalar double-precision reference, of the reference backward against finite
// differences, of the += contract, and of bit-identical results across thread counts, on every ISA path; the
// query-chunk entry points (ForwardQueries, BackwardQueries) against the full-sequence kernel.
// Deliberately tiny shapes (the whole class runs in a few seconds); speed is measured by AttentionBenchmark.
using MiniSeq.Kernels;
using MiniSeq.Kernels.Reference;
using MiniSeq.Threading;

namespace MiniSeq.Tests.Kernels;

public unsafe class FlashAttentionTests
{
    private const double Tolerance = 1e-5;

    public static TheoryData<int, int, int, int, int> Shapes => new()
    {
        // B, T, H, KvH, D
        { 1, 1, 1, 1, 2 },
        { 1, 5, 2, 1, 6 },
        { 2, 37, 4, 2, 8 },
        { 1, 70, 4, 1, 16 },
        { 2, 67, 2, 2, 32 },
        { 1, 130, 8, 2, 32 },
        { 1, 100, 4, 4, 6 },
        { 1, 65, 4, 1, 64 },
        { 1, 33, 2, 1, 128 },
        { 1, 45, 2, 1, 12 }, // D not a multiple of 8: the block transposes' scalar columns
        { 1, 77, 4, 2, 20 },
    };

    public static TheoryData<int, int, int, int, int, string> ShapesAndIsas()
    {
        var data = new TheoryData<int, int, int, int, int, string>();
        foreach (string isa in new[] { "Scalar", "V128", "V256", "V512" })
        {
            foreach (object[] row in Shapes)
            {
                data.Add((int)row[0], (int)row[1], (int)row[2], (int)row[3], (int)row[4], isa);
            }
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(ShapesAndIsas))]
    public void Forward_RandomInput_MatchesReference(int batchSize, int seqLen, int headCount, int kvHeadCount, int headDim, string isaName)
    {
        IsaWidth isa = Enum.Parse<IsaWidth>(isaName);
        var p = Problem.Create(batchSize, seqLen, headCount, kvHeadCount, headDim, seed: 1);
        float[] expectedOut = new float[p.Q.Length];
        float[] expectedLse = new float[p.Lse.Length];
        fixed (float* q = p.Q, k = p.K, v = p.V, o = p.Output, lse = p.Lse, eo = expectedOut, elseP = expectedLse)
        {
            FlashAttention.Forward(q, k, v, batchSize, seqLen, headCount, kvHeadCount, headDim, o, lse, isa);
            ReferenceAttention.Forward(q, k, v, batchSize, seqLen, headCount, kvHeadCount, headDim, eo, elseP);
        }

        AssertClose(expectedOut, p.Output, Tolerance, "output");
        AssertClose(expectedLse, p.Lse, Tolerance, "lse");
    }

    [Theory]
    [MemberData(nameof(ShapesAndIsas))]
    public void Backward_RandomInput_MatchesReference(int batchSize, int seqLen, int headCount, int kvHeadCount, int headDim, string isaName)
    {
        IsaWidth isa = Enum.Parse<IsaWidth>(isaName);
        var p = Problem.Create(batchSize, seqLen, headCount, kvHeadCount, headDim, seed: 2);
        float[] edq = new float[p.Q.Length];
        float[] edk = new float[p.K.Length];
        float[] edv = new float[p.V.Length];
        p.RunForwardBackward(isa);
        fixed (float* q = p.Q, k = p.K, v = p.V, o = p.Output, lse = p.Lse, dO = p.DOutput, dq = edq, dk = edk, dv = edv)
        {
            ReferenceAttention.Backward(dO, q, k, v, o, lse, batchSize, seqLen, headCount, kvHeadCount, headDim, dq, dk, dv);
        }

        AssertClose(edq, p.DQ, Tolerance, "dq");
        AssertClose(edk, p.DK, Tolerance, "dk");
        AssertClose(edv, p.DV, Tolerance, "dv");
    }

    public static TheoryData<int, int, int, int, int, int, string> WindowShapesAndIsas()
    {
        var data = new TheoryData<int, int, int, int, int, int, string>();
        foreach (string isa in new[] { "Scalar", "V128", "V256", "V512" })
        {
            // B, T, H, KvH, D, W: W = 1 (only itself), W smaller than a query block, W between tiles, W ≥ T (= causal)
            data.Add(1, 37, 2, 1, 8, 1, isa);
            data.Add(2, 70, 4, 2, 8, 5, isa);
            data.Add(1, 130, 4, 1, 16, 17, isa);
            data.Add(1, 200, 2, 2, 32, 61, isa);
            data.Add(1, 150, 4, 2, 6, 100, isa);
            data.Add(1, 33, 2, 1, 8, 64, isa);
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(WindowShapesAndIsas))]
    public void ForwardBackward_SlidingWindow_MatchesReference(int batchSize, int seqLen, int headCount, int kvHeadCount, int headDim, int window, string isaName)
    {
        IsaWidth isa = Enum.Parse<IsaWidth>(isaName);
        var p = Problem.Create(batchSize, seqLen, headCount, kvHeadCount, headDim, seed: 7);
        float[] eo = new float[p.Q.Length], elseP = new float[p.Lse.Length];
        float[] edq = new float[p.Q.Length], edk = new float[p.K.Length], edv = new float[p.V.Length];
        fixed (float* q = p.Q, k = p.K, v = p.V, o = p.Output, lse = p.Lse, dO = p.DOutput, dq = p.DQ, dk = p.DK, dv = p.DV)
        fixed (float* eoP = eo, elsePtr = elseP, edqP = edq, edkP = edk, edvP = edv)
        {
            FlashAttention.Forward(q, k, v, batchSize, seqLen, headCount, kvHeadCount, headDim, o, lse, isa, window);
            new Span<float>(dq, p.DQ.Length).Clear();
            new Span<float>(dk, p.DK.Length).Clear();
            new Span<float>(dv, p.DV.Length).Clear();
            FlashAttention.Backward(dO, q, k, v, o, lse, batchSize, seqLen, headCount, kvHeadCount, headDim, dq, dk, dv, isa, window);
            ReferenceAttention.Forward(q, k, v, batchSize, seqLen, headCount, kvHeadCount, headDim, eoP, elsePtr, window);
            ReferenceAttention.Backward(dO, q, k, v, eoP, elsePtr, batchSize, seqLen, headCount, kvHeadCount, headDim, edqP, edkP, edvP, window);
        }

        AssertClose(eo, p.Output, Tolerance, $"output W={window}");
        AssertClose(elseP, p.Lse, Tolerance, $"lse W={window}");
        if (window == 1)
        {
            // Each query sees only itself: p = 1, ds = p·(dO·v − dO·out) = 0 exactly in math; dq, dk are rounding noise.
            Assert.All(p.DQ, x => Assert.True(Math.Abs(x) < 1e-5, $"dq W=1: {x}"));
            Assert.All(p.DK, x => Assert.True(Math.Abs(x) < 1e-5, $"dk W=1: {x}"));
        }
        else
        {
            AssertClose(edq, p.DQ, Tolerance, $"dq W={window}");
            AssertClose(edk, p.DK, Tolerance, $"dk W={window}");
        }

        AssertClose(edv, p.DV, Tolerance, $"dv W={window}");
    }

    public static TheoryData<int, int, int, string, int, string> DocumentShapesAndIsas()
    {
        var data = new TheoryData<int, int, int, string, int, string>();
        foreach (string isa in new[] { "Scalar", "V128", "V256", "V512" })
        {
            // B, T, KvH, document lengths per row ("|" between rows), W: one-token documents, boundaries on and off tile
            // and query-block edges, a long document after short ones, window and documents together.
            data.Add(1, 37, 1, "1,1,35", 0, isa);
            data.Add(1, 130, 2, "16,32,48,34", 0, isa);
            data.Add(2, 100, 1, "3,60,37|100", 0, isa);
            data.Add(1, 200, 2, "7,1,1,150,41", 0, isa);
            data.Add(1, 150, 1, "70,80", 17, isa);
            data.Add(2, 64, 2, "64|10,10,10,34", 5, isa);
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(DocumentShapesAndIsas))]
    public void ForwardBackward_DocumentMask_MatchesReference(int batchSize, int seqLen, int kvHeadCount, string lengths, int window, string isaName)
    {
        IsaWidth isa = Enum.Parse<IsaWidth>(isaName);
        const int H = 4, D = 8;
        int[] starts = DocumentStarts(lengths, batchSize, seqLen);
        var p = Problem.Create(batchSize, seqLen, H, kvHeadCount, D, seed: 11);
        float[] eo = new float[p.Q.Length], elseP = new float[p.Lse.Length];
        float[] edq = new float[p.Q.Length], edk = new float[p.K.Length], edv = new float[p.V.Length];
        fixed (float* q = p.Q, k = p.K, v = p.V, o = p.Output, lse = p.Lse, dO = p.DOutput, dq = p.DQ, dk = p.DK, dv = p.DV)
        fixed (float* eoP = eo, elsePtr = elseP, edqP = edq, edkP = edk, edvP = edv)
        fixed (int* st = starts)
        {
            FlashAttention.Forward(q, k, v, batchSize, seqLen, H, kvHeadCount, D, o, lse, isa, window, st);
            FlashAttention.Backward(dO, q, k, v, o, lse, batchSize, seqLen, H, kvHeadCount, D, dq, dk, dv, isa, window, st);
            ReferenceAttention.Forward(q, k, v, batchSize, seqLen, H, kvHeadCount, D, eoP, elsePtr, window, starts);
            ReferenceAttention.Backward(dO, q, k, v, eoP, elsePtr, batchSize, seqLen, H, kvHeadCount, D, edqP, edkP, edvP, window, starts);
        }

        AssertClose(eo, p.Output, Tolerance, $"output {lengths}");
        AssertClose(elseP, p.Lse, Tolerance, $"lse {lengths}");
        AssertClose(edq, p.DQ, Tolerance, $"dq {lengths}");
        AssertClose(edk, p.DK, Tolerance, $"dk {lengths}");
        AssertClose(edv, p.DV, Tolerance, $"dv {lengths}");
    }

    [Theory]
    [InlineData("Scalar")]
    [InlineData("V256")]
    [InlineData("V512")]
    public void DocumentMask_PackedRow_EqualsEachDocumentAlone(string isaName)
    {
        // A packed row of three documents against each document as its own sequence: same outputs and gradients.
        IsaWidth isa = Enum.Parse<IsaWidth>(isaName);
        const int H = 4, KvH = 2, D = 16;
        int[] lengths = [45, 1, 84];
        int T = lengths.Sum();
        int[] starts = DocumentStarts(string.Join(',', lengths), 1, T);
        var packed = Problem.Create(1, T, H, KvH, D, seed: 5);
        fixed (int* st = starts)
        {
            packed.RunForwardBackward(isa, documentStarts: st);
        }

        int first = 0;
        foreach (int n in lengths)
        {
            var alone = new Problem
            {
                B = 1,
                T = n,
                H = H,
                KvH = KvH,
                D = D,
                Q = packed.Q.AsSpan(first * H * D, n * H * D).ToArray(),
                K = packed.K.AsSpan(first * KvH * D, n * KvH * D).ToArray(),
                V = packed.V.AsSpan(first * KvH * D, n * KvH * D).ToArray(),
                DOutput = packed.DOutput.AsSpan(first * H * D, n * H * D).ToArray(),
                Output = new float[n * H * D],
                Lse = new float[H * n],
                DQ = new float[n * H * D],
                DK = new float[n * KvH * D],
                DV = new float[n * KvH * D],
            };
            alone.RunForwardBackward(isa);
            AssertClose(alone.Output, packed.Output.AsSpan(first * H * D, n * H * D).ToArray(), 2e-6, $"output of document at {first}");
            AssertClose(alone.DQ, packed.DQ.AsSpan(first * H * D, n * H * D).ToArray(), 2e-6, $"dq of document at {first}");
            AssertClose(alone.DK, packed.DK.AsSpan(first * KvH * D, n * KvH * D).ToArray(), 2e-6, $"dk of document at {first}");
            AssertClose(alone.DV, packed.DV.AsSpan(first * KvH * D, n * KvH * D).ToArray(), 2e-6, $"dv of document at {first}");
            for (int h = 0; h < H; h++)
            {
                AssertClose(alone.Lse.AsSpan(h * n, n).ToArray(), packed.Lse.AsSpan((h * T) + first, n).ToArray(), 2e-6, $"lse of document at {first}");
            }

            first += n;
        }
    }

    /// <summary>Per-token document starts from "len,len|len,..." (rows separated by "|").</summary>
    private static int[] DocumentStarts(string lengths, int batchSize, int seqLen)
    {
        string[] rows = lengths.Split('|');
        Assert.Equal(batchSize, rows.Length);
        var ids = new int[batchSize * seqLen];
        for (int b = 0; b < batchSize; b++)
        {
            int t = 0, doc = 0;
            foreach (int n in rows[b].Split(',').Select(int.Parse))
            {
                ids.AsSpan((b * seqLen) + t, n).Fill(doc++);
                t += n;
            }

            Assert.Equal(seqLen, t);
        }

        var starts = new int[ids.Length];
        DocumentLayout.Starts(ids, batchSize, seqLen, starts);
        return starts;
    }

    [Fact]
    public void SlidingWindow_LargerThanT_EqualsCausalBitForBit()
    {
        const int B = 1, T = 45, H = 2, KvH = 1, D = 8;
        var full = Problem.Create(B, T, H, KvH, D, seed: 8);
        var windowed = Problem.Create(B, T, H, KvH, D, seed: 8);
        fixed (float* q = full.Q, k = full.K, v = full.V, o = full.Output, lse = full.Lse, o2 = windowed.Output, lse2 = windowed.Lse)
        {
            FlashAttention.Forward(q, k, v, B, T, H, KvH, D, o, lse, isa: null);
            FlashAttention.Forward(q, k, v, B, T, H, KvH, D, o2, lse2, isa: null, slidingWindow: T);
        }

        Assert.Equal(full.Output, windowed.Output);
    }

    [Fact]
    public void ReferenceBackward_TinyShape_MatchesFiniteDifference()
    {
        const int B = 2, T = 4, H = 4, KvH = 2, D = 2;
        var rng = new Random(3);
        double[] q = RandomDoubles(rng, B * T * H * D);
        double[] k = RandomDoubles(rng, B * T * KvH * D);
        double[] v = RandomDoubles(rng, B * T * KvH * D);
        double[] weights = RandomDoubles(rng, q.Length); // loss = Σ weights ∘ output, so dOutput = weights
        double[] dq = new double[q.Length];
        double[] dk = new double[k.Length];
        double[] dv = new double[v.Length];
        ReferenceAttention.BackwardDouble(weights, q, k, v, B, T, H, KvH, D, dq, dk, dv);

        double Loss()
        {
            double[] output = new double[q.Length];
            ReferenceAttention.ForwardDouble(q, k, v, B, T, H, KvH, D, output, new double[B * H * T]);
            double sum = 0;
            for (int i = 0; i < output.Length; i++)
            {
                sum += weights[i] * output[i];
            }

            return sum;
        }

        foreach ((double[] x, double[] dx, string name) in new[] { (q, dq, "q"), (k, dk, "k"), (v, dv, "v") })
        {
            for (int i = 0; i < x.Length; i++)
            {
                const double Step = 1e-5;
                double saved = x[i];
                x[i] = saved + Step;
                double plus = Loss();
                x[i] = saved - Step;
                double minus = Loss();
                x[i] = saved;
                double numeric = (plus - minus) / (2 * Step);
                Assert.True(Math.Abs(numeric - dx[i]) <= 1e-8 + (1e-6 * Math.Abs(numeric)), $"d{name}[{i}]: analytic {dx[i]}, numeric {numeric}");
            }
        }
    }

    [Theory]
    [InlineData("Scalar")]
    [InlineData("V128")]
    [InlineData("V256")]
    [InlineData("V512")]
    public void Backward_NonZeroGradients_Accumulates(string isaName)
    {
        IsaWidth isa = Enum.Parse<IsaWidth>(isaName);
        const int B = 2, T = 50, H = 4, KvH = 2, D = 16;
        var fresh = Problem.Create(B, T, H, KvH, D, seed: 4);
        fresh.RunForwardBackward(isa);
        var accumulated = Problem.Create(B, T, H, KvH, D, seed: 4);
        var rng = new Random(5);
        float[] dq0 = RandomFloats(rng, accumulated.DQ.Length);
        float[] dk0 = RandomFloats(rng, accumulated.DK.Length);
        float[] dv0 = RandomFloats(rng, accumulated.DV.Length);
        dq0.CopyTo(accumulated.DQ, 0);
        dk0.CopyTo(accumulated.DK, 0);
        dv0.CopyTo(accumulated.DV, 0);
        accumulated.RunForwardBackward(isa, zeroGradients: false);

        AssertClose(Add(dq0, fresh.DQ), accumulated.DQ, 1e-6, "dq");
        AssertClose(Add(dk0, fresh.DK), accumulated.DK, 1e-6, "dk");
        AssertClose(Add(dv0, fresh.DV), accumulated.DV, 1e-6, "dv");
    }

    public static TheoryData<string, int, int> ThreadCases()
    {
        var data = new TheoryData<string, int, int>();
        foreach (string isa in new[] { "Scalar", "V128", "V256", "V512" })
        {
            data.Add(isa, 2, 2); // even B·KvH: one backward task per (batch, kv head)
            data.Add(isa, 1, 1); // MQA at batch 1: the backward splits the query blocks in two
            data.Add(isa, 3, 1); // odd B·KvH: split too
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(ThreadCases))]
    public void ForwardBackward_OneVersusTwoThreads_BitIdentical(string isaName, int B, int KvH)
    {
        IsaWidth isa = Enum.Parse<IsaWidth>(isaName);
        const int T = 150, H = 4, D = 32;
        int saved = KernelThreads.ThreadCount;
        try
        {
            KernelThreads.SetThreadCount(1);
            var one = Problem.Create(B, T, H, KvH, D, seed: 6);
            one.RunForwardBackward(isa);
            KernelThreads.SetThreadCount(2);
            var two = Problem.Create(B, T, H, KvH, D, seed: 6);
            two.RunForwardBackward(isa);
            one.AssertBitIdentical(two);
        }
        finally
        {
            KernelThreads.SetThreadCount(saved);
        }
    }

    [Fact]
    public void PublicApi_DefaultIsa_MatchesReference()
    {
        const int B = 1, T = 90, H = 8, KvH = 2, D = 32;
        var p = Problem.Create(B, T, H, KvH, D, seed: 7);
        float[] expectedOut = new float[p.Q.Length];
        float[] expectedLse = new float[p.Lse.Length];
        float[] edq = new float[p.Q.Length];
        float[] edk = new float[p.K.Length];
        float[] edv = new float[p.V.Length];
        fixed (float* q = p.Q, k = p.K, v = p.V, o = p.Output, lse = p.Lse, dO = p.DOutput, dq = p.DQ, dk = p.DK, dv = p.DV)
        fixed (float* eo = expectedOut, elseP = expectedLse, edqp = edq, edkp = edk, edvp = edv)
        {
            FlashAttention.Forward(q, k, v, B, T, H, KvH, D, o, lse);
            FlashAttention.Backward(dO, q, k, v, o, lse, B, T, H, KvH, D, dq, dk, dv);
            ReferenceAttention.Forward(q, k, v, B, T, H, KvH, D, eo, elseP);
            ReferenceAttention.Backward(dO, q, k, v, eo, elseP, B, T, H, KvH, D, edqp, edkp, edvp);
        }

        AssertClose(expectedOut, p.Output, Tolerance, "output");
        AssertClose(expectedLse, p.Lse, Tolerance, "lse");
        AssertClose(edq, p.DQ, Tolerance, "dq");
        AssertClose(edk, p.DK, Tolerance, "dk");
        AssertClose(edv, p.DV, Tolerance, "dv");
    }

    [Fact]
    public void Forward_HeadCountNotMultipleOfKvHeads_Throws()
    {
        float[] x = new float[64];
        fixed (float* p = x)
        {
            float* q = p;
            Assert.Throws<ArgumentException>(() => FlashAttention.Forward(q, q, q, 1, 2, 3, 2, 2, q, q));
        }
    }

    public static TheoryData<string, int, int> QueryChunkCases()
    {
        var data = new TheoryData<string, int, int>();
        foreach (string isa in new[] { "Scalar", "V128", "V256", "V512" })
        {
            // T, chunk: chunks that do and do not divide T, multiples of every row block (32, 64) or of none (1, 13, 100);
            // a chunk ≥ T is one chunk, listed once.
            foreach (int seqLen in new[] { 1, 7, 64, 100, 257 })
            {
                foreach (int chunk in new[] { 1, 13, 32, 64, 100 }.Select(c => Math.Min(c, seqLen)).Distinct())
                {
                    data.Add(isa, seqLen, chunk);
                }
            }
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(QueryChunkCases))]
    public void ForwardBackwardQueries_ChunkByChunk_MatchFullSequence(string isaName, int seqLen, int chunk)
    {
        // The sequence-chunked layers' use: forward chunk by chunk from the first, backward from the last chunk, against
        // the full-sequence kernel, for GQA, MQA and MHA, two head sizes, with and without window and packed documents.
        IsaWidth isa = Enum.Parse<IsaWidth>(isaName);
        foreach ((int h, int kvh, int d) in new[] { (8, 2, 32), (8, 2, 16), (4, 1, 16), (4, 4, 32) })
        {
            foreach (int window in new[] { 0, 1 + (seqLen / 3) })
            {
                foreach (bool documents in new[] { false, true })
                {
                    string name = $"T={seqLen} chunk={chunk} H={h} KvH={kvh} D={d} W={window} documents={documents}";
                    int[]? starts = documents ? RandomDocumentStarts(seqLen, seed: seqLen + chunk) : null;
                    var full = Problem.Create(1, seqLen, h, kvh, d, seed: 12);
                    var chunked = Problem.Create(1, seqLen, h, kvh, d, seed: 12);
                    fixed (float* q = full.Q, k = full.K, v = full.V, o = full.Output, lse = full.Lse, dO = full.DOutput, dq = full.DQ, dk = full.DK, dv = full.DV)
                    fixed (int* st = starts)
                    {
                        FlashAttention.Forward(q, k, v, 1, seqLen, h, kvh, d, o, lse, isa, window, st);
                        FlashAttention.Backward(dO, q, k, v, o, lse, 1, seqLen, h, kvh, d, dq, dk, dv, isa, window, st);
                        chunked.RunQueryChunks(chunk, isa, window, st);
                    }

                    if (window == 0 && !documents)
                    {
                        // Every row sees the same key tiles (from key 0) as in the full kernel: the same floats.
                        Assert.Equal(full.Output, chunked.Output);
                        Assert.Equal(full.Lse, chunked.Lse);
                    }
                    else
                    {
                        AssertClose(full.Output, chunked.Output, 1e-6, $"output {name}");
                        AssertClose(full.Lse, chunked.Lse, 1e-6, $"lse {name}");
                    }

                    AssertClose(full.DQ, chunked.DQ, 1e-6, $"dq {name}");
                    AssertClose(full.DK, chunked.DK, 1e-6, $"dk {name}");
                    AssertClose(full.DV, chunked.DV, 1e-6, $"dv {name}");
                }
            }
        }
    }

    [Theory]
    [InlineData("Scalar")]
    [InlineData("V128")]
    [InlineData("V256")]
    [InlineData("V512")]
    public void Queries_BuffersSizedToTheChunk_NothingBeyondReadOrWritten(string isaName)
    {
        // Every chunk gets buffers exactly as long as its contract says, followed by padding: NaN after the inputs (a
        // read past them would poison the results), a sentinel after the outputs and after the workspace (must stay).
        // MQA (KvH = 1) so the backward splits its query blocks and uses the workspace; gradients start at 1 (+=).
        IsaWidth isa = Enum.Parse<IsaWidth>(isaName);
        const int T = 100, H = 4, KvH = 1, D = 16, W = 30, Pad = 70;
        const float Sentinel = 777f;
        int[] starts = RandomDocumentStarts(T, seed: 3);
        var expected = Problem.Create(1, T, H, KvH, D, seed: 13);
        fixed (int* st = starts)
        {
            expected.RunQueryChunks(13, isa, W, st);
        }

        foreach (int chunk in new[] { 13, 64 })
        {
            var p = Problem.Create(1, T, H, KvH, D, seed: 13);
            p.DQ.AsSpan().Fill(1f);
            p.DK.AsSpan().Fill(1f);
            p.DV.AsSpan().Fill(1f);
            int chunks = (T + chunk - 1) / chunk;
            for (int backward = 0; backward < 2; backward++)
            {
                for (int c = 0; c < chunks; c++)
                {
                    int queryStart = (backward == 0 ? c : chunks - 1 - c) * chunk;
                    int rows = Math.Min(chunk, T - queryStart), keys = queryStart + rows;
                    int qCount = rows * H * D, kvCount = keys * KvH * D;
                    float[] q = Padded(p.Q.AsSpan(queryStart * H * D, qCount), float.NaN);
                    float[] dO = Padded(p.DOutput.AsSpan(queryStart * H * D, qCount), float.NaN);
                    float[] o = Padded(p.Output.AsSpan(queryStart * H * D, qCount), backward == 0 ? Sentinel : float.NaN);
                    float[] lse = Padded(new float[H * rows], backward == 0 ? Sentinel : float.NaN);
                    float[] dq = Padded(p.DQ.AsSpan(queryStart * H * D, qCount), Sentinel);
                    float[] k = Padded(p.K.AsSpan(0, kvCount), float.NaN);
                    float[] v = Padded(p.V.AsSpan(0, kvCount), float.NaN);
                    float[] dk = Padded(p.DK.AsSpan(0, kvCount), Sentinel);
                    float[] dv = Padded(p.DV.AsSpan(0, kvCount), Sentinel);
                    float[] workspace = Padded(new float[FlashAttention.BackwardQueriesWorkspaceFloats(queryStart, rows, KvH, D)], Sentinel);
                    int[] chunkStarts = [.. starts.AsSpan(0, keys), .. Enumerable.Repeat(int.MinValue, Pad)];
                    for (int h = 0; h < H && backward == 1; h++)
                    {
                        p.Lse.AsSpan((h * T) + queryStart, rows).CopyTo(lse.AsSpan(h * rows));
                    }

                    fixed (float* qP = q, kP = k, vP = v, oP = o, lseP = lse, dOP = dO, dqP = dq, dkP = dk, dvP = dv, ws = workspace)
                    fixed (int* st = chunkStarts)
                    {
                        if (backward == 0)
                        {
                            FlashAttention.ForwardQueries(qP, kP, vP, queryStart, rows, H, KvH, D, oP, lseP, isa, W, st);
                        }
                        else
                        {
                            FlashAttention.BackwardQueries(dOP, qP, kP, vP, oP, lseP, queryStart, rows, H, KvH, D, dqP, dkP, dvP, isa, W, st, ws);
                        }
                    }

                    string name = $"chunk {queryStart}+{rows}";
                    AssertPadding(dk, kvCount, Sentinel, $"dk past {name}");
                    AssertPadding(dv, kvCount, Sentinel, $"dv past {name}");
                    AssertPadding(dq, qCount, Sentinel, $"dq past {name}");
                    AssertPadding(workspace, workspace.Length - Pad, Sentinel, $"workspace past {name}");
                    if (backward == 0)
                    {
                        AssertPadding(o, qCount, Sentinel, $"output past {name}");
                        AssertPadding(lse, H * rows, Sentinel, $"lse past {name}");
                        o.AsSpan(0, qCount).CopyTo(p.Output.AsSpan(queryStart * H * D));
                        for (int h = 0; h < H; h++)
                        {
                            lse.AsSpan(h * rows, rows).CopyTo(p.Lse.AsSpan((h * T) + queryStart));
                        }
                    }
                    else
                    {
                        dq.AsSpan(0, qCount).CopyTo(p.DQ.AsSpan(queryStart * H * D));
                        dk.AsSpan(0, kvCount).CopyTo(p.DK);
                        dv.AsSpan(0, kvCount).CopyTo(p.DV);
                    }
                }
            }

            AssertClose(expected.Output, p.Output, 1e-6, $"output, chunk {chunk}");
            AssertClose(expected.Lse, p.Lse, 1e-6, $"lse, chunk {chunk}");
            AssertClose(Add(expected.DQ, Ones(p.DQ.Length)), p.DQ, 1e-6, $"dq, chunk {chunk}");
            AssertClose(Add(expected.DK, Ones(p.DK.Length)), p.DK, 1e-6, $"dk, chunk {chunk}");
            AssertClose(Add(expected.DV, Ones(p.DV.Length)), p.DV, 1e-6, $"dv, chunk {chunk}");
        }

        static float[] Padded(ReadOnlySpan<float> values, float padding) => [.. values, .. Enumerable.Repeat(padding, Pad)];

        static float[] Ones(int count) => Enumerable.Repeat(1f, count).ToArray();

        static void AssertPadding(float[] buffer, int length, float padding, string name)
        {
            for (int i = length; i < buffer.Length; i++)
            {
                Assert.True(buffer[i].Equals(padding), $"{name}: [{i}] = {buffer[i]}, written past the buffer");
            }
        }
    }

    public static TheoryData<string, int, int> QueryThreadCases()
    {
        var data = new TheoryData<string, int, int>();
        foreach (string isa in new[] { "Scalar", "V128", "V256", "V512" })
        {
            data.Add(isa, 2, 0);  // even KvH: one backward task per kv head
            data.Add(isa, 1, 0);  // MQA: the backward splits the chunk's query blocks in two
            data.Add(isa, 1, 23); // MQA with window and packed documents: the split point follows the masked work
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(QueryThreadCases))]
    public void Queries_OneVersusTwoThreads_BitIdentical(string isaName, int kvHeadCount, int window)
    {
        IsaWidth isa = Enum.Parse<IsaWidth>(isaName);
        const int T = 150, H = 4, D = 32, Chunk = 40;
        int[]? starts = window > 0 ? RandomDocumentStarts(T, seed: 9) : null;
        int saved = KernelThreads.ThreadCount;
        try
        {
            KernelThreads.SetThreadCount(1);
            var one = Problem.Create(1, T, H, kvHeadCount, D, seed: 6);
            var two = Problem.Create(1, T, H, kvHeadCount, D, seed: 6);
            fixed (int* st = starts)
            {
                one.RunQueryChunks(Chunk, isa, window, st);
                KernelThreads.SetThreadCount(2);
                two.RunQueryChunks(Chunk, isa, window, st);
            }

            one.AssertBitIdentical(two);
        }
        finally
        {
            KernelThreads.SetThreadCount(saved);
        }
    }

    public static TheoryData<string, int, int, int> BufferReuseCases()
    {
        var data = new TheoryData<string, int, int, int>();
        foreach (string isa in new[] { "Scalar", "V128", "V256", "V512" })
        {
            data.Add(isa, 2, 2, 0);  // GQA, one backward task per (batch, kv head)
            data.Add(isa, 1, 1, 0);  // MQA at batch 1: two query splits
            data.Add(isa, 3, 1, 23); // odd B·KvH, sliding window and packed documents
        }

        return data;
    }

    /// <summary>Per-token document starts of B equal rows of packed documents (window &gt; 0), or null.</summary>
    private static int[]? PackedRows(int batchSize, int seqLen, int window)
    {
        int[]? starts = window > 0 ? DocumentStarts("1,40,7,80,22", 1, seqLen) : null;
        return starts == null ? null : Enumerable.Range(0, batchSize).SelectMany(_ => starts).ToArray();
    }

    [Theory]
    [MemberData(nameof(BufferReuseCases))]
    public void Forward_OutputOverQ_BitIdentical(string isaName, int B, int KvH, int window)
    {
        // Ulysses writes the heads' output over their q: every q row must be read before its output row is written.
        IsaWidth isa = Enum.Parse<IsaWidth>(isaName);
        const int T = 150, H = 4, D = 32;
        int[]? rows = PackedRows(B, T, window);
        var expected = Problem.Create(B, T, H, KvH, D, seed: 15);
        var inPlace = Problem.Create(B, T, H, KvH, D, seed: 15);
        fixed (int* st = rows)
        fixed (float* q = expected.Q, k = expected.K, v = expected.V, o = expected.Output, lse = expected.Lse)
        fixed (float* q2 = inPlace.Q, k2 = inPlace.K, v2 = inPlace.V, lse2 = inPlace.Lse)
        {
            FlashAttention.Forward(q, k, v, B, T, H, KvH, D, o, lse, isa, window, st);
            FlashAttention.Forward(q2, k2, v2, B, T, H, KvH, D, q2, lse2, isa, window, st);
        }

        Assert.Equal(expected.Output, inPlace.Q);
        Assert.Equal(expected.Lse, inPlace.Lse);
    }

    [Theory]
    [MemberData(nameof(BufferReuseCases))]
    public void Backward_RowDotGiven_OutputBufferReusedAsDq_BitIdentical(string isaName, int B, int KvH, int window)
    {
        // The trainer takes rowsum(dO∘O) first (RowDot), then hands the output's buffer over as dq (output: null).
        IsaWidth isa = Enum.Parse<IsaWidth>(isaName);
        const int T = 150, H = 4, D = 32;
        int[]? rows = PackedRows(B, T, window);
        var expected = Problem.Create(B, T, H, KvH, D, seed: 14);
        var given = Problem.Create(B, T, H, KvH, D, seed: 14);
        float[] rowDot = new float[B * H * T];
        fixed (int* st = rows)
        {
            expected.RunForwardBackward(isa, documentStarts: st, slidingWindow: window);
            fixed (float* q = given.Q, k = given.K, v = given.V, o = given.Output, lse = given.Lse, dO = given.DOutput, dk = given.DK, dv = given.DV, rd = rowDot)
            {
                FlashAttention.Forward(q, k, v, B, T, H, KvH, D, o, lse, isa, window, st);
                for (int b = 0; b < B; b++)
                {
                    FlashAttention.RowDot(dO + (b * T * H * D), o + (b * T * H * D), T, H, D, rd + (b * H * T), rowStride: 1, headStride: T);
                }

                given.Output.AsSpan().Clear(); // now dq
                FlashAttention.Backward(dO, q, k, v, null, lse, B, T, H, KvH, D, o, dk, dv, isa, window, st, workspace: null, rowDot: rd);
            }
        }

        Assert.Equal(expected.DQ, given.Output);
        Assert.Equal(expected.DK, given.DK);
        Assert.Equal(expected.DV, given.DV);
    }

    public static TheoryData<string, int, int, int, int> Bf16InputCases()
    {
        var data = new TheoryData<string, int, int, int, int>();
        foreach (string isa in new[] { "Scalar", "V128", "V256", "V512" })
        {
            data.Add(isa, 2, 2, 0, 150);  // GQA, T not a multiple of any tile
            data.Add(isa, 1, 1, 0, 257);  // MQA at batch 1: two query splits
            data.Add(isa, 3, 1, 23, 150); // odd B·KvH, sliding window and packed documents
            data.Add(isa, 1, 2, 0, 1);    // one token
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(Bf16InputCases))]
    public void Bf16Inputs_EqualFp32OnTheWidenedInputs_BitForBit(string isaName, int B, int KvH, int window, int T)
    {
        // Mixed precision keeps q, k, v as bf16: the kernels widen each tile's rows as they reach them, which must give
        // exactly what the fp32 kernels give on the widened tensors (the rows, strides and masks of every tile).
        IsaWidth isa = Enum.Parse<IsaWidth>(isaName);
        const int H = 4, D = 32;
        int[]? rows = PackedRows(B, T, window);
        var expected = Problem.Create(B, T, H, KvH, D, seed: 16);
        (ushort[] qb, expected.Q) = RoundToBf16(expected.Q);
        (ushort[] kb, expected.K) = RoundToBf16(expected.K);
        (ushort[] vb, expected.V) = RoundToBf16(expected.V);
        float[] output = new float[expected.Output.Length], lse = new float[expected.Lse.Length], rowDot = new float[B * H * T];
        float[] dq = new float[expected.DQ.Length], dk = new float[expected.DK.Length], dv = new float[expected.DV.Length];
        fixed (int* st = rows)
        {
            expected.RunForwardBackward(isa, documentStarts: st, slidingWindow: window);
            fixed (ushort* q = qb, k = kb, v = vb)
            fixed (float* o = output, l = lse, rd = rowDot, dO = expected.DOutput, dqp = dq, dkp = dk, dvp = dv)
            {
                FlashAttention.Forward(q, k, v, B, T, H, KvH, D, o, l, isa, window, st);
                for (int b = 0; b < B; b++)
                {
                    FlashAttention.RowDot(dO + (b * T * H * D), o + (b * T * H * D), T, H, D, rd + (b * H * T), rowStride: 1, headStride: T);
                }

                FlashAttention.Backward(dO, q, k, v, l, B, T, H, KvH, D, dqp, dkp, dvp, isa, window, st, workspace: null, rowDot: rd);
            }
        }

        Assert.Equal(expected.Output, output);
        Assert.Equal(expected.Lse, lse);
        Assert.Equal(expected.DQ, dq);
        Assert.Equal(expected.DK, dk);
        Assert.Equal(expected.DV, dv);
    }

    /// <summary>x rounded to bf16: the bits, and their (exact) widening.</summary>
    private static (ushort[] Bits, float[] Widened) RoundToBf16(float[] x)
    {
        ushort[] bits = new ushort[x.Length];
        float[] widened = new float[x.Length];
        fixed (float* src = x, dst = widened)
        fixed (ushort* b = bits)
        {
            BFloat16.FromFloat(src, b, x.Length);
            BFloat16.ToFloat(b, dst, x.Length);
        }

        return (bits, widened);
    }

    [Fact]
    public void Queries_InvalidArguments_Throw()
    {
        float[] x = new float[256];
        fixed (float* p = x)
        {
            float* f = p;
            Assert.Throws<ArgumentOutOfRangeException>(() => FlashAttention.ForwardQueries(f, f, f, -1, 2, 2, 1, 2, f, f, 0, null));
            Assert.Throws<ArgumentOutOfRangeException>(() => FlashAttention.ForwardQueries(f, f, f, 3, 0, 2, 1, 2, f, f, 0, null));
            Assert.Throws<ArgumentOutOfRangeException>(() => FlashAttention.ForwardQueries(f, f, f, 3, 2, 2, 1, 2, f, f, -1, null));
            Assert.Throws<ArgumentException>(() => FlashAttention.ForwardQueries(f, f, f, 3, 2, 3, 2, 2, f, f, 0, null));
            Assert.Throws<ArgumentOutOfRangeException>(() => FlashAttention.BackwardQueries(f, f, f, f, f, f, int.MaxValue, 2, 2, 1, 2, f, f, f, 0, null));
            Assert.Throws<ArgumentNullException>(() => FlashAttention.BackwardQueries(f, f, f, f, f, f, 3, 2, 2, 1, 2, f, null, f, 0, null));
        }

        Assert.Equal(2L * 15 * 3 * 8, FlashAttention.BackwardQueriesWorkspaceFloats(10, 5, 3, 8));
        Assert.Equal(0L, FlashAttention.BackwardQueriesWorkspaceFloats(10, 5, 2, 8));
    }

    /// <summary>Per-token document starts of one row of random packed documents: one-token ones and up to 80 long.</summary>
    private static int[] RandomDocumentStarts(int seqLen, int seed)
    {
        var rng = new Random(seed);
        var lengths = new List<int>();
        for (int t = 0; t < seqLen; t += lengths[^1])
        {
            lengths.Add(Math.Min(seqLen - t, rng.Next(4) == 0 ? 1 : rng.Next(1, 81)));
        }

        return DocumentStarts(string.Join(',', lengths), 1, seqLen);
    }

    private static void AssertClose(float[] expected, float[] actual, double tolerance, string name)
    {
        Assert.Equal(expected.Length, actual.Length);
        double diff = 0, norm = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            Assert.True(float.IsFinite(actual[i]), $"{name}[{i}] = {actual[i]}");
            diff += ((double)expected[i] - actual[i]) * ((double)expected[i] - actual[i]);
            norm += (double)expected[i] * expected[i];
        }

        double relative = Math.Sqrt(diff) / Math.Max(Math.Sqrt(norm), 1e-30);
        Assert.True(relative <= tolerance, $"{name}: relative error {relative:E3} > {tolerance:E1}");
    }

    private static float[] Add(float[] a, float[] b)
    {
        float[] sum = new float[a.Length];
        for (int i = 0; i < a.Length; i++)
        {
            sum[i] = a[i] + b[i];
        }

        return sum;
    }

    private static float[] RandomFloats(Random rng, int count)
    {
        float[] x = new float[count];
        for (int i = 0; i < count; i++)
        {
            x[i] = (float)((rng.NextDouble() * 2) - 1);
        }

        return x;
    }

    private static double[] RandomDoubles(Random rng, int count)
    {
        double[] x = new double[count];
        for (int i = 0; i < count; i++)
        {
            x[i] = (rng.NextDouble() * 2) - 1;
        }

        return x;
    }

    /// <summary>Random q, k, v, dOutput (scaled like real activations: scores of a few units) plus result buffers.</summary>
    private sealed class Problem
    {
        /// <summary>Every output (output, lse, dq, dk, dv) equal bit for bit to <paramref name="other"/>'s.</summary>
        public void AssertBitIdentical(Problem other)
        {
            Assert.Equal(other.Output, Output);
            Assert.Equal(other.Lse, Lse);
            Assert.Equal(other.DQ, DQ);
            Assert.Equal(other.DK, DK);
            Assert.Equal(other.DV, DV);
        }

        public required int B, T, H, KvH, D;
        public required float[] Q, K, V, DOutput, Output, Lse, DQ, DK, DV;

        public static Problem Create(int batchSize, int seqLen, int headCount, int kvHeadCount, int headDim, int seed)
        {
            var rng = new Random(seed);
            int qCount = batchSize * seqLen * headCount * headDim;
            int kvCount = batchSize * seqLen * kvHeadCount * headDim;
            float[] q = RandomFloats(rng, qCount);
            float[] k = RandomFloats(rng, kvCount);
            for (int i = 0; i < qCount; i++)
            {
                q[i] *= 2; // sharper softmax rows than uniform
            }

            return new Problem
            {
                B = batchSize,
                T = seqLen,
                H = headCount,
                KvH = kvHeadCount,
                D = headDim,
                Q = q,
                K = k,
                V = RandomFloats(rng, kvCount),
                DOutput = RandomFloats(rng, qCount),
                Output = new float[qCount],
                Lse = new float[batchSize * headCount * seqLen],
                DQ = new float[qCount],
                DK = new float[kvCount],
                DV = new float[kvCount],
            };
        }

        /// <summary>
        /// Forward with <see cref="FlashAttention.ForwardQueries(float*, float*, float*, int, int, int, int, int, float*, float*, IsaWidth?, int, int*)"/>
        /// chunk by chunk from the first, then backward chunk by chunk from the last (as a sequence-chunked layer does),
        /// into Output, Lse (laid out (H, T) like the full kernel's) and DQ, DK, DV (zeroed first). B must be 1.
        /// </summary>
        public void RunQueryChunks(int chunk, IsaWidth? isa, int slidingWindow, int* documentStarts)
        {
            Assert.Equal(1, B);
            Array.Clear(DQ);
            Array.Clear(DK);
            Array.Clear(DV);
            int chunks = (T + chunk - 1) / chunk;
            float[] chunkLse = new float[H * chunk];
            fixed (float* q = Q, k = K, v = V, o = Output, dO = DOutput, dq = DQ, dk = DK, dv = DV, lse = chunkLse)
            {
                for (int c = 0; c < chunks; c++)
                {
                    int start = c * chunk, rows = Math.Min(chunk, T - start);
                    long row = (long)start * H * D;
                    FlashAttention.ForwardQueries(q + row, k, v, start, rows, H, KvH, D, o + row, lse, isa, slidingWindow, documentStarts);
                    for (int h = 0; h < H; h++)
                    {
                        chunkLse.AsSpan(h * rows, rows).CopyTo(Lse.AsSpan((h * T) + start));
                    }
                }

                for (int c = chunks - 1; c >= 0; c--)
                {
                    int start = c * chunk, rows = Math.Min(chunk, T - start);
                    long row = (long)start * H * D;
                    for (int h = 0; h < H; h++)
                    {
                        Lse.AsSpan((h * T) + start, rows).CopyTo(chunkLse.AsSpan(h * rows));
                    }

                    FlashAttention.BackwardQueries(dO + row, q + row, k, v, o + row, lse, start, rows, H, KvH, D, dq + row, dk, dv, isa, slidingWindow, documentStarts);
                }
            }
        }

        public void RunForwardBackward(IsaWidth? isa, bool zeroGradients = true, int* documentStarts = null, int slidingWindow = 0)
        {
            if (zeroGradients)
            {
                Array.Clear(DQ);
                Array.Clear(DK);
                Array.Clear(DV);
            }

            fixed (float* q = Q, k = K, v = V, o = Output, lse = Lse, dO = DOutput, dq = DQ, dk = DK, dv = DV)
            {
                FlashAttention.Forward(q, k, v, B, T, H, KvH, D, o, lse, isa, slidingWindow, documentStarts);
                FlashAttention.Backward(dO, q, k, v, o, lse, B, T, H, KvH, D, dq, dk, dv, isa, slidingWindow, documentStarts);
            }
        }
    }
}
