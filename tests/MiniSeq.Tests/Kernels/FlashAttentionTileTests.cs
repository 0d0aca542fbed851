// The flash-attention micro-kernels (Scores, Accumulate, AccumulateRows: one register tile over three operand layouts)
// compute every output as one scalar FMA chain in increasing summation order, so they equal a scalar
// MathF.FusedMultiplyAdd loop bit for bit; and their two register tilings — wide (6 × 4 vectors, for AVX-512's 32
// registers) and narrow (6 × 2, for AVX2's and SSE's 16) — agree bit for bit at every width, for the head dims, key
// counts and both accumulate modes the kernels see, so the tile choice per width changes speed only.
// Deliberately not: accuracy (FlashAttentionTests checks the kernels against the double-precision reference).
using System.Runtime.Intrinsics;
using MiniSeq.Kernels;
using MiniSeq.Kernels.Simd;
using MiniSeq.Tests.Helpers;

namespace MiniSeq.Tests.Kernels;

public unsafe class FlashAttentionTileTests
{
    public static TheoryData<string, int> WidthsAndHeadDims()
    {
        var data = new TheoryData<string, int>();
        foreach (string width in new[] { "V128", "V256", "V512" })
        {
            foreach (int d in new[] { 1, 2, 5, 6, 7, 8, 12, 20, 32, 33, 64, 128 })
            {
                data.Add(width, d);
            }
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(WidthsAndHeadDims))]
    public void NarrowTiles_EqualWideTiles_Bitwise(string width, int d)
    {
        switch (width)
        {
            case "V128":
                Check<Width128, Vector128<float>>(d);
                break;
            case "V256":
                Check<Width256, Vector256<float>>(d);
                break;
            default:
                Check<Width512, Vector512<float>>(d);
                break;
        }
    }

    [Fact]
    public void WideTiles_OnlyWhereThereAre32Registers()
    {
        Assert.True(FlashAttention.HasWideTiles<Width512, Vector512<float>>());
        Assert.False(FlashAttention.HasWideTiles<Width256, Vector256<float>>());
        Assert.False(FlashAttention.HasWideTiles<Width128, Vector128<float>>());
    }

    private static void Check<TW, TV>(int d)
        where TW : struct, IVectorWidth<TV>
        where TV : struct
    {
        int bq = 4 * TW.Count;
        int dp = (d + (2 * TW.Count) - 1) / (2 * TW.Count) * 2 * TW.Count;
        const int Keys = 96;
        const long Stride = 3 * 128 + 5; // rows of a are strided, as K/V rows of one kv head are
        var random = new Random(d);
        float[] a = Fill(random, Keys * Stride);
        float[] bT = Fill(random, (long)Math.Max(d, bq) * Math.Max(dp, bq));
        float[] pT = Fill(random, (long)Keys * bq);
        float[] x = Fill(random, (long)bq * dp);
        fixed (float* ap = a, bp = bT, pp = pT, xp = x)
        {
            foreach (int nR in new[] { 6, 12, 48, 96 })
            {
                // Scores: rows past jLast read row jLast.
                float[] wide = new float[nR * bq], narrow = new float[nR * bq];
                int jLast = nR - 4;
                fixed (float* w = wide, n = narrow)
                {
                    FlashAttention.Scores<TW, TV>(ap, Stride, 0, jLast, nR, d, bp, w, wide: true);
                    FlashAttention.Scores<TW, TV>(ap, Stride, 0, jLast, nR, d, bp, n, wide: false);
                }

                Compare.Bitwise(wide, narrow, $"Scores nR={nR}");
                float[] scores = new float[nR * bq];
                for (int j = 0; j < nR; j++)
                {
                    for (int r = 0; r < bq; r++)
                    {
                        float acc = 0f;
                        for (int i = 0; i < d; i++)
                        {
                            acc = MathF.FusedMultiplyAdd(a[(Math.Min(j, jLast) * Stride) + i], bT[(i * bq) + r], acc);
                        }

                        scores[(j * bq) + r] = acc;
                    }
                }

                Compare.Bitwise(scores, wide, $"Scores nR={nR} vs scalar FMA chain");

                // AccumulateRows (nR a multiple of 6, as in the backward), from a cleared c and onto an existing one.
                foreach (bool overwrite in new[] { true, false })
                {
                    float[] cWide = Fill(new Random(nR), (long)nR * dp), cNarrow = (float[])cWide.Clone();
                    float[] rows = (float[])cWide.Clone();
                    for (int j = 0; j < nR; j++)
                    {
                        for (int i = 0; i < dp; i++)
                        {
                            float acc = overwrite ? 0f : rows[(j * dp) + i];
                            for (int r = 0; r < bq; r++)
                            {
                                acc = MathF.FusedMultiplyAdd(pT[(j * bq) + r], x[(r * dp) + i], acc);
                            }

                            rows[(j * dp) + i] = acc;
                        }
                    }

                    fixed (float* w = cWide, n = cNarrow)
                    {
                        FlashAttention.AccumulateRows<TW, TV>(pp, nR, xp, dp, w, overwrite, wide: true);
                        FlashAttention.AccumulateRows<TW, TV>(pp, nR, xp, dp, n, overwrite, wide: false);
                    }

                    Compare.Bitwise(cWide, cNarrow, $"AccumulateRows nR={nR} overwrite={overwrite}");
                    Compare.Bitwise(rows, cWide, $"AccumulateRows nR={nR} overwrite={overwrite} vs scalar FMA chain");
                }
            }

            foreach (int n in new[] { 1, 7, 48, 96 })
            {
                float[] cWide = Fill(new Random(n), (long)d * bq), cNarrow = (float[])cWide.Clone();
                float[] sums = (float[])cWide.Clone();
                for (int i = 0; i < d; i++)
                {
                    for (int r = 0; r < bq; r++)
                    {
                        float acc = sums[(i * bq) + r];
                        for (int j = 0; j < n; j++)
                        {
                            acc = MathF.FusedMultiplyAdd(a[(j * Stride) + i], pT[(j * bq) + r], acc);
                        }

                        sums[(i * bq) + r] = acc;
                    }
                }
                fixed (float* w = cWide, nc = cNarrow)
                {
                    FlashAttention.Accumulate<TW, TV>(ap, Stride, 0, n, d, pp, w, wide: true);
                    FlashAttention.Accumulate<TW, TV>(ap, Stride, 0, n, d, pp, nc, wide: false);
                }

                Compare.Bitwise(cWide, cNarrow, $"Accumulate n={n}");
                Compare.Bitwise(sums, cWide, $"Accumulate n={n} vs scalar FMA chain");
            }
        }
    }

    private static float[] Fill(Random random, long count)
    {
        var values = new float[count];
        for (long i = 0; i < count; i++)
        {
            values[i] = (float)((random.NextDouble() * 2) - 1);
        }

        return values;
    }
}
