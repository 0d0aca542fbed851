// Token embedding lookup and its backward (a scatter-add into the table). The backward is parallel over column
// blocks of dim, each adding rows in order, so repeated tokens accumulate in a fixed order: race-free and
// independent of the thread count. Deliberately not: validation of token ids (the caller does it once per batch).
using System.Runtime.CompilerServices;
using MiniSeq.Kernels.Simd;
using MiniSeq.Threading;

namespace MiniSeq.Kernels;

/// <summary>Token embedding lookup.</summary>
public static unsafe class Embedding
{
    private const int ColumnBlock = 256; // columns per backward task (a multiple of every vector width)

    /// <summary>output[r, :] = table[tokens[r], :]. Overwrites output (count, dim). Token ids must be in range (caller validates).</summary>
    public static void Forward(int* tokens, int count, float* table, int dim, float* output)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        ArgumentOutOfRangeException.ThrowIfNegative(dim);
        if (count == 0 || dim == 0)
        {
            return;
        }

        var body = new ForwardBody { Tokens = tokens, Count = count, Table = table, Dim = dim, Output = output, RowsPerTask = RmsNorm.RowsPerTask(dim) };
        RmsNorm.RunRows(ref body, count, body.RowsPerTask);
    }

    /// <summary>Accumulates dTable[tokens[r], :] += dOutput[r, :], deterministically (rows in order per token).</summary>
    public static void Backward(float* dOutput, int* tokens, int count, int dim, float* dTable)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        ArgumentOutOfRangeException.ThrowIfNegative(dim);
        if (count == 0 || dim == 0 || dTable == null) // null: a frozen table
        {
            return;
        }

        var body = new WidthBody<BackwardBody>(new BackwardBody { DOutput = dOutput, Tokens = tokens, Count = count, Dim = dim, DTable = dTable }, KernelSelector.Width);
        int blocks = (dim + ColumnBlock - 1) / ColumnBlock;
        if (blocks == 1 || (long)count * dim < 2 * SimdLoops.ParallelGrain)
        {
            for (int b = 0; b < blocks; b++)
            {
                body.Execute(b);
            }
        }
        else
        {
            KernelThreads.For(blocks, ref body);
        }
    }

    private struct ForwardBody : IParallelBody
    {
        public int* Tokens;
        public int Count;
        public float* Table;
        public int Dim;
        public float* Output;
        public int RowsPerTask;

        public readonly void Execute(int index)
        {
            int start = index * RowsPerTask;
            int end = Math.Min(Count, start + RowsPerTask);
            long bytes = (long)Dim * sizeof(float);
            for (int r = start; r < end; r++)
            {
                Buffer.MemoryCopy(Table + ((long)Tokens[r] * Dim), Output + ((long)r * Dim), bytes, bytes);
            }
        }
    }

    private struct BackwardBody : IWidthBody
    {
        public float* DOutput;
        public int* Tokens;
        public int Count;
        public int Dim;
        public float* DTable;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public readonly void Execute<TW, TV>(int index)
            where TW : IVectorWidth<TV>
            where TV : struct
        {
            // forward: out[r, :] = table[tokens[r], :]  →  dTable[tokens[r], :] += dOut[r, :], r in order
            int c0 = index * ColumnBlock; // this task's column block
            int n = Math.Min(ColumnBlock, Dim - c0);
            int c = TW.Count;
            for (int r = 0; r < Count; r++)
            {
                float* src = DOutput + ((long)r * Dim) + c0;
                float* dst = DTable + ((long)Tokens[r] * Dim) + c0;
                int i = 0;
                for (; i <= n - c; i += c)
                {
                    TW.Store(TW.Add(TW.Load(dst + i), TW.Load(src + i)), dst + i);
                }

                for (; i < n; i++)
                {
                    dst[i] += src[i];
                }
            }
        }
    }
}
