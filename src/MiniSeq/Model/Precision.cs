// The arithmetic precision of a training pass (issue 12 §1). fp32: every tensor fp32. bf16 (mixed precision): the
// projection weights the GEMMs read are a bf16 copy of the fp32 master weights (rounded to nearest even once per pass),
// the checkpointed layer inputs of recomputing policies are stored as bf16, and everything else stays fp32: every GEMM
// accumulates in fp32, weight gradients and every chunked gradient sum are fp32, the optimizer updates fp32 masters.
// Deliberately not: bf16 attention (flash attention reads and writes fp32), bf16 gradients, loss scaling (bf16 has
// fp32's exponent range, so no gradient underflows that fp32 would not).
namespace MiniSeq.Model;

/// <summary>The arithmetic precision of a pass: <c>--precision fp32|bf16</c>.</summary>
public enum Precision
{
    /// <summary>Every tensor fp32.</summary>
    Float32,

    /// <summary>Mixed precision: bf16 compute weights (fp32 masters, gradients and optimizer state), bf16 checkpointed
    /// layer inputs, fp32 accumulation everywhere.</summary>
    BFloat16,
}

/// <summary>Parsing and naming of <see cref="Precision"/>.</summary>
public static class Precisions
{
    /// <summary>The precision of <c>--precision fp32|bf16</c>.</summary>
    /// <exception cref="ArgumentException">Neither.</exception>
    public static Precision Parse(string value)
    {
        ArgumentNullException.ThrowIfNull(value);
        return value.Trim().ToLowerInvariant() switch
        {
            "fp32" or "f32" or "float32" => Precision.Float32,
            "bf16" or "bfloat16" => Precision.BFloat16,
            _ => throw new ArgumentException($"--precision must be fp32 or bf16 (got '{value}')."),
        };
    }

    /// <summary>"fp32" or "bf16", as the CLI spells it.</summary>
    public static string Name(this Precision precision) => precision == Precision.BFloat16 ? "bf16" : "fp32";
}
