// The two all-to-alls of Ulysses attention and the flash-attention calls between them. Layouts (B rows, T local
// positions per rank, P ranks, W = heads·D): a sequence shard is (B·T, W) row-major, all heads of this rank's tokens;
// a head shard is (B·P·T, w) with w = this rank's heads·D, the whole sequence of each row in order. The all-to-alls go
// per row b and per chunk of at most ExchangeRows local positions [i0, i0 + c): ToHeads packs the shard's columns of
// rank j's heads in block j of a (P·c, w) send buffer and copies block i of what it receives (rank i's positions
// i0 … i0 + c) to rows i·T + i0 … of row b of the head shard; ToSequence packs rows j·T + i0 … of the head shard
// (rank j's positions) in block j and adds block i of what it receives into the columns of rank i's heads. The
// exchange buffer is therefore 2·P·c·w floats (one chunk's send and receive), not a whole shard. Replicated kv heads
// reach several ranks, so their gradients come back from several: ToSequence accumulates.
using MiniSeq.Kernels;
using MiniSeq.Model;
using MiniSeq.Tensors;

namespace MiniSeq.Distributed;

/// <summary>Ulysses attention of one pass over a communicator (see the file comment).</summary>
internal sealed unsafe class UlyssesAttention(ICommunicator communicator, UlyssesHeads heads, int batchSize, int seqLen, int headDim)
{
    /// <summary>Local positions per all-to-all (one chunk of the exchange buffer).</summary>
    public const int ExchangeRows = 1024;

    public ICommunicator Communicator { get; } = communicator;

    private int P => heads.Ranks;

    /// <summary>
    /// Floats of the exchange buffer for <paramref name="seqLen"/> local positions: one chunk's send and receive
    /// blocks, 2 · min(T, <see cref="ExchangeRows"/>) · max(H·D, P·KvH_local·D).
    /// </summary>
    public static long ExchangeFloats(UlyssesHeads heads, LlamaConfig config, int seqLen)
    {
        ArgumentNullException.ThrowIfNull(heads);
        ArgumentNullException.ThrowIfNull(config);
        return 2L * Math.Min(seqLen, ExchangeRows) * Math.Max(config.QueryDim, heads.Ranks * heads.LocalKvHeads * config.HeadDim);
    }

    /// <summary>a = flash_attention(q, k, v) for the local tokens' q, k, v (N, ·), through head shards in scratch (the
    /// heads' output is written over their q).</summary>
    public void Forward(float* q, float* k, float* v, LlamaConfig config, float* qh, float* kh, float* vh, float* exchange, float* lse, float* attn, int* documentStarts)
    {
        ToHeads(q, config.NumAttentionHeads, kv: false, qh, exchange);
        ToHeads(k, config.NumKeyValueHeads, kv: true, kh, exchange);
        ToHeads(v, config.NumKeyValueHeads, kv: true, vh, exchange);
        float* oh = qh;
        FlashAttention.Forward(qh, kh, vh, batchSize, seqLen * P, heads.LocalHeads, heads.LocalKvHeads, headDim, oh, lse, config.SlidingWindow ?? 0, documentStarts);
        new TensorView(attn, (long)batchSize * seqLen * config.QueryDim).Clear();
        ToSequence(oh, config.NumAttentionHeads, kv: false, attn, exchange);
    }

    /// <summary>
    /// Backward of <see cref="Forward"/>: writes dq, dk, dv of the local tokens (N, ·) into attn, kh, vh. Besides kh,
    /// vh and the two small rowsum buffers (scratch) it needs no head-layout buffer of its own: the saved local q, k, v,
    /// a of the layer are dead once used and are overwritten (the workspace is used by one backward: recomputed per
    /// layer with checkpointing, one per layer without; lse is kept). The output's only use is rowsum(dO∘O), taken on
    /// the local rows and sent to heads (B·T·H floats, <paramref name="rowDot"/> and <paramref name="rowDotHeads"/>);
    /// then the heads' q go to a's buffer (B·T·H·D = B·P·T·H/P·D floats), dOutput to q's, the heads' dq to dAttn's,
    /// and, when kv heads are split (B·P·T·KvH/P·D = B·T·KvH·D), dk and dv to k's and v's. Replicated kv heads are
    /// larger than the local k, v: then <paramref name="dKh"/>, <paramref name="dVh"/> are scratch (null otherwise).
    /// </summary>
    public void Backward(float* dAttn, float* q, float* k, float* v, float* attn, float* lse, LlamaConfig config, float* rowDot, float* rowDotHeads, float* kh, float* vh, float* dKh, float* dVh, float* exchange, float* partials, int* documentStarts,
        out float* dq, out float* dk, out float* dv)
    {
        int h = config.NumAttentionHeads, kvh = config.NumKeyValueHeads, localHeads = heads.LocalHeads;
        long full = (long)batchSize * seqLen * P, n = (long)batchSize * seqLen;
        long qFloats = full * localHeads * headDim, kvFloats = full * heads.LocalKvHeads * headDim;
        if (qFloats != n * config.QueryDim || ((dKh == null || dVh == null) && kvFloats != n * config.KeyValueDim))
        {
            throw new InvalidOperationException("Ulysses backward: a head-layout buffer does not fit the local buffer it reuses.");
        }

        // rowsum(dO∘O) of the local rows (B·T, H) → this rank's heads (B·P·T, H/P) → laid out as lse (B, H/P, P·T).
        FlashAttention.RowDot(dAttn, attn, (int)n, h, headDim, rowDot, rowStride: h, headStride: 1);
        Exchange(rowDot, h, kv: false, rowDotHeads, exchange, perHead: 1);
        int positions = seqLen * P;
        for (int b = 0; b < batchSize; b++)
        {
            long row = (long)b * positions * localHeads;
            FlashAttention.Transpose(rowDotHeads + row, localHeads, positions, localHeads, rowDot + row, positions);
        }

        float* qh = attn; // a is dead (its rowsum taken)
        ToHeads(q, h, kv: false, qh, exchange);
        float* dOh = q; // q is dead (sent to qh)
        ToHeads(dAttn, h, kv: false, dOh, exchange);
        ToHeads(k, kvh, kv: true, kh, exchange);
        ToHeads(v, kvh, kv: true, vh, exchange);
        float* dQh = dAttn; // same size; dAttn is dead (sent to dOh)
        dKh = dKh == null ? k : dKh; // k, v are dead (sent to kh, vh)
        dVh = dVh == null ? v : dVh;
        new TensorView(dQh, qFloats).Clear();
        new TensorView(dKh, kvFloats).Clear();
        new TensorView(dVh, kvFloats).Clear();
        FlashAttention.Backward(dOh, qh, kh, vh, output: null, lse, batchSize, positions, localHeads, heads.LocalKvHeads, headDim, dQh, dKh, dVh, config.SlidingWindow ?? 0, documentStarts, partials, rowDot);

        dq = attn; // qh is dead
        dk = kh;
        dv = vh;
        new TensorView(dq, n * config.QueryDim).Clear();
        new TensorView(dk, n * config.KeyValueDim).Clear();
        new TensorView(dv, n * config.KeyValueDim).Clear();
        ToSequence(dQh, h, kv: false, dq, exchange);
        ToSequence(dKh, kvh, kv: true, dk, exchange);
        ToSequence(dVh, kvh, kv: true, dv, exchange);
    }

    private int Start(int rank, bool kv) => kv ? heads.KvHeadStart(rank) : heads.HeadStart(rank);

    private int Count(bool kv) => kv ? heads.LocalKvHeads : heads.LocalHeads;

    /// <summary>(B·T, totalHeads·D) sequence shard → (B·P·T, local heads·D) head shard.</summary>
    private void ToHeads(float* shard, int totalHeads, bool kv, float* headShard, float* exchange)
        => Exchange(shard, totalHeads, kv, headShard, exchange, headDim);

    /// <summary><see cref="ToHeads(float*, int, bool, float*, float*)"/> for <paramref name="perHead"/> floats per head
    /// (D for activations, 1 for per-head sums).</summary>
    private void Exchange(float* shard, int totalHeads, bool kv, float* headShard, float* exchange, int perHead)
    {
        int width = totalHeads * perHead;
        for (int b = 0; b < batchSize; b++)
        {
            ToHeads(shard + ((long)b * seqLen * width), seqLen, totalHeads, kv, headShard, (long)b * P * seqLen, seqLen, exchange, perHead);
        }
    }

    /// <summary>(B·P·T, local heads·D) head shard → accumulated into the (B·T, totalHeads·D) sequence shard.</summary>
    private void ToSequence(float* headShard, int totalHeads, bool kv, float* shard, float* exchange)
    {
        int width = totalHeads * headDim;
        for (int b = 0; b < batchSize; b++)
        {
            ToSequence(headShard, (long)b * P * seqLen, seqLen, totalHeads, kv, shard + ((long)b * seqLen * width), seqLen, exchange);
        }
    }

    /// <summary>
    /// <paramref name="rows"/> consecutive local positions (rows × totalHeads·D, every rank the same positions of its
    /// shard) → this rank's heads of every rank's rows: rank i's row s goes to row <paramref name="firstRow"/> + i ·
    /// <paramref name="rankStride"/> + s of <paramref name="heads"/> (local heads·D wide). A whole row of the sequence:
    /// firstRow = b·P·T + i0, rankStride = T; one chunk's (P·rows) block: firstRow = 0, rankStride = rows.
    /// </summary>
    public void ToHeads(float* rowsOfShard, int rows, int totalHeads, bool kv, float* heads, long firstRow, long rankStride, float* exchange)
        => ToHeads(rowsOfShard, rows, totalHeads, kv, heads, firstRow, rankStride, exchange, headDim);

    private void ToHeads(float* rowsOfShard, int rows, int totalHeads, bool kv, float* heads, long firstRow, long rankStride, float* exchange, int perHead)
    {
        int width = totalHeads * perHead, w = Count(kv) * perHead, chunk = Math.Min(rows, ExchangeRows);
        float* send = exchange, receive = exchange + ((long)P * chunk * w);
        for (int i0 = 0; i0 < rows; i0 += chunk)
        {
            int n = Math.Min(chunk, rows - i0), block = n * w;
            for (int j = 0; j < P; j++)
            {
                int column = Start(j, kv) * perHead;
                for (int i = 0; i < n; i++)
                {
                    new ReadOnlySpan<float>(rowsOfShard + (((long)i0 + i) * width) + column, w).CopyTo(new Span<float>(send + ((long)j * block) + ((long)i * w), w));
                }
            }

            Communicator.AllToAll(new ReadOnlySpan<float>(send, P * block), new Span<float>(receive, P * block));
            for (int i = 0; i < P; i++)
            {
                new ReadOnlySpan<float>(receive + ((long)i * block), block).CopyTo(new Span<float>(heads + ((firstRow + (i * rankStride) + i0) * w), block));
            }
        }
    }

    /// <summary>The inverse of <see cref="ToHeads(float*, int, int, bool, float*, long, long, float*)"/>, accumulating:
    /// rows firstRow + j · rankStride + s of <paramref name="heads"/> (rank j's positions) are added into the columns of
    /// rank j's heads of local row s of <paramref name="rowsOfShard"/>.</summary>
    public void ToSequence(float* heads, long firstRow, long rankStride, int totalHeads, bool kv, float* rowsOfShard, int rows, float* exchange)
    {
        int width = totalHeads * headDim, w = Count(kv) * headDim, chunk = Math.Min(rows, ExchangeRows);
        float* send = exchange, receive = exchange + ((long)P * chunk * w);
        for (int i0 = 0; i0 < rows; i0 += chunk)
        {
            int n = Math.Min(chunk, rows - i0), block = n * w;
            for (int j = 0; j < P; j++)
            {
                new ReadOnlySpan<float>(heads + ((firstRow + (j * rankStride) + i0) * w), block).CopyTo(new Span<float>(send + ((long)j * block), block));
            }

            Communicator.AllToAll(new ReadOnlySpan<float>(send, P * block), new Span<float>(receive, P * block));
            for (int j = 0; j < P; j++)
            {
                int column = Start(j, kv) * headDim;
                for (int i = 0; i < n; i++)
                {
                    float* to = rowsOfShard + (((long)i0 + i) * width) + column;
                    VectorOps.Add(receive + ((long)j * block) + ((long)i * w), to, w, to);
                }
            }
        }
    }
}
