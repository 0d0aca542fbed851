// BFloat16.FromFloat / ToFloat against the scalar SafeTensors conversions, bit for bit: every length 0..257 at every
// SIMD width (vector body and scalar tail), special values with their expected bits (NaN payloads, ±0, denormals, ±Inf,
// max float, ties to even), a sweep of random bit patterns, every bf16 pattern widened, and the threaded path.
using MiniSeq.IO;
using MiniSeq.Kernels;

namespace MiniSeq.Tests.Kernels;

public unsafe class BFloat16Tests
{
    private static ushort[] Narrow(uint[] bits)
    {
        var result = new ushort[bits.Length];
        fixed (uint* src = bits)
        fixed (ushort* dst = result)
        {
            BFloat16.FromFloat((float*)src, dst, bits.Length);
        }

        return result;
    }

    private static uint[] Widen(ushort[] bits)
    {
        var result = new uint[bits.Length];
        fixed (ushort* src = bits)
        fixed (uint* dst = result)
        {
            BFloat16.ToFloat(src, (float*)dst, bits.Length);
        }

        return result;
    }

    private static ushort ScalarNarrow(uint bits) => SafeTensors.FloatToBFloat16(BitConverter.UInt32BitsToSingle(bits));

    private static uint ScalarWiden(ushort bits) => BitConverter.SingleToUInt32Bits(SafeTensors.BFloat16ToFloat(bits));

    private static void AssertNarrowMatchesScalar(uint[] input, string context)
    {
        ushort[] actual = Narrow(input);
        for (int i = 0; i < input.Length; i++)
        {
            if (actual[i] != ScalarNarrow(input[i]))
            {
                Assert.Fail($"{context}: element {i} of {input.Length}, input 0x{input[i]:X8}: got 0x{actual[i]:X4}, expected 0x{ScalarNarrow(input[i]):X4}");
            }
        }
    }

    // Finite values of several magnitudes, with specials mixed in so that they land in vector lanes and in the tail.
    private static uint[] MixedBits(Random rng, int count)
    {
        uint[] specials = [0x7FC00000, 0xFF800001, 0x00000001, 0x80000000, 0x7F800000, 0x3F808000, 0x3F818000, 0x7F7FFFFF];
        var bits = new uint[count];
        for (int i = 0; i < count; i++)
        {
            bits[i] = rng.Next(8) == 0
                ? specials[rng.Next(specials.Length)]
                : BitConverter.SingleToUInt32Bits((float)((rng.NextDouble() - 0.5) * Math.Pow(10, rng.Next(-8, 8))));
        }

        return bits;
    }

    [Theory]
    [ClassData(typeof(IsaWidths))]
    public void FromFloat_EveryLength_MatchesScalar(IsaWidth width)
    {
        using var _ = KernelSelector.Force(width);
        var rng = new Random(KernelTestHelpers.Seed);
        for (int n = 0; n <= KernelTestHelpers.MaxLength; n++)
        {
            AssertNarrowMatchesScalar(MixedBits(rng, n), $"{width} n={n}");
        }
    }

    [Theory]
    [ClassData(typeof(IsaWidths))]
    public void ToFloat_EveryLength_MatchesScalar(IsaWidth width)
    {
        using var _ = KernelSelector.Force(width);
        var rng = new Random(KernelTestHelpers.Seed);
        for (int n = 0; n <= KernelTestHelpers.MaxLength; n++)
        {
            ushort[] input = Enumerable.Range(0, n).Select(_ => (ushort)rng.Next(65536)).ToArray();
            Assert.Equal(input.Select(ScalarWiden).ToArray(), Widen(input));
        }
    }

    [Theory]
    [ClassData(typeof(IsaWidths))]
    public void ToFloat_EveryPattern_PutsBitsOnTop(IsaWidth width)
    {
        using var _ = KernelSelector.Force(width);
        ushort[] all = Enumerable.Range(0, 65536).Select(i => (ushort)i).ToArray();
        uint[] widened = Widen(all);
        for (int i = 0; i < all.Length; i++)
        {
            Assert.Equal((uint)i << 16, widened[i]);
        }
    }

    public static TheoryData<uint, ushort> SpecialValues => new()
    {
        { 0x00000000, 0x0000 },  // +0
        { 0x80000000, 0x8000 },  // -0
        { 0x7F800000, 0x7F80 },  // +Inf
        { 0xFF800000, 0xFF80 },  // -Inf
        { 0x7F7FFFFF, 0x7F80 },  // max float: above the largest bf16 plus half an ulp, rounds to +Inf
        { 0xFF7FFFFF, 0xFF80 },  // -max float
        { 0x7F7F7FFF, 0x7F7F },  // just below the tie: largest finite bf16
        { 0x00000001, 0x0000 },  // smallest denormal rounds to +0
        { 0x80000001, 0x8000 },  // and its negative to -0
        { 0x007FFFFF, 0x0080 },  // largest denormal rounds up to the smallest normal
        { 0x00018000, 0x0002 },  // denormal exactly halfway, odd kept mantissa: rounds up to even
        { 0x00008000, 0x0000 },  // denormal exactly halfway, even kept mantissa: stays
        { 0x3F808000, 0x3F80 },  // 1 + half a bf16 ulp: tie, 0x3F80 is even, stays
        { 0x3F818000, 0x3F82 },  // tie above an odd mantissa: rounds up to even
        { 0x3F808001, 0x3F81 },  // just above the tie: rounds up
        { 0x3F817FFF, 0x3F81 },  // just below the tie: rounds down
        { 0xBF818000, 0xBF82 },  // negative tie, odd: away from zero to even
        { 0x7FC00000, 0x7FC0 },  // quiet NaN
        { 0xFFC00000, 0xFFC0 },  // negative quiet NaN
        { 0x7F800001, 0x7FC0 },  // signalling NaN with a low payload: stays NaN (made quiet), not Inf
        { 0xFF800001, 0xFFC0 },  // the same, negative
        { 0x7FBFFFFF, 0x7FFF },  // signalling NaN, full payload: top payload bits kept, quiet bit set
        { 0x7FFFFFFF, 0x7FFF },  // all-ones NaN does not overflow into the sign
        { 0x7FA00000, 0x7FE0 },  // payload bit kept
    };

    [Theory]
    [MemberData(nameof(SpecialValues))]
    public void FromFloat_SpecialValues_ExpectedBitsAtEveryWidth(uint input, ushort expected)
    {
        Assert.Equal(expected, ScalarNarrow(input));
        foreach (IsaWidth width in KernelSelector.AllWidths)
        {
            using var _ = KernelSelector.Force(width);
            // 40 copies: a whole vector step at every width plus a tail.
            ushort[] actual = Narrow(Enumerable.Repeat(input, 40).ToArray());
            Assert.All(actual, a => Assert.Equal(expected, a));
            if (float.IsNaN(BitConverter.UInt32BitsToSingle(input)))
            {
                Assert.True(float.IsNaN(SafeTensors.BFloat16ToFloat(actual[0])));
            }
        }
    }

    [Theory]
    [ClassData(typeof(IsaWidths))]
    public void FromFloat_RandomBitPatterns_MatchScalar(IsaWidth width)
    {
        using var _ = KernelSelector.Force(width);
        var rng = new Random(KernelTestHelpers.Seed + 1);
        var bits = new uint[1 << 18];
        for (int round = 0; round < 4; round++)
        {
            rng.NextBytes(System.Runtime.InteropServices.MemoryMarshal.AsBytes(bits.AsSpan()));
            AssertNarrowMatchesScalar(bits, $"{width} round {round}");
        }
    }

    [Fact]
    public void LargeArrays_ThreadedPath_MatchScalar()
    {
        var rng = new Random(KernelTestHelpers.Seed + 2);
        uint[] bits = MixedBits(rng, 100_003);
        ushort[] narrowed = Narrow(bits);
        Assert.Equal(bits.Select(ScalarNarrow).ToArray(), narrowed);
        Assert.Equal(narrowed.Select(ScalarWiden).ToArray(), Widen(narrowed));
    }

    [Fact]
    public void NegativeCount_Throws()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => BFloat16.FromFloat(null, null, -1));
        Assert.Throws<ArgumentOutOfRangeException>(() => BFloat16.ToFloat(null, null, -1));
    }
}
