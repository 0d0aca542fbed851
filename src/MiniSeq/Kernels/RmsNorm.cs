// RMSNorm as in Hugging Face LlamaRMSNorm (fp32): forward, backward, and a fused residual-add + RMSNorm forward.
// Rows are independent: forward runs in parallel over row blocks; backward runs over a fixed number of row blocks (a
// function of the shape only), each writing its dx rows and a dWeight partial that is added in block order, so every
// result is independent of the thread count.
// Deliberately not: LayerNorm (no mean subtraction, no bias in Llama).
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using MiniSeq.Kernels.Simd;
using MiniSeq.Threading;

namespace MiniSeq.Kernels;

/// <summary>RMSNorm as in Hugging Face Llama.</summary>
public static unsafe class RmsNorm
{
    /// <summary>output[r, i] = x[r, i]·rstd[r]·weight[i], rstd[r] = 1/√(mean_i x[r, i]² + eps). Overwrites output (rows, dim) and rstd (rows).</summary>
    /// <remarks>
    /// Effectively computes HF's <c>weight * (x * torch.rsqrt(x.pow(2).mean(-1) + eps))</c> in float: the sum of squares
    /// is accumulated in float vector lanes (a fixed order per SIMD width), rstd = 1/√(sum/dim + eps). output may alias x.
    /// </remarks>
    public static void Forward(float* x, float* weight, int rows, int dim, float eps, float* output, float* rstd)
        => ForwardCore(x, null, weight, rows, dim, eps, null, output, rstd);

    /// <summary>
    /// Fused residual add + RMSNorm: sum[r, i] = residual[r, i] + x[r, i], then output = RMSNorm(sum) exactly as
    /// <see cref="Forward"/> would compute it from sum. Overwrites sum (rows, dim), output (rows, dim) and rstd (rows).
    /// sum may alias residual or x (the usual call updates the residual stream in place); output may alias x but not sum.
    /// </summary>
    public static void AddForward(float* residual, float* x, float* weight, int rows, int dim, float eps, float* sum, float* output, float* rstd)
    {
        if ((x == null || sum == null) && (long)rows * dim > 0)
        {
            throw new ArgumentNullException(x == null ? nameof(x) : nameof(sum), "AddForward needs x and sum; use Forward for a plain RMSNorm.");
        }

        ForwardCore(residual, x, weight, rows, dim, eps, sum, output, rstd);
    }

    // x == null: plain RMSNorm of residual; otherwise sum = residual + x, then RMSNorm of sum.
    private static void ForwardCore(float* residual, float* x, float* weight, int rows, int dim, float eps, float* sum, float* output, float* rstd)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfNegative(dim);
        if (rows == 0 || dim == 0)
        {
            // mean over an empty row is NaN in PyTorch; nothing to write for dim = 0 except rstd.
            for (int r = 0; r < rows; r++)
            {
                rstd[r] = 1f / MathF.Sqrt(float.NaN);
            }

            return;
        }

        var body = new WidthBody<ForwardBody>(new ForwardBody
        {
            Residual = residual,
            X = x,
            Weight = weight,
            Sum = sum,
            Output = output,
            Rstd = rstd,
            Rows = rows,
            Dim = dim,
            Eps = eps,
            RowsPerTask = RowsPerTask(dim),
        }, KernelSelector.Width);
        RunRows(ref body, rows, body.Body.RowsPerTask);
    }

    /// <summary>Accumulates into dx (rows, dim) and dWeight (dim; null for a frozen weight).</summary>
    /// <remarks>
    /// With x̂ = x·rstd: dWeight[i] += Σ_r dOutput[r, i]·x̂[r, i] and
    /// dx[r, i] += rstd·(weight[i]·dOutput[r, i] − x̂[r, i]·mean_j(dOutput[r, j]·weight[j]·x̂[r, j])).
    /// One pass over the rows: the rows are cut into a fixed number of blocks that depends only on (rows, dim); each
    /// block accumulates its own dWeight partial (rows in order) while it writes dx, and the partials are then added
    /// into dWeight in block order. Results are therefore independent of the thread count.
    /// Derivation: docs/kernels/elementwise.md. dx must not alias the inputs.
    /// </remarks>
    public static void Backward(float* dOutput, float* x, float* weight, float* rstd, int rows, int dim, float* dx, float* dWeight)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfNegative(dim);
        if (rows == 0 || dim == 0)
        {
            return;
        }

        int blocks = BackwardBlocks(rows, dim);
        int rowsPerBlock = (rows + blocks - 1) / blocks;
        blocks = (rows + rowsPerBlock - 1) / rowsPerBlock;
        long partialLength = (long)blocks * dim;
        var partial = (float*)NativeMemory.AlignedAlloc((nuint)(partialLength * sizeof(float)), 64); // (blocks, dim)
        try
        {
            var body = new WidthBody<BackwardBody>(new BackwardBody
            {
                DOutput = dOutput,
                X = x,
                Weight = weight,
                Rstd = rstd,
                Rows = rows,
                Dim = dim,
                Dx = dx,
                Partial = partial,
                RowsPerTask = rowsPerBlock,
            }, KernelSelector.Width);
            RunRows(ref body, rows, rowsPerBlock);

            // dWeight[i] += Σ_b partial[b, i], blocks in order (dim is small: one thread); none for a frozen weight.
            for (int b = 0; dWeight != null && b < blocks; b++)
            {
                VectorOps.Add(dWeight, partial + ((long)b * dim), dim, dWeight);
            }
        }
        finally
        {
            NativeMemory.AlignedFree(partial);
        }
    }

    /// <summary>Row blocks of the backward pass: about one per 64K elements, at most 32; a function of the shape only.</summary>
    internal static int BackwardBlocks(int rows, int dim)
        => (int)Math.Clamp(((long)rows * dim) / (2 * SimdLoops.ParallelGrain), 1, Math.Min(32, rows));

    internal static int RowsPerTask(int dim) => Math.Max(1, (int)(SimdLoops.ParallelGrain / Math.Max(dim, 1)));

    internal static void RunRows<TBody>(ref TBody body, int rows, int rowsPerTask)
        where TBody : struct, IParallelBody
    {
        int tasks = (rows + rowsPerTask - 1) / rowsPerTask;
        if (tasks == 1)
        {
            body.Execute(0);
        }
        else
        {
            KernelThreads.For(tasks, ref body);
        }
    }

    private struct ForwardBody : IWidthBody
    {
        public float* Residual;
        public float* X;
        public float* Weight;
        public float* Sum;
        public float* Output;
        public float* Rstd;
        public int Rows;
        public int Dim;
        public float Eps;
        public int RowsPerTask;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public readonly void Execute<TW, TV>(int index)
            where TW : IVectorWidth<TV>
            where TV : struct
        {
            int start = index * RowsPerTask;
            int end = Math.Min(Rows, start + RowsPerTask);
            int dim = Dim;
            int c = TW.Count;
            for (int r = start; r < end; r++)
            {
                long rowOffset = (long)r * dim;
                float* xRow = Residual + rowOffset; // (dim) the row to normalise
                if (X != null)
                {
                    // sum = residual + x, then normalise sum
                    float* aRow = Residual + rowOffset;
                    float* bRow = X + rowOffset;
                    float* sRow = Sum + rowOffset;
                    int j = 0;
                    for (; j <= dim - c; j += c)
                    {
                        TW.Store(TW.Add(TW.Load(aRow + j), TW.Load(bRow + j)), sRow + j);
                    }

                    for (; j < dim; j++)
                    {
                        sRow[j] = aRow[j] + bRow[j];
                    }

                    xRow = sRow;
                }

                float sumSquares = SimdLoops.SumOfSquares<TW, TV>(xRow, dim);
                float rs = 1f / MathF.Sqrt((sumSquares / dim) + Eps);
                Rstd[r] = rs;
                float* oRow = Output + rowOffset;
                TV rsV = TW.Create(rs);
                int i = 0;
                for (; i <= dim - c; i += c)
                {
                    TW.Store(TW.Multiply(TW.Load(Weight + i), TW.Multiply(TW.Load(xRow + i), rsV)), oRow + i);
                }

                for (; i < dim; i++)
                {
                    oRow[i] = Weight[i] * (xRow[i] * rs);
                }
            }
        }
    }

    private struct BackwardBody : IWidthBody
    {
        public float* DOutput;
        public float* X;
        public float* Weight;
        public float* Rstd;
        public int Rows;
        public int Dim;
        public float* Dx;
        public float* Partial;
        public int RowsPerTask;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public readonly void Execute<TW, TV>(int index)
            where TW : IVectorWidth<TV>
            where TV : struct
        {
            // forward: out[i] = w[i] * (x[i] * rstd), rstd = (mean_j x[j]² + eps)^(−1/2)
            // dx[i] += rstd·w[i]·dout[i] − x[i]·rstd³·(Σ_j dout[j]·w[j]·x[j]) / dim
            // dw[i] += Σ_r dout[r, i]·(x[r, i]·rstd[r])   (into this block's partial row, rows in order)
            int dim = Dim;
            int c = TW.Count;
            int start = index * RowsPerTask;
            int end = Math.Min(Rows, start + RowsPerTask);
            float* acc = Partial + ((long)index * dim); // (dim) this block's dWeight partial
            new Span<float>(acc, dim).Clear();
            for (int r = start; r < end; r++)
            {
                long rowOffset = (long)r * dim;
                float* dOutRow = DOutput + rowOffset;
                float* xRow = X + rowOffset;
                float* dxRow = Dx + rowOffset;
                float rs = Rstd[r];
                float dot = SimdLoops.SumOfTripleProducts<TW, TV>(dOutRow, Weight, xRow, dim);
                float b = -(rs * rs * rs * dot / dim);
                TV aV = TW.Create(rs);
                TV bV = TW.Create(b);
                int i = 0;
                for (; i <= dim - c; i += c)
                {
                    TV d = TW.Load(dOutRow + i);
                    TV xv = TW.Load(xRow + i);
                    TV t = TW.Multiply(TW.Multiply(TW.Load(Weight + i), d), aV);
                    t = TW.FusedMultiplyAdd(xv, bV, t);
                    TW.Store(TW.Add(TW.Load(dxRow + i), t), dxRow + i);
                    TW.Store(TW.FusedMultiplyAdd(d, TW.Multiply(xv, aV), TW.Load(acc + i)), acc + i);
                }

                for (; i < dim; i++)
                {
                    float t = MathF.FusedMultiplyAdd(xRow[i], b, Weight[i] * dOutRow[i] * rs);
                    dxRow[i] += t;
                    acc[i] = MathF.FusedMultiplyAdd(dOutRow[i], xRow[i] * rs, acc[i]);
                }
            }
        }
    }
}
