// Rotary position embedding (Hugging Face rotate_half convention): a float32 cos/sin table built like HF's
// LlamaRotaryEmbedding, and in-place forward/backward rotations over (rows, heads·D), parallel over row blocks.
// RoPE scaling changes only inv_freq: "linear" (inv_freq / factor) and "llama3" (Llama 3.1/3.2 frequency bands), as
// Hugging Face's rope init functions compute them in float32. Deliberately not: dynamic NTK, YaRN, LongRoPE (they also
// scale cos/sin or depend on the sequence length) or the interleaved (GPT-J) layout.
using System.Runtime.CompilerServices;
using MiniSeq.Kernels.Simd;
using MiniSeq.Tensors;

namespace MiniSeq.Kernels;

/// <summary>
/// Hugging Face <c>rope_scaling</c> (Transformers 5: <c>rope_parameters</c>) of the types MiniSeq computes:
/// <c>"linear"</c> (<see cref="Factor"/>) and <c>"llama3"</c> (all four fields).
/// </summary>
/// <param name="RopeType"><c>"linear"</c> or <c>"llama3"</c>.</param>
/// <param name="Factor">Scaling factor (both types).</param>
/// <param name="LowFreqFactor">llama3: <c>low_freq_factor</c>.</param>
/// <param name="HighFreqFactor">llama3: <c>high_freq_factor</c>.</param>
/// <param name="OriginalMaxPositionEmbeddings">llama3: <c>original_max_position_embeddings</c>.</param>
public sealed record RopeScaling(string RopeType, double Factor, double LowFreqFactor = 0, double HighFreqFactor = 0, int OriginalMaxPositionEmbeddings = 0)
{
    /// <summary>The type name of linear scaling.</summary>
    public const string Linear = "linear";

    /// <summary>The type name of Llama 3.1 scaling.</summary>
    public const string Llama3 = "llama3";
}

/// <summary>cos/sin table of rotary embeddings for positions [0, MaxPositions): (MaxPositions, D/2) each.</summary>
public sealed unsafe class RopeTable : IDisposable
{
    private readonly NativeBuffer _buffer; // cos (MaxPositions, D/2) followed by sin (MaxPositions, D/2)
    private readonly float[] _invFreq;
    private (int First, int Rows) _filled = (-1, 0); // what FillRows last wrote (without document starts)

    /// <summary>Builds the table: inv_freq[j] = 1/θ^(2j/D) in float32 (as HF), scaled by <paramref name="scaling"/>
    /// (see <see cref="InverseFrequencies"/>), angle = float(pos)·inv_freq[j].</summary>
    /// <remarks>
    /// As <c>1.0 / (base ** (torch.arange(0, dim, 2).float() / dim))</c>: the exponent 2j/D is a float32 quotient, the
    /// power is rounded to float32 (computed in double), and its float32 reciprocal is inv_freq. The angle is the float32
    /// product float(pos)·inv_freq[j]; cos and sin of that float32 angle are computed in double and rounded to float.
    /// The table is native memory accounted to <see cref="MemoryCategory.Scratch"/> in <paramref name="ledger"/>.
    /// </remarks>
    public RopeTable(int headDim, double theta, int maxPositions, MemoryLedger? ledger = null, RopeScaling? scaling = null)
    {
        if (headDim <= 0 || headDim % 2 != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(headDim), $"RoPE needs a positive even head dimension, got {headDim}.");
        }

        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxPositions);
        if (!(theta > 0))
        {
            throw new ArgumentOutOfRangeException(nameof(theta), $"rope_theta must be positive, got {theta}.");
        }

        HeadDim = headDim;
        MaxPositions = maxPositions;
        int half = headDim / 2;
        _buffer = new NativeBuffer(2L * maxPositions * half, MemoryCategory.Scratch, ledger, "rope-table");
        _invFreq = InverseFrequencies(headDim, theta, scaling);
        for (int p = 0; p < maxPositions; p++)
        {
            FillRow(p, p);
        }
    }

    /// <summary>
    /// Makes row r of this table hold position <paramref name="firstPosition"/> + r − documentStarts[r] (documentStarts
    /// null: 0), for r &lt; <paramref name="rows"/>: a table of one chunk's rows, used at position offset 0 (so RoPE reads
    /// row r for row r). The values are those of the full table at the same positions, bit for bit; a sequence-chunked
    /// pass keeps this chunk-sized table instead of one row per position of the sequence.
    /// </summary>
    public void FillRows(int firstPosition, int rows, int* documentStarts)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(firstPosition);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(rows, MaxPositions);
        if (documentStarts == null && (firstPosition, rows) == _filled)
        {
            return; // already these rows (backward's K/V pass ends on the chunk its reverse loop starts with)
        }

        for (int r = 0; r < rows; r++)
        {
            FillRow(r, firstPosition + r - (documentStarts == null ? 0 : documentStarts[r]));
        }

        _filled = documentStarts == null ? (firstPosition, rows) : (-1, 0); // document starts may change behind a pointer
    }

    private void FillRow(int row, int p)
    {
        int half = HeadDim / 2;
        float* cos = _buffer.Pointer + ((long)row * half);
        float* sin = _buffer.Pointer + ((long)MaxPositions * half) + ((long)row * half);
        float position = p;
        for (int j = 0; j < half; j++)
        {
            float angle = position * _invFreq[j];
            (double sinA, double cosA) = Math.SinCos(angle);
            cos[j] = (float)cosA;
            sin[j] = (float)sinA;
        }
    }

    /// <summary>
    /// inv_freq (D/2 floats) as Hugging Face's rope init functions compute it in float32: the default
    /// <c>1.0 / (base ** (torch.arange(0, dim, 2).float() / dim))</c>, then the scaling of <paramref name="scaling"/>.
    /// </summary>
    /// <remarks>
    /// "linear" (<c>_compute_linear_scaling_rope_parameters</c>): <c>inv_freq /= factor</c>, a float32 division.
    /// "llama3" (<c>_compute_llama3_parameters</c>), every tensor op in float32 with its Python scalar rounded to float32:
    /// <c>wavelen = 2π / inv_freq</c> (torch's <c>__rtruediv__</c> is <c>reciprocal() * 2π</c>); above
    /// <c>low_freq_wavelen = old_ctx / low_freq_factor</c> inv_freq is divided by factor; below
    /// <c>high_freq_wavelen = old_ctx / high_freq_factor</c> it is kept; in between it is
    /// <c>(1 − s)·inv/factor + s·inv</c> with <c>s = (old_ctx / wavelen − low) / (high − low)</c> (the last divisor a
    /// Python double). The two wavelength bounds are Python doubles compared in float32.
    /// </remarks>
    internal static float[] InverseFrequencies(int headDim, double theta, RopeScaling? scaling)
    {
        int half = headDim / 2;
        var invFreq = new float[half];
        float baseF = (float)theta; // torch.pow(scalar, float tensor) computes in float32
        for (int j = 0; j < half; j++)
        {
            float exponent = (float)(2 * j) / headDim;
            float power = (float)Math.Pow(baseF, exponent);
            invFreq[j] = 1f / power;
        }

        if (scaling is null)
        {
            return invFreq;
        }

        if (!(scaling.Factor > 0) || !double.IsFinite(scaling.Factor))
        {
            throw new ArgumentOutOfRangeException(nameof(scaling), $"rope_scaling.factor must be positive, got {scaling.Factor}.");
        }

        float factor = (float)scaling.Factor;
        switch (scaling.RopeType)
        {
            case RopeScaling.Linear:
                for (int j = 0; j < half; j++)
                {
                    invFreq[j] /= factor;
                }

                return invFreq;
            case RopeScaling.Llama3:
                if (!(scaling.HighFreqFactor > scaling.LowFreqFactor) || scaling.OriginalMaxPositionEmbeddings <= 0)
                {
                    throw new ArgumentOutOfRangeException(nameof(scaling), "llama3 RoPE scaling needs high_freq_factor > low_freq_factor and original_max_position_embeddings > 0.");
                }

                double oldContext = scaling.OriginalMaxPositionEmbeddings;
                float lowFreqWavelen = (float)(oldContext / scaling.LowFreqFactor);
                float highFreqWavelen = (float)(oldContext / scaling.HighFreqFactor);
                float twoPi = (float)(2 * Math.PI), oldContextF = (float)oldContext, low = (float)scaling.LowFreqFactor;
                float bandWidth = (float)(scaling.HighFreqFactor - scaling.LowFreqFactor);
                for (int j = 0; j < half; j++)
                {
                    float inv = invFreq[j];
                    float reciprocal = 1f / inv;
                    float wavelen = reciprocal * twoPi;
                    // inv_freq_llama = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
                    float scaled = wavelen > lowFreqWavelen ? inv / factor : inv;
                    bool medium = !(wavelen < highFreqWavelen) && !(wavelen > lowFreqWavelen);
                    if (medium)
                    {
                        // smooth = (old_ctx / wavelen − low) / (high − low)
                        float smooth = (((1f / wavelen) * oldContextF) - low) / bandWidth;
                        // smoothed = (1 − smooth) * inv_freq_llama / factor + smooth * inv_freq_llama
                        float a = (1f - smooth) * scaled / factor;
                        float b = smooth * scaled;
                        scaled = a + b;
                    }

                    invFreq[j] = scaled;
                }

                return invFreq;
            default:
                throw new ArgumentOutOfRangeException(nameof(scaling), $"RoPE scaling type \"{scaling.RopeType}\" is not implemented (linear, llama3 are).");
        }
    }

    /// <summary>Head dimension D.</summary>
    public int HeadDim { get; }

    /// <summary>Positions covered.</summary>
    public int MaxPositions { get; }

    /// <summary>cos table (MaxPositions, D/2).</summary>
    internal float* Cos => _buffer.Pointer;

    /// <summary>sin table (MaxPositions, D/2).</summary>
    internal float* Sin => _buffer.Pointer + ((long)MaxPositions * (HeadDim / 2));

    /// <summary>Frees the table.</summary>
    public void Dispose() => _buffer.Dispose();
}

/// <summary>Rotary position embedding, Hugging Face <c>rotate_half</c> convention.</summary>
public static unsafe class Rope
{
    /// <summary>
    /// In place on x (rows, heads·D); row r is at position positionOffset + r % seqLen. With x1 = x[:D/2], x2 = x[D/2:]:
    /// x1' = x1·cos − x2·sin, x2' = x2·cos + x1·sin.
    /// </summary>
    /// <remarks>Effectively HF's <c>q * cos + rotate_half(q) * sin</c> in float32 (separate multiplies, then the add).</remarks>
    /// <remarks>With <paramref name="documentStarts"/> (one per row of x, see <see cref="DocumentLayout.Starts"/>) positions
    /// restart at every document of a packed row: row r is at positionOffset + r % seqLen − documentStarts[r].</remarks>
    public static void Forward(float* x, int rows, int seqLen, int heads, RopeTable table, int positionOffset, int* documentStarts = null)
        => Apply(x, rows, seqLen, heads, table, positionOffset, documentStarts, backward: false);

    /// <summary>
    /// <see cref="Forward(float*, int, int, int, RopeTable, int, int*)"/> on rows <paramref name="firstRow"/> … of a
    /// pass: row i of x is pass row firstRow + i, at position positionOffset + (firstRow + i) % seqLen (minus
    /// documentStarts[firstRow + i]). The same arithmetic per row, so chunks reproduce the whole call bit for bit.
    /// </summary>
    public static void Forward(float* x, int rows, int seqLen, int heads, RopeTable table, int positionOffset, int* documentStarts, long firstRow)
        => Apply(x, rows, seqLen, heads, table, positionOffset, documentStarts, backward: false, firstRow);

    /// <summary>In place on dx: applies the transposed rotation (dx1' = dx1·cos + dx2·sin, dx2' = dx2·cos − dx1·sin).</summary>
    /// <remarks>The rotation is orthogonal, so its transpose is the rotation by −angle. Derivation: docs/kernels/elementwise.md.</remarks>
    public static void Backward(float* dx, int rows, int seqLen, int heads, RopeTable table, int positionOffset, int* documentStarts = null)
        => Apply(dx, rows, seqLen, heads, table, positionOffset, documentStarts, backward: true);

    private static void Apply(float* x, int rows, int seqLen, int heads, RopeTable table, int positionOffset, int* documentStarts, bool backward, long firstRow = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(firstRow);
        ArgumentNullException.ThrowIfNull(table);
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfNegative(heads);
        ArgumentOutOfRangeException.ThrowIfNegative(positionOffset);
        if (rows == 0 || heads == 0)
        {
            return;
        }

        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(seqLen);
        int lastPosition = positionOffset + (int)Math.Min(firstRow + rows, seqLen) - 1;
        if (lastPosition >= table.MaxPositions)
        {
            throw new ArgumentOutOfRangeException(nameof(positionOffset), $"RoPE position {lastPosition} is outside the table of {table.MaxPositions} positions. Build the RopeTable with maxPositions ≥ positionOffset + seqLen.");
        }

        int rowWidth = heads * table.HeadDim;
        var body = new WidthBody<RopeBody>(new RopeBody
        {
            X = x,
            Cos = table.Cos,
            Sin = table.Sin,
            Rows = rows,
            SeqLen = seqLen,
            Heads = heads,
            HeadDim = table.HeadDim,
            PositionOffset = positionOffset,
            DocumentStarts = documentStarts,
            FirstRow = firstRow,
            SinSign = backward ? -1f : 1f,
            RowsPerTask = RmsNorm.RowsPerTask(rowWidth),
        }, KernelSelector.Width);
        RmsNorm.RunRows(ref body, rows, body.Body.RowsPerTask);
    }

    private struct RopeBody : IWidthBody
    {
        public float* X;
        public float* Cos;
        public float* Sin;
        public int Rows;
        public int SeqLen;
        public int Heads;
        public int HeadDim;
        public int PositionOffset;
        public int* DocumentStarts; // per pass row: where its document begins within the sequence (null: at 0)
        public long FirstRow;       // pass row of X's row 0
        public float SinSign; // +1 forward, −1 backward (rotation by −angle)
        public int RowsPerTask;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public readonly void Execute<TW, TV>(int index)
            where TW : IVectorWidth<TV>
            where TV : struct
        {
            int start = index * RowsPerTask;
            int end = Math.Min(Rows, start + RowsPerTask);
            // forward:  x1' = x1·cos − x2·sin, x2' = x2·cos + x1·sin
            // backward: the same with sin → −sin (the transposed rotation), exact since negation is exact
            int half = HeadDim / 2;
            int c = TW.Count;
            TV sign = TW.Create(SinSign);
            for (int r = start; r < end; r++)
            {
                long passRow = FirstRow + r;
                int position = PositionOffset + (int)(passRow % SeqLen) - (DocumentStarts == null ? 0 : DocumentStarts[passRow]);
                float* cosRow = Cos + ((long)position * half); // (D/2)
                float* sinRow = Sin + ((long)position * half); // (D/2)
                float* row = X + ((long)r * Heads * HeadDim);  // (heads, D)
                for (int h = 0; h < Heads; h++)
                {
                    float* x1 = row + (h * HeadDim);
                    float* x2 = x1 + half;
                    int j = 0;
                    for (; j <= half - c; j += c)
                    {
                        TV cv = TW.Load(cosRow + j);
                        TV sv = TW.Multiply(TW.Load(sinRow + j), sign);
                        TV a = TW.Load(x1 + j);
                        TV b = TW.Load(x2 + j);
                        TW.Store(TW.Subtract(TW.Multiply(a, cv), TW.Multiply(b, sv)), x1 + j);
                        TW.Store(TW.Add(TW.Multiply(b, cv), TW.Multiply(a, sv)), x2 + j);
                    }

                    for (; j < half; j++)
                    {
                        float cv = cosRow[j];
                        float sv = sinRow[j] * SinSign;
                        float a = x1[j];
                        float b = x2[j];
                        x1[j] = (a * cv) - (b * sv);
                        x2[j] = (b * cv) + (a * sv);
                    }
                }
            }
        }
    }
}
