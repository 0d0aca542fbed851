// The projection op every Linear layer of the model goes through: y = x·Wᵀ (+ b) with W stored (out, in) row-major
// as in Hugging Face. Backward forms the weight gradient first (dW += dyᵀ·x, skipped for a frozen weight), then
// dx = dy·W, so dx may overwrite x. A frozen weight, an adapter, a bias or another weight dtype is one change here
// instead of one per call site. W is fp32 or bf16 (a frozen base for LoRA: half the weight memory; or, with
// --precision bf16, the bf16 compute copy of an fp32 master weight, whose gradient is then formed in fp32); a bf16 W
// is widened exactly inside the GEMM's packing (MatMul.GemmBf16B), so both compute in fp32 and give the fp32 results
// on the widened weight bit for bit.
using MiniSeq.Diagnostics;

namespace MiniSeq.Kernels;

/// <summary>
/// A Linear layer's tensors: weight (out × in, fp32 or bf16), optional bias (out), their gradients (null = frozen / none).
/// Exactly one of <see cref="Weight"/> and <see cref="WeightBf16"/> is set.
/// </summary>
public readonly unsafe struct LinearWeights
{
    /// <summary>Describes a projection from <paramref name="inFeatures"/> to <paramref name="outFeatures"/>.</summary>
    public LinearWeights(float* weight, int inFeatures, int outFeatures, float* weightGrad = null, float* bias = null, float* biasGrad = null)
        : this(inFeatures, outFeatures, bias, biasGrad)
    {
        if (weight == null)
        {
            throw new ArgumentNullException(nameof(weight));
        }

        Weight = weight;
        WeightGrad = weightGrad;
    }

    /// <summary>
    /// Describes a projection whose weight is stored as bfloat16 bits: a frozen bf16 base (null
    /// <paramref name="weightGrad"/>), or the bf16 compute copy of an fp32 master weight (mixed precision), whose
    /// gradient dW += dyᵀ·x is formed and accumulated in fp32 into <paramref name="weightGrad"/>.
    /// </summary>
    public LinearWeights(ushort* weightBf16, int inFeatures, int outFeatures, float* weightGrad = null, float* bias = null, float* biasGrad = null)
        : this(inFeatures, outFeatures, bias, biasGrad)
    {
        if (weightBf16 == null)
        {
            throw new ArgumentNullException(nameof(weightBf16));
        }

        WeightBf16 = weightBf16;
        WeightGrad = weightGrad;
    }

    private LinearWeights(int inFeatures, int outFeatures, float* bias, float* biasGrad)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(inFeatures);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(outFeatures);
        InFeatures = inFeatures;
        OutFeatures = outFeatures;
        Bias = bias;
        BiasGrad = biasGrad;
    }

    /// <summary>W, out × in, row-major (fp32), or null when the weight is <see cref="WeightBf16"/>.</summary>
    public float* Weight { get; }

    /// <summary>W, out × in, row-major, as bfloat16 bits, or null when the weight is <see cref="Weight"/>.</summary>
    public ushort* WeightBf16 { get; }

    /// <summary>dW (accumulated), or null when the weight is frozen.</summary>
    public float* WeightGrad { get; }

    /// <summary>b (out), or null for none.</summary>
    public float* Bias { get; }

    /// <summary>db (accumulated), or null.</summary>
    public float* BiasGrad { get; }

    /// <summary>Input width.</summary>
    public int InFeatures { get; }

    /// <summary>Output width.</summary>
    public int OutFeatures { get; }

    /// <summary>A LoRA adapter added to this projection, or none (<see cref="LinearAdapter.IsPresent"/> false).</summary>
    public LinearAdapter Adapter { get; init; }
}

/// <summary>
/// A LoRA adapter on a Linear layer: y += scale·(x·Aᵀ)·Bᵀ with A (rank × in) and B (out × rank), their gradients
/// (null = not trained), and scratch of 2·rows·rank floats for the rows × rank intermediates.
/// </summary>
public readonly unsafe struct LinearAdapter
{
    /// <summary>Describes an adapter of rank <paramref name="rank"/>.</summary>
    public LinearAdapter(float* a, float* b, int rank, float scale, float* scratch, float* aGrad = null, float* bGrad = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(rank);
        ArgumentNullException.ThrowIfNull(scratch);
        A = a;
        B = b;
        Rank = rank;
        Scale = scale;
        Scratch = scratch;
        AGrad = aGrad;
        BGrad = bGrad;
    }

    /// <summary>Whether there is an adapter.</summary>
    public bool IsPresent => Rank > 0;

    /// <summary>A, rank × in.</summary>
    public float* A { get; }

    /// <summary>B, out × rank.</summary>
    public float* B { get; }

    /// <summary>dA (accumulated), or null.</summary>
    public float* AGrad { get; }

    /// <summary>dB (accumulated), or null.</summary>
    public float* BGrad { get; }

    /// <summary>r.</summary>
    public int Rank { get; }

    /// <summary>α / r.</summary>
    public float Scale { get; }

    /// <summary>2 · rows · rank floats.</summary>
    public float* Scratch { get; }

    /// <summary>Dropout probability on the adapter's input (0 = none).</summary>
    public float Dropout { get; init; }

    /// <summary>Seed of this adapter's dropout masks in this pass (see <see cref="LoraDropout"/>).</summary>
    public ulong DropoutSeed { get; init; }

    /// <summary>Which token of the global batch each pass row is, for the dropout masks (default: the pass row).</summary>
    public DropoutTokens DropoutTokens { get; init; }

    /// <summary>With dropout: <see cref="LoraDropout.BlockRows"/> × in floats for one block of dropped inputs.</summary>
    public float* DropoutBuffer { get; init; }
}

/// <summary>
/// Which token of the global batch pass row r is: r = b·T + t (T positions of each row in this pass) is token
/// (<see cref="FirstRow"/> + b·<see cref="RowStride"/>)·<see cref="GlobalSeqLen"/> + <see cref="PositionOffset"/> + t.
/// Data-parallel ranks and micro-batches hold other rows (FirstRow, RowStride), Ulysses ranks other positions
/// (PositionOffset), so keying the dropout masks by this token makes them the same whatever the rank count and the
/// micro-batching. The default is the pass row.
/// </summary>
public readonly record struct DropoutTokens(long FirstRow, int RowStride, int SeqLen, long GlobalSeqLen, long PositionOffset)
{
    /// <summary>The global token index of pass row <paramref name="passRow"/>.</summary>
    public long Of(long passRow) => SeqLen == 0 ? passRow
        : ((FirstRow + (passRow / SeqLen * RowStride)) * GlobalSeqLen) + PositionOffset + (passRow % SeqLen);
}

/// <summary>
/// LoRA dropout masks as a function of (seed, token, column), the token being the pass row's index in the global batch
/// (<see cref="DropoutTokens"/>): the same element is kept or dropped in forward, in any recomputation and in backward,
/// whatever the chunking, the micro-batching or the number of ranks, so every memory policy and every data or sequence
/// parallel layout trains on the same masks.
/// </summary>
public static unsafe class LoraDropout
{
    /// <summary>Rows of dropped input formed at a time (bounds the buffer).</summary>
    public const int BlockRows = 64;

    /// <summary>0 (dropped) or 1/(1−p) (kept) for element (row, column) under <paramref name="seed"/>.</summary>
    public static float Factor(ulong seed, long row, int column, float p)
    {
        // SplitMix64's finaliser over (seed, row, column): 24 uniform bits against p.
        ulong z = seed + ((ulong)row * 0x9E3779B97F4A7C15UL) + ((ulong)column * 0xD1B54A32D192ED03UL);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        z ^= z >> 31;
        return (z >> 40) * (1.0 / (1 << 24)) < p ? 0f : 1f / (1f - p);
    }

    /// <summary>destination[r, c] = source[r, c] · Factor(seed, tokens.Of(firstRow + r), c) over rows × width.</summary>
    internal static void Apply(float* source, int rows, int width, ulong seed, long firstRow, in DropoutTokens tokens, float p, float* destination)
    {
        for (int r = 0; r < rows; r++)
        {
            float* src = source + ((long)r * width), dst = destination + ((long)r * width);
            long token = tokens.Of(firstRow + r);
            for (int c = 0; c < width; c++)
            {
                dst[c] = src[c] * Factor(seed, token, c, p);
            }
        }
    }
}

/// <summary>Forward and backward of <see cref="LinearWeights"/> over a block of rows.</summary>
public static unsafe class Linear
{
    /// <summary>y (rows × out) = x·Wᵀ (+ b), or y += x·Wᵀ (+ b) with <paramref name="accumulate"/>; an adapter adds
    /// s·(dropout(x)·Aᵀ)·Bᵀ, its dropout masks drawn for rows <paramref name="firstRow"/>… of the pass.</summary>
    public static void Forward(float* x, int rows, in LinearWeights w, float* y, bool accumulate = false, ProfiledOp op = ProfiledOp.Other, long firstRow = 0)
    {
        using var scope = StepProfiler.Measure(op);
        int i = w.InFeatures, o = w.OutFeatures;
        float beta = accumulate ? 1f : 0f;
        if (w.WeightBf16 != null)
        {
            MatMul.GemmBf16B(false, true, rows, o, i, 1f, x, i, w.WeightBf16, i, beta, y, o);
        }
        else
        {
            MatMul.Gemm(false, true, rows, o, i, 1f, x, i, w.Weight, i, beta, y, o);
        }

        if (w.Bias != null)
        {
            for (long r = 0; r < rows; r++)
            {
                VectorOps.Add(y + (r * o), w.Bias, o, y + (r * o));
            }
        }

        if (w.Adapter.IsPresent)
        {
            // y += s·(x·Aᵀ)·Bᵀ, as PEFT's lora_B(lora_A(x)) * scaling
            LinearAdapter a = w.Adapter;
            float* t = a.Scratch;
            AdapterInput(x, rows, i, a, firstRow, t, null);
            MatMul.Gemm(false, true, rows, o, a.Rank, a.Scale, t, a.Rank, a.B, a.Rank, 1f, y, o);
        }
    }

    /// <summary>t = dropout(x)·Aᵀ (rows × rank), block by block with dropout; with <paramref name="u"/>, also
    /// dA += uᵀ·dropout(x) (the same blocks, so the dropped input is formed once).</summary>
    private static void AdapterInput(float* x, int rows, int i, in LinearAdapter a, long firstRow, float* t, float* u)
    {
        int r = a.Rank;
        if (a.Dropout == 0f)
        {
            MatMul.Gemm(false, true, rows, r, i, 1f, x, i, a.A, i, 0f, t, r);
            if (u != null && a.AGrad != null)
            {
                MatMul.Gemm(true, false, r, i, rows, 1f, u, r, x, i, 1f, a.AGrad, i);
            }

            return;
        }

        for (int r0 = 0; r0 < rows; r0 += LoraDropout.BlockRows)
        {
            int n = Math.Min(LoraDropout.BlockRows, rows - r0);
            float* xd = a.DropoutBuffer;
            LoraDropout.Apply(x + ((long)r0 * i), n, i, a.DropoutSeed, firstRow + r0, a.DropoutTokens, a.Dropout, xd);
            MatMul.Gemm(false, true, n, r, i, 1f, xd, i, a.A, i, 0f, t + ((long)r0 * r), r);
            if (u != null && a.AGrad != null)
            {
                MatMul.Gemm(true, false, r, i, n, 1f, u + ((long)r0 * r), r, xd, i, 1f, a.AGrad, i);
            }
        }
    }

    /// <summary>
    /// dW += dyᵀ·x (when not frozen), db += Σ_rows dy (when there is a bias gradient), then dx = dy·W (or dx += dy·W with
    /// <paramref name="accumulateDx"/>; null <paramref name="dx"/> skips it). <paramref name="dx"/> may be <paramref name="x"/>.
    /// </summary>
    public static void Backward(float* dy, float* x, int rows, in LinearWeights w, float* dx, bool accumulateDx = false, ProfiledOp op = ProfiledOp.Other, long firstRow = 0)
    {
        using var scope = StepProfiler.Measure(op);
        int i = w.InFeatures, o = w.OutFeatures;
        LinearAdapter a = w.Adapter;
        float* u = a.Scratch + ((long)rows * a.Rank);
        if (a.IsPresent)
        {
            // forward: y += s·t·Bᵀ with t = xd·Aᵀ, xd = dropout(x)  →  u = s·dy·B ; dA += uᵀ·xd ; dB += s·dyᵀ·t ;
            // dx += dropout(u·A) (below, after dx = dy·W: x is read here, before dx may overwrite it)
            int r = a.Rank;
            float* t = a.Scratch;
            MatMul.Gemm(false, false, rows, r, o, a.Scale, dy, o, a.B, r, 0f, u, r);
            AdapterInput(x, rows, i, a, firstRow, t, u);
            if (a.BGrad != null)
            {
                MatMul.Gemm(true, false, o, r, rows, a.Scale, dy, o, t, r, 1f, a.BGrad, r);
            }
        }

        if (w.WeightGrad != null)
        {
            MatMul.Gemm(true, false, o, i, rows, 1f, dy, o, x, i, 1f, w.WeightGrad, i);
        }

        if (w.BiasGrad != null)
        {
            // Rows in order: a fixed summation order, the same for any thread count.
            for (long r = 0; r < rows; r++)
            {
                VectorOps.Add(w.BiasGrad, dy + (r * o), o, w.BiasGrad);
            }
        }

        if (dx != null)
        {
            float beta = accumulateDx ? 1f : 0f;
            if (w.WeightBf16 != null)
            {
                MatMul.GemmBf16B(false, false, rows, i, o, 1f, dy, o, w.WeightBf16, i, beta, dx, i);
            }
            else
            {
                MatMul.Gemm(false, false, rows, i, o, 1f, dy, o, w.Weight, i, beta, dx, i);
            }

            if (a.IsPresent && a.Dropout == 0f)
            {
                MatMul.Gemm(false, false, rows, i, a.Rank, 1f, u, a.Rank, a.A, i, 1f, dx, i);
            }
            else if (a.IsPresent)
            {
                for (int r0 = 0; r0 < rows; r0 += LoraDropout.BlockRows)
                {
                    int n = Math.Min(LoraDropout.BlockRows, rows - r0);
                    float* dxd = a.DropoutBuffer, dxBlock = dx + ((long)r0 * i);
                    MatMul.Gemm(false, false, n, i, a.Rank, 1f, u + ((long)r0 * a.Rank), a.Rank, a.A, i, 0f, dxd, i);
                    LoraDropout.Apply(dxd, n, i, a.DropoutSeed, firstRow + r0, a.DropoutTokens, a.Dropout, dxd);
                    VectorOps.Add(dxBlock, dxd, (long)n * i, dxBlock);
                }
            }
        }
    }
}
