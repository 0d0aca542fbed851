// MatMul.Gemm against the double-accumulating reference for every variant, transpose combination, beta and a spread
// of awkward shapes (0, 1, odd, non-multiples of every tile, k across several 256-slices, padded strides), plus
// thread-count determinism and argument checks. GemmBf16B (B stored as bf16 bits) against the fp32 Gemm on the widened
// B, bit for bit, over the same shapes, every variant and transpose, 1 and 2 threads, the parallel and super-slice paths.
// Deliberately not: performance checks (bench/ and docs/benchmarks/gemm.md), huge shapes (CI has 2 cores).
using System.Runtime.InteropServices;
using MiniSeq.IO;
using MiniSeq.Kernels;
using MiniSeq.Kernels.Reference;
using MiniSeq.Threading;

namespace MiniSeq.Tests.Kernels;

public unsafe class MatMulTests
{
    private static readonly (int M, int N, int K)[] s_shapes =
    [
        (0, 5, 3), (5, 0, 3), (4, 5, 0), (1, 1, 1), (1, 37, 1), (7, 1, 300), (2, 3, 4),
        (8, 32, 256), (6, 16, 17), (9, 33, 257), (17, 65, 513), (33, 31, 70), (13, 100, 5),
        (300, 70, 20), (64, 130, 40), (130, 200, 48),
        (16, 16, 16), (40, 16, 300), (35, 13, 520), // at most 16 wide: the narrow V512 tile, A read in place
    ];

    public static TheoryData<string, bool, bool, float> Combinations()
    {
        var data = new TheoryData<string, bool, bool, float>();
        foreach (string variant in new[] { "V512", "V256", "V128", "Scalar" })
        {
            foreach (bool transA in new[] { false, true })
            {
                foreach (bool transB in new[] { false, true })
                {
                    data.Add(variant, transA, transB, 0f);
                    data.Add(variant, transA, transB, 1f);
                }
            }
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(Combinations))]
    public void Gemm_ShapesAndStrides_MatchesReference(string variantName, bool transA, bool transB, float beta)
    {
        IsaWidth variant = Enum.Parse<IsaWidth>(variantName);
        if (!MatMul.IsSupported(variant))
        {
            return;
        }

        var random = new Random(1234);
        foreach ((int m, int n, int k) in s_shapes)
        {
            foreach (int pad in new[] { 0, 3 })
            {
                CheckAgainstReference(variant, transA, transB, m, n, k, pad, alpha: -0.75f, beta, random);
            }
        }
    }

    [Theory]
    [InlineData("V512")]
    [InlineData("V256")]
    [InlineData("V128")]
    [InlineData("Scalar")]
    public void Gemm_AlphaOneLargeShape_MatchesReference(string variantName)
    {
        IsaWidth variant = Enum.Parse<IsaWidth>(variantName);
        if (!MatMul.IsSupported(variant))
        {
            return;
        }

        // Large enough to take the multi-threaded path and several M and N blocks (m > 256, > 8 tiles).
        var random = new Random(7);
        CheckAgainstReference(variant, transA: false, transB: true, 520, 100, 300, pad: 1, alpha: 1f, beta: 1f, random);
        CheckAgainstReference(variant, transA: true, transB: false, 77, 600, 40, pad: 0, alpha: 1f, beta: 0f, random);
    }

    [Theory]
    [InlineData(true, false, 0f)]
    [InlineData(true, false, 1f)]
    [InlineData(false, false, 0f)]
    [InlineData(false, true, 1f)]
    public void Gemm_LongK_SuperSlicesMatchReference(bool transA, bool transB, float beta)
    {
        // k beyond MatMul.KSuper (a weight gradient summed over many tokens) is packed in bounded super-slices.
        var random = new Random(11);
        CheckAgainstReference(MatMul.BestVariant, transA, transB, 40, 72, (2 * MatMul.KSuper) + 300, pad: 3, alpha: 0.5f, beta: beta, random);
    }

    [Fact]
    public void Gemm_PublicEntry_MatchesReference()
    {
        var random = new Random(3);
        float[] a = RandomArray(random, 37 * 29);
        float[] b = RandomArray(random, 29 * 41);
        float[] expected = new float[37 * 41];
        float[] actual = new float[37 * 41];
        fixed (float* pa = a, pb = b, pe = expected, pc = actual)
        {
            ReferenceMatMul.Gemm(false, false, 37, 41, 29, 1f, pa, 29, pb, 41, 0f, pe, 41);
            MatMul.Gemm(false, false, 37, 41, 29, 1f, pa, 29, pb, 41, 0f, pc, 41);
        }

        for (int i = 0; i < expected.Length; i++)
        {
            Assert.Equal(expected[i], actual[i], 1e-4f);
        }
    }

    [Theory]
    [InlineData(0.5f)]
    [InlineData(-2f)]
    public void Gemm_GeneralBeta_ScalesC(float beta)
    {
        var random = new Random(11);
        CheckAgainstReference(MatMul.DefaultVariant, transA: false, transB: false, 19, 45, 33, pad: 2, alpha: 1.5f, beta, random);
    }

    [Fact]
    public void Gemm_AlphaZero_OnlyScalesCAndIgnoresNaNInputs()
    {
        float[] a = [float.NaN, float.NaN, float.NaN, float.NaN];
        float[] b = [float.NaN, float.NaN, float.NaN, float.NaN];
        float[] c = [1f, 2f, 3f, 4f];
        fixed (float* pa = a, pb = b, pc = c)
        {
            MatMul.Gemm(false, false, 2, 2, 2, 0f, pa, 2, pb, 2, 1f, pc, 2);
            Assert.Equal([1f, 2f, 3f, 4f], c);
            MatMul.Gemm(false, false, 2, 2, 2, 0f, pa, 2, pb, 2, 0f, pc, 2);
            Assert.Equal([0f, 0f, 0f, 0f], c);
        }
    }

    [Fact]
    public void Gemm_KZeroBetaZero_ZeroesGarbageC()
    {
        float[] c = [float.NaN, float.NaN, float.NaN, 42f];
        fixed (float* pc = c)
        {
            MatMul.Gemm(false, false, 1, 3, 0, 1f, null, 0, null, 3, 0f, pc, 4);
        }

        Assert.Equal([0f, 0f, 0f, 42f], c);
    }

    [Theory]
    [InlineData(false, true, 600, 300, 520)]
    [InlineData(true, false, 300, 520, 700)]
    [InlineData(false, false, 77, 1000, 300)]
    public void Gemm_ThreadCountOneVersusTwo_BitIdentical(bool transA, bool transB, int m, int n, int k)
    {
        var random = new Random(5);
        float[] a = RandomArray(random, m * k);
        float[] b = RandomArray(random, k * n);
        float[] c0 = RandomArray(random, m * n);
        float[] single = (float[])c0.Clone();
        float[] dual = (float[])c0.Clone();
        int lda = transA ? m : k;
        int ldb = transB ? k : n;
        int saved = KernelThreads.ThreadCount;
        try
        {
            fixed (float* pa = a, pb = b, ps = single, pd = dual)
            {
                KernelThreads.SetThreadCount(1);
                MatMul.Gemm(transA, transB, m, n, k, 0.5f, pa, lda, pb, ldb, 1f, ps, n);
                KernelThreads.SetThreadCount(2);
                MatMul.Gemm(transA, transB, m, n, k, 0.5f, pa, lda, pb, ldb, 1f, pd, n);
            }
        }
        finally
        {
            KernelThreads.SetThreadCount(saved);
        }

        Assert.True(single.AsSpan().SequenceEqual(dual), "results differ between 1 and 2 threads");
    }

    [Theory]
    [InlineData("V512")]
    [InlineData("V256")]
    [InlineData("V128")]
    [InlineData("Scalar")]
    public void Gemm_VariantOneVersusTwoThreads_BitIdenticalAndEqualToScalar(string variantName)
    {
        // Every micro-kernel sums each C element in the same k order with the same FMAs, so every width gives the
        // scalar kernel's result bit for bit, on 1 thread and on 2.
        IsaWidth variant = Enum.Parse<IsaWidth>(variantName);
        if (!MatMul.IsSupported(variant))
        {
            return;
        }

        foreach ((int m, int n, int k) in new[] { (150, 90, 600), (150, 16, 600), (37, 11, 300) })
        {
            CheckVariantAgainstScalarOnOneAndTwoThreads(variant, m, n, k);
        }
    }

    private static void CheckVariantAgainstScalarOnOneAndTwoThreads(IsaWidth variant, int m, int n, int k)
    {
        var random = new Random(13);
        float[] a = RandomArray(random, m * k);
        float[] b = RandomArray(random, n * k);
        float[] c0 = RandomArray(random, m * n);
        float[] scalar = (float[])c0.Clone();
        float[] single = (float[])c0.Clone();
        float[] dual = (float[])c0.Clone();
        int saved = KernelThreads.ThreadCount;
        try
        {
            fixed (float* pa = a, pb = b, ps = scalar, p1 = single, p2 = dual)
            {
                KernelThreads.SetThreadCount(1);
                MatMul.Gemm(IsaWidth.Scalar, false, true, m, n, k, 0.5f, pa, k, pb, k, 1f, ps, n);
                MatMul.Gemm(variant, false, true, m, n, k, 0.5f, pa, k, pb, k, 1f, p1, n);
                KernelThreads.SetThreadCount(2);
                MatMul.Gemm(variant, false, true, m, n, k, 0.5f, pa, k, pb, k, 1f, p2, n);
            }
        }
        finally
        {
            KernelThreads.SetThreadCount(saved);
        }

        Assert.True(single.AsSpan().SequenceEqual(dual), $"{variant} {m}×{n}×{k}: results differ between 1 and 2 threads");
        Assert.True(scalar.AsSpan().SequenceEqual(single), $"{variant} {m}×{n}×{k}: results differ from the scalar kernel");
    }

    [Fact]
    public void Gemm_HugeSinglePassOutput_StreamedStoresMatchReference()
    {
        // ≥ 16 MiB of C with k ≤ 256 and an aligned C takes the non-temporal store path.
        const int M = 2053, N = 2048, K = 3;
        var random = new Random(21);
        float[] a = RandomArray(random, M * K);
        float[] b = RandomArray(random, N * K);
        float* c = (float*)NativeMemory.AlignedAlloc((nuint)M * N * sizeof(float), 64);
        float* expected = (float*)NativeMemory.AlignedAlloc((nuint)M * N * sizeof(float), 64);
        try
        {
            new Span<float>(c, M * N).Fill(float.NaN);
            fixed (float* pa = a, pb = b)
            {
                MatMul.Gemm(false, true, M, N, K, 2f, pa, K, pb, K, 0f, c, N);
                ReferenceMatMul.Gemm(false, true, M, N, K, 2f, pa, K, pb, K, 0f, expected, N);
            }

            for (long i = 0; i < (long)M * N; i++)
            {
                if (!(MathF.Abs(c[i] - expected[i]) <= 1e-5f))
                {
                    Assert.Fail($"C[{i}] = {c[i]}, expected {expected[i]}");
                }
            }
        }
        finally
        {
            NativeMemory.AlignedFree(c);
            NativeMemory.AlignedFree(expected);
        }
    }

    [Fact]
    public void Gemm_ConcurrentCallers_MatchSequentialResult()
    {
        // Per-thread packing buffers: several threads running GEMMs at once must not disturb each other.
        const int M = 150, N = 90, K = 270;
        var random = new Random(9);
        float[] a = RandomArray(random, M * K);
        float[] b = RandomArray(random, N * K);
        float[] expected = new float[M * N];
        fixed (float* pa = a, pb = b, pe = expected)
        {
            MatMul.Gemm(false, true, M, N, K, 1f, pa, K, pb, K, 0f, pe, N);
        }

        var results = new float[4][];
        Parallel.For(0, results.Length, t =>
        {
            var c = new float[M * N];
            fixed (float* pa = a, pb = b, pc = c)
            {
                for (int round = 0; round < 5; round++)
                {
                    MatMul.Gemm(false, true, M, N, K, 1f, pa, K, pb, K, 0f, pc, N);
                }
            }

            results[t] = c;
        });
        foreach (float[] c in results)
        {
            Assert.True(expected.AsSpan().SequenceEqual(c));
        }
    }

    private struct NestedGemmBody : IParallelBody
    {
        public float* A;
        public float* B;
        public float* C;
        public int M;
        public int N;
        public int K;

        public readonly void Execute(int index)
            => MatMul.Gemm(false, true, M, N, K, 1f, A, K, B, K, 0f, C + ((long)index * M * N), N);
    }

    [Fact]
    public void Gemm_InsideKernelThreadsJob_MatchesTopLevelCall()
    {
        // Called from inside another parallel kernel the GEMM runs inline on each pool thread, with that thread's
        // packing buffers; results must equal a top-level call bit for bit.
        const int M = 200, N = 96, K = 300, Jobs = 6;
        var random = new Random(17);
        float[] a = RandomArray(random, M * K);
        float[] b = RandomArray(random, N * K);
        float[] expected = new float[M * N];
        float[] nested = new float[Jobs * M * N];
        fixed (float* pa = a, pb = b, pe = expected, pn = nested)
        {
            MatMul.Gemm(false, true, M, N, K, 1f, pa, K, pb, K, 0f, pe, N);
            var body = new NestedGemmBody { A = pa, B = pb, C = pn, M = M, N = N, K = K };
            KernelThreads.For(Jobs, ref body);
        }

        for (int job = 0; job < Jobs; job++)
        {
            Assert.True(expected.AsSpan().SequenceEqual(nested.AsSpan(job * M * N, M * N)), $"job {job} differs");
        }
    }

    [Fact]
    public void Gemm_InvalidArguments_Throw()
    {
        float* x = (float*)NativeMemory.AllocZeroed(16 * sizeof(float));
        try
        {
            Assert.Throws<ArgumentOutOfRangeException>(() => MatMul.Gemm(false, false, -1, 1, 1, 1f, x, 1, x, 1, 0f, x, 1));
            Assert.Throws<ArgumentOutOfRangeException>(() => MatMul.Gemm(false, false, 1, 1, 2, 1f, x, 1, x, 1, 0f, x, 1));
            Assert.Throws<ArgumentOutOfRangeException>(() => MatMul.Gemm(true, false, 3, 1, 1, 1f, x, 2, x, 1, 0f, x, 1));
            Assert.Throws<ArgumentOutOfRangeException>(() => MatMul.Gemm(false, true, 1, 1, 3, 1f, x, 3, x, 2, 0f, x, 1));
            Assert.Throws<ArgumentOutOfRangeException>(() => MatMul.Gemm(false, false, 1, 4, 1, 1f, x, 1, x, 4, 0f, x, 3));
        }
        finally
        {
            NativeMemory.Free(x);
        }
    }

    [Theory]
    [MemberData(nameof(Combinations))]
    public void GemmBf16B_ShapesAndStrides_BitIdenticalToFp32OnWidenedB(string variantName, bool transA, bool transB, float beta)
    {
        IsaWidth variant = Enum.Parse<IsaWidth>(variantName);
        if (!MatMul.IsSupported(variant))
        {
            return;
        }

        var random = new Random(4321);
        foreach ((int m, int n, int k) in s_shapes)
        {
            foreach (int pad in new[] { 0, 3 })
            {
                CheckBf16AgainstWidened(variant, transA, transB, m, n, k, pad, alpha: -0.75f, beta, random);
            }
        }
    }

    [Theory]
    [InlineData("V512")]
    [InlineData("V256")]
    [InlineData("V128")]
    [InlineData("Scalar")]
    public void GemmBf16B_ParallelAndSuperSlicePaths_BitIdenticalToFp32OnWidenedB(string variantName)
    {
        IsaWidth variant = Enum.Parse<IsaWidth>(variantName);
        if (!MatMul.IsSupported(variant))
        {
            return;
        }

        // The two orientations Linear uses (forward: B = W transposed; dx: B = W plain), large enough for the
        // multi-threaded pack and tile tasks and several M and N blocks, plus k beyond KSuper (packed in super-slices).
        var random = new Random(8);
        CheckBf16AgainstWidened(variant, transA: false, transB: true, 520, 100, 300, pad: 1, alpha: 1f, beta: 1f, random);
        CheckBf16AgainstWidened(variant, transA: false, transB: false, 300, 203, 270, pad: 0, alpha: 1f, beta: 0f, random);
        CheckBf16AgainstWidened(variant, transA: false, transB: true, 40, 72, MatMul.KSuper + 301, pad: 3, alpha: 0.5f, beta: 1f, random);
        CheckBf16AgainstWidened(variant, transA: false, transB: false, 40, 72, MatMul.KSuper + 301, pad: 3, alpha: 0.5f, beta: 0f, random);
    }

    [Fact]
    public void GemmBf16B_InvalidArguments_Throw()
    {
        float* x = (float*)NativeMemory.AllocZeroed(16 * sizeof(float));
        ushort* w = (ushort*)NativeMemory.AllocZeroed(16 * sizeof(ushort));
        try
        {
            Assert.Throws<ArgumentOutOfRangeException>(() => MatMul.GemmBf16B(false, true, 1, 1, 3, 1f, x, 3, w, 2, 0f, x, 1));
            Assert.Throws<ArgumentOutOfRangeException>(() => MatMul.GemmBf16B(false, false, 1, 4, 1, 1f, x, 1, w, 3, 0f, x, 4));
        }
        finally
        {
            NativeMemory.Free(x);
            NativeMemory.Free(w);
        }
    }

    // Runs GemmBf16B on bf16 bits of B and the fp32 Gemm on the same bits widened, at the given variant, on 1 and on 2
    // threads, and requires every C element (padding included) to match bit for bit.
    private static void CheckBf16AgainstWidened(IsaWidth variant, bool transA, bool transB, int m, int n, int k, int pad, float alpha, float beta, Random random)
    {
        int lda = (transA ? m : k) + pad;
        int ldb = (transB ? k : n) + pad;
        int ldc = n + pad;
        float[] a = RandomArray(random, Math.Max(1, (transA ? k : m) * lda));
        ushort[] bits = RandomBf16(random, Math.Max(1, (transB ? n : k) * ldb));
        float[] widened = Array.ConvertAll(bits, SafeTensors.BFloat16ToFloat);
        float[] c0 = RandomArray(random, Math.Max(1, m * ldc));
        if (beta == 0f)
        {
            for (int i = 0; i < m; i++)
            {
                c0.AsSpan(i * ldc, n).Fill(float.NaN);
            }
        }

        foreach (int threads in new[] { 1, 2 })
        {
            float[] expected = (float[])c0.Clone();
            float[] actual = (float[])c0.Clone();
            KernelTestHelpers.WithThreads(threads, () =>
            {
                fixed (float* pa = a, pw = widened, pe = expected, pc = actual)
                fixed (ushort* pb = bits)
                {
                    MatMul.Gemm(variant, transA, transB, m, n, k, alpha, pa, lda, pw, ldb, beta, pe, ldc);
                    MatMul.GemmBf16B(variant, transA, transB, m, n, k, alpha, pa, lda, pb, ldb, beta, pc, ldc);
                }
            });

            for (int i = 0; i < expected.Length; i++)
            {
                if (BitConverter.SingleToInt32Bits(expected[i]) != BitConverter.SingleToInt32Bits(actual[i]))
                {
                    Assert.Fail($"{variant} transA={transA} transB={transB} m={m} n={n} k={k} pad={pad} beta={beta} threads={threads}: "
                        + $"C[{i / ldc},{i % ldc}] = {actual[i]}, fp32 on widened B gives {expected[i]}");
                }
            }
        }
    }

    // Random values rounded to bf16, with ±0 and denormals mixed in (exact after widening, so both paths see them).
    private static ushort[] RandomBf16(Random random, int length)
    {
        ushort[] specials = [0x0000, 0x8000, 0x0001, 0x807F, 0x0080];
        var bits = new ushort[length];
        for (int i = 0; i < bits.Length; i++)
        {
            bits[i] = random.Next(16) == 0
                ? specials[random.Next(specials.Length)]
                : SafeTensors.FloatToBFloat16((float)((random.NextDouble() * 2) - 1));
        }

        return bits;
    }

    private static void CheckAgainstReference(IsaWidth variant, bool transA, bool transB, int m, int n, int k, int pad, float alpha, float beta, Random random)
    {
        int lda = (transA ? m : k) + pad;
        int ldb = (transB ? k : n) + pad;
        int ldc = n + pad;
        float[] a = RandomArray(random, Math.Max(1, (transA ? k : m) * lda));
        float[] b = RandomArray(random, Math.Max(1, (transB ? n : k) * ldb));
        float[] c0 = RandomArray(random, Math.Max(1, m * ldc));
        if (beta == 0f)
        {
            // beta = 0 must never read C: garbage (NaN) there must not leak into the result.
            for (int i = 0; i < m; i++)
            {
                c0.AsSpan(i * ldc, n).Fill(float.NaN);
            }
        }

        float[] expected = (float[])c0.Clone();
        float[] actual = (float[])c0.Clone();
        float[] bound = new float[Math.Max(1, m * ldc)];
        fixed (float* pa = a, pb = b, pe = expected, pc = actual, pbound = bound)
        {
            ReferenceMatMul.Gemm(transA, transB, m, n, k, alpha, pa, lda, pb, ldb, beta, pe, ldc);
            MatMul.Gemm(variant, transA, transB, m, n, k, alpha, pa, lda, pb, ldb, beta, pc, ldc);

            // Error bound: float rounding of Σ|a·b| over k terms, plus the C term.
            float[] absA = Array.ConvertAll(a, MathF.Abs);
            float[] absB = Array.ConvertAll(b, MathF.Abs);
            fixed (float* paa = absA, pab = absB)
            {
                ReferenceMatMul.Gemm(transA, transB, m, n, k, MathF.Abs(alpha), paa, lda, pab, ldb, 0f, pbound, ldc);
            }
        }

        string where = $"{variant} transA={transA} transB={transB} m={m} n={n} k={k} pad={pad} beta={beta}";
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < ldc; j++)
            {
                int idx = (i * ldc) + j;
                if (j >= n)
                {
                    // Padding columns of C are never touched.
                    if (BitConverter.SingleToInt32Bits(c0[idx]) != BitConverter.SingleToInt32Bits(actual[idx]))
                    {
                        Assert.Fail($"{where}: wrote padding C[{i},{j}]");
                    }

                    continue;
                }

                float cTerm = beta == 0f ? 0f : MathF.Abs(beta * c0[idx]);
                float tolerance = (2e-6f * (k + 2) * (bound[idx] + cTerm)) + 1e-6f;
                float error = MathF.Abs(actual[idx] - expected[idx]);
                if (!(error <= tolerance))
                {
                    Assert.Fail($"{where}: C[{i},{j}] = {actual[idx]}, expected {expected[idx]} (error {error}, tolerance {tolerance})");
                }
            }
        }
    }

    private static float[] RandomArray(Random random, int length)
    {
        var data = new float[length];
        for (int i = 0; i < data.Length; i++)
        {
            data[i] = (float)((random.NextDouble() * 2) - 1);
        }

        return data;
    }
}
