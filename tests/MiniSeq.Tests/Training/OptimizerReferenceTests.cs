// Every optimizer rule against PyTorch over five steps: the golden files of tests/reference/make_optimizer_golden.py
// (torch.optim.AdamW / SGD, and the script's lion-pytorch and LAMB references) hold each tensor's initial value, its
// gradient and expected value at each step and its final state; the rule runs through IOptimizerRule.Step exactly as
// Optimizer calls it, at every SIMD width, and must agree bit for bit (LAMB: to an ulp).
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using MiniSeq.IO;
using MiniSeq.Kernels;
using MiniSeq.Training;
using MiniSeq.Training.Optimizers;

namespace MiniSeq.Tests.Training;

public unsafe class OptimizerReferenceTests
{
    /// <summary>
    /// Allowed distance from PyTorch, in units in the last place of the expected value, after any of the five steps:
    /// none. The rules follow torch's float32 operations one by one (an FMA wherever PyTorch's build fuses a
    /// multiply-add: add-with-alpha and addcmul), and every case matches bit for bit at every SIMD width.
    /// </summary>
    private const int MaxUlps = 0;

    /// <summary>LAMB's allowance: its trust ratio is a quotient of double sums taken in another order than the
    /// script's, so its float rounding may differ by an ulp (measured: it does not for these cases).</summary>
    private const int LambMaxUlps = 1;

    private static string Root => Path.Combine(AppContext.BaseDirectory, "TestData", "optimizers");

    public static TheoryData<string, IsaWidth> CasesAndWidths()
    {
        var data = new TheoryData<string, IsaWidth>();
        foreach (string path in Directory.EnumerateFiles(Root, "*.safetensors").Order(StringComparer.Ordinal))
        {
            foreach (IsaWidth width in KernelSelector.AllWidths)
            {
                data.Add(Path.GetFileNameWithoutExtension(path), width);
            }
        }

        return data;
    }

    [Fact]
    public void GoldenFiles_CoverEveryRule()
    {
        string[] cases = Directory.EnumerateFiles(Root, "*.safetensors").Select(Path.GetFileNameWithoutExtension).Order(StringComparer.Ordinal).ToArray()!;
        Assert.Equal(["adamw", "lamb", "lion", "sgd", "sgd_dampening", "sgd_momentum", "sgd_nesterov"], cases);
        foreach (string rule in OptimizerRegistry.Names)
        {
            Assert.Contains(rule, cases);
        }
    }

    [Theory]
    [MemberData(nameof(CasesAndWidths))]
    public void FiveSteps_MatchPyTorch(string caseName, IsaWidth width)
    {
        using var _ = KernelSelector.Force(width);
        using SafeTensorsReader golden = SafeTensorsReader.Open(Path.Combine(Root, caseName + ".safetensors"));
        IReadOnlyDictionary<string, string> meta = golden.Metadata;
        static float F(string text) => float.Parse(text, NumberStyles.Float, CultureInfo.InvariantCulture);
        var options = new OptimizerOptions
        {
            Name = meta["optimizer"],
            Beta1 = F(meta["beta1"]),
            Beta2 = F(meta["beta2"]),
            Epsilon = F(meta["eps"]),
            WeightDecay = F(meta["weight_decay"]),
            Momentum = F(meta["momentum"]),
            Dampening = F(meta["dampening"]),
            Nesterov = meta["nesterov"] == "true",
        };
        options.Validate();
        IOptimizerRule rule = options.Rule;
        float[] learningRates = meta["lr"].Split(',').Select(F).ToArray();
        int steps = int.Parse(meta["steps"], CultureInfo.InvariantCulture);
        Assert.Equal(steps, learningRates.Length);
        HashSet<string> noDecay = meta["no_decay"].Split(',', StringSplitOptions.RemoveEmptyEntries).ToHashSet(StringComparer.Ordinal);
        string[] stateNames = meta["states"].Split(',', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(stateNames, rule.StateNames(options));

        var worst = new Worst();
        Span<nint> statePointers = stackalloc nint[stateNames.Length];
        foreach (string tensor in meta["tensors"].Split(','))
        {
            float[] param = Pinned(golden.ReadFloat32($"{tensor}/param_0"));
            float[][] state = stateNames.Select(_ => Pinned(new float[param.Length])).ToArray();
            for (int s = 0; s < state.Length; s++)
            {
                statePointers[s] = (nint)Address(state[s]);
            }

            float weightDecay = noDecay.Contains(tensor) ? 0f : options.WeightDecay;
            for (int step = 1; step <= steps; step++)
            {
                float[] grad = Pinned(golden.ReadFloat32($"{tensor}/grad_{step}"));
                rule.Step(Address(param), Address(grad), statePointers, param.Length, learningRates[step - 1], weightDecay, step, options);
                worst.Check(golden.ReadFloat32($"{tensor}/param_{step}"), param, $"{caseName} {tensor} param after step {step}");
            }

            for (int s = 0; s < state.Length; s++)
            {
                worst.Check(golden.ReadFloat32($"{tensor}/{stateNames[s]}"), state[s], $"{caseName} {tensor} {stateNames[s]}");
            }
        }

        int allowed = rule is LambRule ? LambMaxUlps : MaxUlps;
        Assert.True(worst.Ulps <= allowed, $"{caseName} at {width}: {worst.Where}: {worst.Ulps} ulps from PyTorch (allowed {allowed})");
    }

    /// <summary>The largest distance in ulps of the expected value seen so far, and where.</summary>
    private sealed class Worst
    {
        public long Ulps { get; private set; }

        public string Where { get; private set; } = "";

        public void Check(float[] expected, float[] actual, string what)
        {
            Assert.Equal(expected.Length, actual.Length);
            for (int i = 0; i < expected.Length; i++)
            {
                double error = Math.Abs((double)actual[i] - expected[i]);
                float magnitude = Math.Abs(expected[i]);
                double ulp = MathF.BitIncrement(magnitude) - magnitude;
                long ulps = (long)Math.Ceiling(error / ulp);
                if (float.IsNaN(actual[i]) || ulps > Ulps)
                {
                    Ulps = float.IsNaN(actual[i]) ? long.MaxValue : ulps;
                    Where = $"{what} [{i}]: expected {expected[i]:R}, got {actual[i]:R}";
                }
            }
        }
    }

    private static float[] Pinned(float[] values)
    {
        float[] pinned = GC.AllocateUninitializedArray<float>(values.Length, pinned: true);
        values.CopyTo(pinned, 0);
        return pinned;
    }

    private static float* Address(float[] pinned) => (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(pinned));
}
