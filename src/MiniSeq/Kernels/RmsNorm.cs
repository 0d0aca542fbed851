// RMSNorm as in Hugging Face LlamaRMSNorm (fp32): forward, backward, and a fused residual-add + RMSNorm forward.
// Rows are independent: forward and dx run in parallel over fixed row blocks; dWeight (a reduction over rows) runs in
// parallel over column blocks, each adding rows in order, so every result is independent of the thread count.
// Deliberately not: LayerNorm (no mean subtraction, no bias in Llama).
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using MiniSeq.Kernels.Simd;
using MiniSeq.Threading;

namespace MiniSeq.Kernels;

/// <summary>RMSNorm as in Hugging Face Llama.</summary>
public static unsafe class RmsNorm
{
    private const int ColumnBlock = 256; // dWeight columns per task (a multiple of every vector width)

    /// <summary>output[r, i] = x[r, i]·rstd[r]·weight[i], rstd[r] = 1/√(mean_i x[r, i]² + eps). Overwrites output (rows, dim) and rstd (rows).</summary>
    /// <remarks>
    /// Effectively computes HF's <c>weight * (x * torch.rsqrt(x.pow(2).mean(-1) + eps))</c> in float: the sum of squares
    /// is accumulated in float vector lanes (a fixed order per SIMD width), rstd = 1/√(sum/dim + eps). output may alias x.
    /// </remarks>
    public static void Forward(float* x, float* weight, int rows, int dim, float eps, float* output, float* rstd)
        => AddForward(x, null, weight, rows, dim, eps, null, output, rstd);

    /// <summary>
    /// Fused residual add + RMSNorm: sum[r, i] = residual[r, i] + x[r, i], then output = RMSNorm(sum) exactly as
    /// <see cref="Forward"/> would compute it from sum. Overwrites sum (rows, dim), output (rows, dim) and rstd (rows).
    /// sum may alias residual or x (the usual call updates the residual stream in place); output may alias x but not sum.
    /// </summary>
    public static void AddForward(float* residual, float* x, float* weight, int rows, int dim, float eps, float* sum, float* output, float* rstd)
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

        var body = new ForwardBody
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
            Width = KernelSelector.Width,
        };
        RunRows(ref body, rows, body.RowsPerTask);
    }

    /// <summary>Accumulates into dx (rows, dim) and dWeight (dim).</summary>
    /// <remarks>
    /// With x̂ = x·rstd: dWeight[i] += Σ_r dOutput[r, i]·x̂[r, i] (rows added in order) and
    /// dx[r, i] += rstd·(weight[i]·dOutput[r, i] − x̂[r, i]·mean_j(dOutput[r, j]·weight[j]·x̂[r, j])).
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

        IsaWidth width = KernelSelector.Width;
        var dxBody = new BackwardDxBody
        {
            DOutput = dOutput,
            X = x,
            Weight = weight,
            Rstd = rstd,
            Rows = rows,
            Dim = dim,
            Dx = dx,
            RowsPerTask = RowsPerTask(dim),
            Width = width,
        };
        RunRows(ref dxBody, rows, dxBody.RowsPerTask);

        var dwBody = new BackwardDWeightBody { DOutput = dOutput, X = x, Rstd = rstd, Rows = rows, Dim = dim, DWeight = dWeight, Width = width };
        int blocks = (dim + ColumnBlock - 1) / ColumnBlock;
        if (blocks == 1 || (long)rows * dim < 2 * SimdLoops.ParallelGrain)
        {
            for (int b = 0; b < blocks; b++)
            {
                dwBody.Execute(b);
            }
        }
        else
        {
            KernelThreads.For(blocks, ref dwBody);
        }
    }

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

    private struct ForwardBody : IParallelBody
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
        public IsaWidth Width;

        public readonly void Execute(int index)
        {
            int start = index * RowsPerTask;
            int end = Math.Min(Rows, start + RowsPerTask);
            switch (Width)
            {
                case IsaWidth.V512:
                    Run<Width512, Vector512<float>>(start, end);
                    break;
                case IsaWidth.V256:
                    Run<Width256, Vector256<float>>(start, end);
                    break;
                case IsaWidth.V128:
                    Run<Width128, Vector128<float>>(start, end);
                    break;
                default:
                    Run<ScalarWidth, float>(start, end);
                    break;
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private readonly void Run<TW, TV>(int start, int end)
            where TW : IVectorWidth<TV>
            where TV : struct
        {
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

    private struct BackwardDxBody : IParallelBody
    {
        public float* DOutput;
        public float* X;
        public float* Weight;
        public float* Rstd;
        public int Rows;
        public int Dim;
        public float* Dx;
        public int RowsPerTask;
        public IsaWidth Width;

        public readonly void Execute(int index)
        {
            int start = index * RowsPerTask;
            int end = Math.Min(Rows, start + RowsPerTask);
            switch (Width)
            {
                case IsaWidth.V512:
                    Run<Width512, Vector512<float>>(start, end);
                    break;
                case IsaWidth.V256:
                    Run<Width256, Vector256<float>>(start, end);
                    break;
                case IsaWidth.V128:
                    Run<Width128, Vector128<float>>(start, end);
                    break;
                default:
                    Run<ScalarWidth, float>(start, end);
                    break;
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private readonly void Run<TW, TV>(int start, int end)
            where TW : IVectorWidth<TV>
            where TV : struct
        {
            // forward: out[i] = w[i] * (x[i] * rstd), rstd = (mean_j x[j]² + eps)^(−1/2)
            // dx[i] += rstd·w[i]·dout[i] − x[i]·rstd³·(Σ_j dout[j]·w[j]·x[j]) / dim
            int dim = Dim;
            int c = TW.Count;
            for (int r = start; r < end; r++)
            {
                long rowOffset = (long)r * dim;
                float* dOutRow = DOutput + rowOffset;
                float* xRow = X + rowOffset;
                float* dxRow = Dx + rowOffset;
                float rs = Rstd[r];
                float dot = SimdLoops.SumOfTripleProducts<TW, TV>(dOutRow, Weight, xRow, dim);
                float a = rs;
                float b = -(rs * rs * rs * dot / dim);
                TV aV = TW.Create(a);
                TV bV = TW.Create(b);
                int i = 0;
                for (; i <= dim - c; i += c)
                {
                    TV t = TW.Multiply(TW.Multiply(TW.Load(Weight + i), TW.Load(dOutRow + i)), aV);
                    t = TW.FusedMultiplyAdd(TW.Load(xRow + i), bV, t);
                    TW.Store(TW.Add(TW.Load(dxRow + i), t), dxRow + i);
                }

                for (; i < dim; i++)
                {
                    float t = MathF.FusedMultiplyAdd(xRow[i], b, Weight[i] * dOutRow[i] * a);
                    dxRow[i] += t;
                }
            }
        }
    }

    private struct BackwardDWeightBody : IParallelBody
    {
        public float* DOutput;
        public float* X;
        public float* Rstd;
        public int Rows;
        public int Dim;
        public float* DWeight;
        public IsaWidth Width;

        public readonly void Execute(int index)
        {
            switch (Width)
            {
                case IsaWidth.V512:
                    Columns<Width512, Vector512<float>>(index);
                    break;
                case IsaWidth.V256:
                    Columns<Width256, Vector256<float>>(index);
                    break;
                case IsaWidth.V128:
                    Columns<Width128, Vector128<float>>(index);
                    break;
                default:
                    Columns<ScalarWidth, float>(index);
                    break;
            }
        }

        [SkipLocalsInit]
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private readonly void Columns<TW, TV>(int block)
            where TW : IVectorWidth<TV>
            where TV : struct
        {
            // forward: out[r, i] = w[i] * (x[r, i] * rstd[r])  →  dw[i] += Σ_r dout[r, i]·(x[r, i]·rstd[r]), rows in order
            int c0 = block * ColumnBlock;
            int n = Math.Min(ColumnBlock, Dim - c0);
            int c = TW.Count;
            int full = n - (n % c);
            float* acc = stackalloc float[ColumnBlock];
            new Span<float>(acc, n).Clear();
            for (int r = 0; r < Rows; r++)
            {
                long rowOffset = ((long)r * Dim) + c0;
                float* dOutRow = DOutput + rowOffset;
                float* xRow = X + rowOffset;
                float rs = Rstd[r];
                TV rsV = TW.Create(rs);
                int i = 0;
                for (; i < full; i += c)
                {
                    TW.Store(TW.FusedMultiplyAdd(TW.Load(dOutRow + i), TW.Multiply(TW.Load(xRow + i), rsV), TW.Load(acc + i)), acc + i);
                }

                for (; i < n; i++)
                {
                    acc[i] = MathF.FusedMultiplyAdd(dOutRow[i], xRow[i] * rs, acc[i]);
                }
            }

            float* dw = DWeight + c0;
            for (int i = 0; i < n; i++)
            {
                dw[i] += acc[i];
            }
        }
    }
}
