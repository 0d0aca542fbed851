// RoPE scaling ("linear", "llama3") against the inv_freq PyTorch computes with transformers' own formulas
// (_compute_linear_scaling_rope_parameters, _compute_llama3_parameters): float32 bits, printed by torch 1.13.
using MiniSeq.Kernels;

namespace MiniSeq.Tests.Kernels;

public class RopeScalingTests
{
    public static TheoryData<string, int, double, RopeScaling, uint[]> Cases => new()
    {
        {
            "llama3.1-8B", 128, 500000.0, new RopeScaling(RopeScaling.Llama3, 8.0, 1.0, 4.0, 8192),
            [
                0x3F800000, 0x3F508AC1, 0x3F29E1C6, 0x3F0A6384, 0x3EE177BC, 0x3EB7AB7D, 0x3E959EE3, 0x3E73C461, 0x3E4693B0, 0x3E21C3A0,
                0x3E03C6A0, 0x3DD6B19C, 0x3DAEE4AD, 0x3D8E7898, 0x3D681E67, 0x3D3D1684, 0x3D1A08C8, 0x3CFAF53F, 0x3CCC6F49, 0x3CA68939,
                0x3C87A9C3, 0x3C5D06EC, 0x3C340D6D, 0x3C12AC7F, 0x3BEEF74F, 0x3BC2AA76, 0x3B9E9402, 0x3B812E35, 0x3B527720, 0x3B0DFD06,
                0x3AB3D11D, 0x3A60979E, 0x3A0995D2, 0x39A3F108, 0x393B2DD2, 0x38C86886, 0x38A3418D, 0x3884FDBF, 0x3858AC81, 0x38308199,
                0x380FC8F8, 0x37EA426F, 0x37BED4F4, 0x379B7475, 0x377D45C3, 0x374E51F5, 0x3728126B, 0x3708EA0F, 0x36DF10C4, 0x36B5B687,
                0x369406CB, 0x36712B80, 0x36447610, 0x36200A69, 0x36025F34, 0x35D46808, 0x35AD07A7, 0x358CF400, 0x3565A54D, 0x353B12C7,
                0x351864A7, 0x34F848C2, 0x34CA41B0, 0x34A4C2FF,
            ]
        },
        {
            "llama3.2-1B", 64, 500000.0, new RopeScaling(RopeScaling.Llama3, 32.0, 1.0, 4.0, 8192),
            [
                0x3F800000, 0x3F29E1C6, 0x3EE177BC, 0x3E959EE3, 0x3E4693B0, 0x3E03C6A0, 0x3DAEE4AD, 0x3D681E67, 0x3D1A08C8, 0x3CCC6F49,
                0x3C87A9C3, 0x3C340D6D, 0x3BEEF74F, 0x3B9E9402, 0x3B527720, 0x3AA9279B, 0x39E13620, 0x38CB98F7, 0x37A3418D, 0x3758AC81,
                0x370FC8F8, 0x36BED4F4, 0x367D45C3, 0x3628126B, 0x35DF10C4, 0x359406CB, 0x35447610, 0x35025F34, 0x34AD07A7, 0x3465A54D,
                0x341864A7, 0x33CA41B0,
            ]
        },
        {
            "llama3 tiny", 16, 10000.0, new RopeScaling(RopeScaling.Llama3, 4.0, 1.0, 4.0, 64),
            [0x3F800000, 0x3E826136, 0x3CD09B89, 0x3C0186E3, 0x3B23D70A, 0x3A4F3E38, 0x3983126F, 0x38A5CB60]
        },
        {
            "linear 3", 16, 10000.0, new RopeScaling(RopeScaling.Linear, 3.0),
            [0x3EAAAAAB, 0x3DD7E0CF, 0x3D088889, 0x3C2CB3D9, 0x3B5A740D, 0x3A8A297B, 0x39AEC33F, 0x38DD0F2B]
        },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void InverseFrequencies_Scaled_BitIdenticalToTransformers(string name, int headDim, double theta, RopeScaling scaling, uint[] expectedBits)
    {
        float[] actual = RopeTable.InverseFrequencies(headDim, theta, scaling);
        Assert.Equal(expectedBits.Length, actual.Length);
        for (int j = 0; j < actual.Length; j++)
        {
            Assert.True(BitConverter.SingleToUInt32Bits(actual[j]) == expectedBits[j],
                $"{name}: inv_freq[{j}] = {actual[j]:R} (0x{BitConverter.SingleToUInt32Bits(actual[j]):X8}), transformers 0x{expectedBits[j]:X8}");
        }
    }

    [Fact]
    public unsafe void RopeTable_Scaled_AnglesUseTheScaledFrequencies()
    {
        var scaling = new RopeScaling(RopeScaling.Linear, 2.0);
        float[] inv = RopeTable.InverseFrequencies(8, 10000.0, scaling);
        using var table = new RopeTable(8, 10000.0, 5, scaling: scaling);
        for (int p = 0; p < 5; p++)
        {
            for (int j = 0; j < 4; j++)
            {
                float angle = p * inv[j];
                Assert.Equal((float)Math.Cos(angle), table.Cos[(p * 4) + j]);
                Assert.Equal((float)Math.Sin(angle), table.Sin[(p * 4) + j]);
            }
        }
    }

    [Fact]
    public void InverseFrequencies_UnknownType_Throws()
        => Assert.Throws<ArgumentOutOfRangeException>(() => RopeTable.InverseFrequencies(8, 10000.0, new RopeScaling("yarn", 4.0)));
}
