// Sequence-chunked decoder layers: every layer runs over chunks of S positions of one sequence at a time, forward and
// backward, so that only the residual stream (N, C), K and V (N, KvH·D) and, in backward, dK and dV exist for the
// whole sequence; q, the attention output, h_mid, the MLP and all their gradients exist for one chunk.
//
// Forward, layer l, chunk c (positions [t0, t0 + S) of row b), in position order:
//   store ← h_c (the layer input, for backward; layer 0's input is the embedding, recomputed instead)
//   xn = rmsnorm(h_c); q_c = rope(xn·Wqᵀ); K_c = rope(xn·Wkᵀ); V_c = xn·Wvᵀ (the RoPE table holds the chunk's rows only)
//   o_c = attention(q_c, K[0, t0 + S), V[0, t0 + S)); m_c = h_c + o_c·Woᵀ; h_c ← m_c + MLP(m_c)   (in place: h_c is dead)
//   last layer: loss and dL/dh_c from the LM head at once; the stream rows h_c become dRes_c.
// Backward, layer l: K and V of every chunk are recomputed from the stored inputs; then chunks in reverse position
// order recompute q_c, o_c, m_c and run MLP, output projection and attention backward. dK, dV of chunk c's keys are
// complete once every chunk at or after c has run (only queries at or after a key see it), so the K/V projections'
// backward runs for chunk c right away. Exact: the same math as the unchunked layer, summed in a different order.
//
// Under Ulysses (P ranks, each T positions of every row, chunks of S local positions, every rank the same chunk at
// once): K and V live in head layout over the whole rows (this rank's kv heads), so a query sees keys of every rank.
// A query of rank j's chunk needs the keys of all earlier ranks' positions, later chunks included, so each layer
// first runs a K/V pass over all chunks (norm, projections, RoPE, all-to-all into the head-layout cache), then the
// chunks' queries: q to head layout (P blocks of S rows, rank j's block at positions j·T + t0 …), attention per
// block, the output back to sequence layout. Backward likewise: dK, dV (head layout) are complete only after every
// chunk's queries, so the queries' pass runs only the q projection's backward and a third pass sends dK, dV back to
// sequence layout and runs the K/V projections' backward (RMSNorm's backward is linear in dxn: its q and kv parts add
// up to the whole).
using MiniSeq.Diagnostics;
using MiniSeq.Kernels;
using MiniSeq.Tensors;

namespace MiniSeq.Model.Blocks;

/// <summary>Forward and backward of all decoder layers in sequence chunks (policy <see cref="MemoryPolicy.SequenceChunk"/>).</summary>
internal sealed unsafe class SequenceChunkedLayers(PassContext ctx, AttentionBlock attention, MlpBlock mlp, LmHeadBlock head, LayerInputStore? store)
{
    /// <summary>Reports of a training pass (see <see cref="LlamaPass.Progress"/>).</summary>
    public Action<PassProgress>? Progress { get; set; }

    private PassPlan Plan => ctx.Plan;

    private int ChunksPerRow => (Plan.SeqLen + Plan.SequenceChunkRows - 1) / Plan.SequenceChunkRows;

    private int ChunkCount => Plan.BatchSize * ChunksPerRow;

    /// <summary>
    /// All layers forward over the residual stream (embedded from <paramref name="tokens"/>). Training: the layer inputs
    /// go to the store and the last layer's LM head turns the stream into dL/dh_L; returns the sum of token losses.
    /// Otherwise the stream ends as the final hidden state and 0 is returned.
    /// </summary>
    public double Forward(int* tokens, int* labels, bool training, float gradScale, TensorView gradients)
    {
        LlamaConfig cfg = ctx.Config;
        int c = cfg.HiddenSize, layers = cfg.NumHiddenLayers;
        float* h = ctx.Saved(Plan.Stream);
        using (StepProfiler.Measure(ProfiledOp.Other))
        {
            Embedding.Forward(tokens, ctx.Rows, ctx.Weight(ctx.Layout.Embedding), c, h);
        }

        double lossSum = 0;
        bool ulysses = ctx.SequenceParallel is not null;
        for (int l = 0; l < layers; l++)
        {
            for (int i = 0; ulysses && i < ChunkCount; i++)
            {
                // Ulysses: K and V of every rank's positions before any query (see the file comment).
                (int b, int t0, int rows) = Chunk(i);
                long r0 = ((long)b * Plan.SeqLen) + t0;
                ProjectKeysAndValues(l, b, t0, rows, h + (r0 * c));
            }

            for (int i = 0; i < ChunkCount; i++)
            {
                (int b, int t0, int rows) = Chunk(i);
                long r0 = ((long)b * Plan.SeqLen) + t0;
                float* hc = h + (r0 * c);
                if (training && l >= 1)
                {
                    // The layer input of this chunk (untouched by a Ulysses K/V pass above) before the layer updates it.
                    store!.Write(l - 1, r0, rows, hc);
                }

                float* mid = ctx.Temp(Plan.ChunkMid);
                ProjectAndAttend(l, b, t0, rows, hc, keysAndValues: !ulysses, mid);
                mlp.Forward(l, mid, rows, hc, firstRow: r0);
                if (training && l == layers - 1)
                {
                    // h_c is final: keep it in the h_mid buffer (free now) and turn the stream rows into dL/dh_c.
                    new TensorView(hc, (long)rows * c).CopyTo(new TensorView(mid, (long)rows * c));
                    new TensorView(hc, (long)rows * c).Clear();
                    lossSum += head.ForwardBackward(mid, labels + r0, rows, gradScale, hc, gradients, firstRow: r0);
                    if (Plan.Loss.LmHeadRecompute)
                    {
                        head.ForwardBackward(mid, labels + r0, rows, gradScale, hc, gradients, recomputePass: true, firstRow: r0);
                    }
                }
            }

            if (training)
            {
                // The last layer's chunks ran the LM head too: its report follows that layer's.
                Progress?.Invoke(new PassProgress(PassPhase.Forward, l + 1, layers));
            }
        }

        if (training)
        {
            Progress?.Invoke(new PassProgress(PassPhase.LmHead, layers, layers));
        }

        store?.Flush();
        return lossSum;
    }

    /// <summary>All layers backward; the stream enters as dL/dh_L and leaves as dL/dh_0.</summary>
    public void Backward(int* tokens, TensorView gradients)
    {
        LlamaConfig cfg = ctx.Config;
        int c = cfg.HiddenSize, hd = cfg.QueryDim, kvd = cfg.KeyValueDim, seqLen = Plan.SeqLen;
        float* dRes = ctx.Saved(Plan.Stream), hIn = ctx.Temp(Plan.ChunkInput), mid = ctx.Temp(Plan.ChunkMid);
        float* q = ctx.Temp(Plan.ChunkQuery), o = ctx.Temp(Plan.ChunkAttnOut), lse = ctx.Temp(Plan.ChunkLse);
        float* dq = ctx.Temp(Plan.DQuery), dO = ctx.Temp(Plan.DAttnOut), dxn = ctx.Temp(Plan.BackProjDNorm);
        float* xn = ctx.Temp(Plan.ProjNorm), rstd = ctx.Temp(Plan.ProjRstd);
        float* dk = ctx.Temp(Plan.DKey), dv = ctx.Temp(Plan.DValue), k = ctx.Saved(Plan.Key), v = ctx.Saved(Plan.Value);
        float* partials = Plan.AttentionPartials.Length > 0 ? ctx.Temp(Plan.AttentionPartials) : null;
        for (int l = cfg.NumHiddenLayers - 1; l >= 0; l--)
        {
            LinearWeights wo = ctx.Projection(ctx.Layout.Layers[l].Output, hd, c, gradients);

            // K and V of the whole sequence, chunk by chunk in position order.
            for (int i = 0; i < ChunkCount; i++)
            {
                (int b, int t0, int rows) = Chunk(i);
                LoadInput(l, i, tokens, hIn, prefetch: i + 1 < ChunkCount ? i + 1 : ChunkCount - 1);
                ProjectKeysAndValues(l, b, t0, rows, hIn);
            }

            ctx.Scratch[Plan.DKey].Clear();
            ctx.Scratch[Plan.DValue].Clear();
            for (int i = ChunkCount - 1; i >= 0; i--)
            {
                (int b, int t0, int rows) = Chunk(i);
                long r0 = ((long)b * seqLen) + t0;
                float* dResC = dRes + (r0 * c);
                LoadInput(l, i, tokens, hIn, prefetch: i > 0 ? i - 1 : 0);

                // recompute: xn, q, o, lse, m (K and V are in place)
                ProjectAndAttend(l, b, t0, rows, hIn, keysAndValues: false, mid);

                // MLP: dRes_c turns from dL/dh_out into dL/dm
                mlp.Backward(l, mid, rows, dResC, gradients, firstRow: r0);

                // forward: m = h + o·Woᵀ  →  dWo += dmᵀ·o ; do = dm·Wo
                Linear.Backward(dResC, o, rows, wo, dO, op: ProfiledOp.AttentionProjections, firstRow: r0);

                // forward: o = attention(q, K, V)  →  dq (this chunk), dK and dV (keys up to the chunk's end) +=
                new TensorView(dq, (long)rows * hd).Clear();
                if (ctx.SequenceParallel is { } sp)
                {
                    using (StepProfiler.Measure(ProfiledOp.AttentionBackward))
                    {
                        AttendBackwardInHeads(sp, b, t0, rows, dO, q, lse, dq, partials);
                    }

                    using (StepProfiler.Measure(ProfiledOp.Rope))
                    {
                        Rope.Backward(dq, rows, rows, cfg.NumAttentionHeads, ctx.Rope, 0);
                    }

                    // dK, dV are complete only after every chunk's queries: only the q projection's backward here.
                    attention.ProjectionsBackward(l, hIn, xn, rstd, rows, dq, null, null, dxn, dResC, gradients, r0);
                    continue;
                }

                long kvOffset = (long)b * seqLen * kvd;
                using (StepProfiler.Measure(ProfiledOp.AttentionBackward))
                {
                    FlashAttention.BackwardQueries(dO, q, k + kvOffset, v + kvOffset, o, lse, t0, rows, cfg.NumAttentionHeads, cfg.NumKeyValueHeads, cfg.HeadDim,
                        dq, dk + kvOffset, dv + kvOffset, cfg.SlidingWindow ?? 0, RowDocumentStarts(b), partials);
                }

                // dK, dV of this chunk's keys are complete: back through RoPE, the q/k/v projections and the input norm.
                float* dkC = dk + (r0 * kvd), dvC = dv + (r0 * kvd);
                using (StepProfiler.Measure(ProfiledOp.Rope))
                {
                    Rope.Backward(dq, rows, rows, cfg.NumAttentionHeads, ctx.Rope, 0);
                    Rope.Backward(dkC, rows, rows, cfg.NumKeyValueHeads, ctx.Rope, 0);
                }

                attention.ProjectionsBackward(l, hIn, xn, rstd, rows, dq, dkC, dvC, dxn, dResC, gradients, r0);
            }

            if (ctx.SequenceParallel is { } ulysses)
            {
                KeysAndValuesBackward(ulysses, l, tokens, hIn, dxn, gradients);
            }

            Progress?.Invoke(new PassProgress(PassPhase.Backward, cfg.NumHiddenLayers - l, cfg.NumHiddenLayers));
        }
    }

    /// <summary>
    /// Ulysses, after every chunk's queries of layer l: dK and dV of each chunk's positions back from head layout to
    /// sequence layout, then RoPE's, the K/V projections' and the input norm's backward into the residual gradient.
    /// </summary>
    private void KeysAndValuesBackward(Distributed.UlyssesAttention sp, int l, int* tokens, float* hIn, float* dxn, TensorView gradients)
    {
        LlamaConfig cfg = ctx.Config;
        int c = cfg.HiddenSize, kvd = cfg.KeyValueDim, t = Plan.SeqLen, ranks = Plan.SequenceParallel!.Ranks;
        float* dRes = ctx.Saved(Plan.Stream), xn = ctx.Temp(Plan.ProjNorm), rstd = ctx.Temp(Plan.ProjRstd);
        float* dkC = ctx.Temp(Plan.ChunkKey), dvC = ctx.Temp(Plan.ChunkValue), exchange = ctx.Temp(Plan.HeadExchange);
        for (int i = 0; i < ChunkCount; i++)
        {
            (int b, int t0, int rows) = Chunk(i);
            long r0 = ((long)b * t) + t0, firstRow = ((long)b * ranks * t) + t0;
            LoadInput(l, i, tokens, hIn, prefetch: i + 1 < ChunkCount ? i + 1 : i);
            FillRope(b, t0, rows);
            ctx.NormForward(hIn, ctx.Layout.Layers[l].AttentionNorm, rows, xn, rstd);
            new TensorView(dkC, (long)rows * kvd).Clear();
            new TensorView(dvC, (long)rows * kvd).Clear();
            using (StepProfiler.Measure(ProfiledOp.AttentionBackward))
            {
                sp.ToSequence(ctx.Temp(Plan.DKey), firstRow, t, cfg.NumKeyValueHeads, kv: true, dkC, rows, exchange);
                sp.ToSequence(ctx.Temp(Plan.DValue), firstRow, t, cfg.NumKeyValueHeads, kv: true, dvC, rows, exchange);
            }

            using (StepProfiler.Measure(ProfiledOp.Rope))
            {
                Rope.Backward(dkC, rows, rows, cfg.NumKeyValueHeads, ctx.Rope, 0);
            }

            attention.ProjectionsBackward(l, hIn, xn, rstd, rows, null, dkC, dvC, dxn, dRes + (r0 * c), gradients, r0);
        }
    }

    /// <summary>
    /// Ulysses attention of one chunk's queries (q, rows × H·D, RoPE applied): q to head layout (P blocks of
    /// <paramref name="rows"/> rows, rank j's block at positions j·T + t0 …), flash attention of each block over the
    /// head-layout K, V of the whole row, the output back to sequence layout in <paramref name="o"/>. Leaves the
    /// head-layout q, output and lse (P blocks of H/P × rows) for <see cref="AttendBackwardInHeads"/>.
    /// </summary>
    private void AttendInHeads(Distributed.UlyssesAttention sp, int b, int t0, int rows, float* q, float* o, float* lse)
    {
        LlamaConfig cfg = ctx.Config;
        Distributed.UlyssesHeads heads = Plan.SequenceParallel!;
        int t = Plan.SeqLen, block = rows * heads.LocalHeads * cfg.HeadDim;
        long kvOffset = (long)b * heads.Ranks * t * heads.LocalKvHeads * cfg.HeadDim;
        float* qh = ctx.Temp(Plan.HeadQuery), oh = ctx.Temp(Plan.HeadAttnOut), exchange = ctx.Temp(Plan.HeadExchange);
        sp.ToHeads(q, rows, cfg.NumAttentionHeads, kv: false, qh, 0, rows, exchange);
        for (int j = 0; j < heads.Ranks; j++)
        {
            FlashAttention.ForwardQueries(qh + ((long)j * block), ctx.Saved(Plan.Key) + kvOffset, ctx.Saved(Plan.Value) + kvOffset, (j * t) + t0, rows,
                heads.LocalHeads, heads.LocalKvHeads, cfg.HeadDim, oh + ((long)j * block), lse + ((long)j * heads.LocalHeads * rows), cfg.SlidingWindow ?? 0, SequenceRowDocumentStarts(b));
        }

        new TensorView(o, (long)rows * cfg.QueryDim).Clear();
        sp.ToSequence(oh, 0, rows, cfg.NumAttentionHeads, kv: false, o, rows, exchange);
    }

    /// <summary>
    /// Backward of <see cref="AttendInHeads"/> (which must have just run for this chunk): dOutput to head layout (into
    /// the chunk's q buffer, dead once q went to heads), the blocks' backward accumulating into the head-layout dK, dV
    /// of the whole row, and dq back to sequence layout, added into <paramref name="dq"/>. Overwrites dOutput.
    /// </summary>
    private void AttendBackwardInHeads(Distributed.UlyssesAttention sp, int b, int t0, int rows, float* dO, float* q, float* lse, float* dq, float* partials)
    {
        LlamaConfig cfg = ctx.Config;
        Distributed.UlyssesHeads heads = Plan.SequenceParallel!;
        int t = Plan.SeqLen, block = rows * heads.LocalHeads * cfg.HeadDim;
        long kvOffset = (long)b * heads.Ranks * t * heads.LocalKvHeads * cfg.HeadDim;
        float* qh = ctx.Temp(Plan.HeadQuery), oh = ctx.Temp(Plan.HeadAttnOut), exchange = ctx.Temp(Plan.HeadExchange);
        float* dOh = q, dQh = dO;
        sp.ToHeads(dO, rows, cfg.NumAttentionHeads, kv: false, dOh, 0, rows, exchange);
        new TensorView(dQh, (long)rows * cfg.QueryDim).Clear();
        for (int j = 0; j < heads.Ranks; j++)
        {
            FlashAttention.BackwardQueries(dOh + ((long)j * block), qh + ((long)j * block), ctx.Saved(Plan.Key) + kvOffset, ctx.Saved(Plan.Value) + kvOffset,
                oh + ((long)j * block), lse + ((long)j * heads.LocalHeads * rows), (j * t) + t0, rows, heads.LocalHeads, heads.LocalKvHeads, cfg.HeadDim,
                dQh + ((long)j * block), ctx.Temp(Plan.DKey) + kvOffset, ctx.Temp(Plan.DValue) + kvOffset, cfg.SlidingWindow ?? 0, SequenceRowDocumentStarts(b), partials);
        }

        sp.ToSequence(dQh, 0, rows, cfg.NumAttentionHeads, kv: false, dq, rows, exchange);
    }

    /// <summary>Row b, first position and positions of chunk i (chunks in position order, row by row).</summary>
    private (int Row, int Start, int Rows) Chunk(int i)
    {
        int s = Plan.SequenceChunkRows;
        int b = i / ChunksPerRow, t0 = i % ChunksPerRow * s;
        return (b, t0, Math.Min(s, Plan.SeqLen - t0));
    }

    /// <summary>The input of layer l at chunk i into <paramref name="destination"/>: the embedding for layer 0, else
    /// from the store (and asks the store to fetch chunk <paramref name="prefetch"/> next).</summary>
    private void LoadInput(int l, int i, int* tokens, float* destination, int prefetch)
    {
        (int b, int t0, int rows) = Chunk(i);
        long r0 = ((long)b * Plan.SeqLen) + t0;
        if (l == 0)
        {
            using var scope = StepProfiler.Measure(ProfiledOp.Other);
            Embedding.Forward(tokens + r0, rows, ctx.Weight(ctx.Layout.Embedding), ctx.Config.HiddenSize, destination);
            return;
        }

        store!.Read(l - 1, r0, rows, destination);
        if (prefetch != i)
        {
            (int pb, int pt0, int prows) = Chunk(prefetch);
            store.Prefetch(l - 1, ((long)pb * Plan.SeqLen) + pt0, prows);
        }
    }

    /// <summary>K and V rows of one chunk (norm, projections, Qwen3 k-norm, RoPE) from its layer input.</summary>
    private void ProjectKeysAndValues(int l, int b, int t0, int rows, float* hIn)
    {
        LayerSlots w = ctx.Layout.Layers[l];
        LlamaConfig cfg = ctx.Config;
        int c = cfg.HiddenSize, kvd = cfg.KeyValueDim;
        long r0 = ((long)b * Plan.SeqLen) + t0;
        float* xn = ctx.Temp(Plan.ProjNorm), rstd = ctx.Temp(Plan.ProjRstd);
        Distributed.UlyssesAttention? sp = ctx.SequenceParallel;
        float* kc = sp is null ? ctx.Saved(Plan.Key) + (r0 * kvd) : ctx.Temp(Plan.ChunkKey);
        float* vc = sp is null ? ctx.Saved(Plan.Value) + (r0 * kvd) : ctx.Temp(Plan.ChunkValue);
        FillRope(b, t0, rows);
        ctx.NormForward(hIn, w.AttentionNorm, rows, xn, rstd);
        Linear.Forward(xn, rows, ctx.Projection(w.Key, c, kvd, default, w.KeyBias), kc, op: ProfiledOp.AttentionProjections, firstRow: r0);
        Linear.Forward(xn, rows, ctx.Projection(w.Value, c, kvd, default, w.ValueBias), vc, op: ProfiledOp.AttentionProjections, firstRow: r0);
        if (w.KeyNorm is { } kNorm)
        {
            ctx.HeadNormForward(kc, kNorm, rows, cfg.NumKeyValueHeads, kc, ctx.Temp(Plan.ProjQkRstd));
        }

        using (StepProfiler.Measure(ProfiledOp.Rope))
        {
            Rope.Forward(kc, rows, rows, cfg.NumKeyValueHeads, ctx.Rope, 0);
        }

        if (sp is not null)
        {
            // Ulysses: into the head-layout K, V of the whole row (rank i's chunk rows at positions i·T + t0 …).
            using var scope = StepProfiler.Measure(ProfiledOp.AttentionForward);
            long firstRow = ((long)b * Plan.SequenceParallel!.Ranks * Plan.SeqLen) + t0;
            sp.ToHeads(kc, rows, cfg.NumKeyValueHeads, kv: true, ctx.Saved(Plan.Key), firstRow, Plan.SeqLen, ctx.Temp(Plan.HeadExchange));
            sp.ToHeads(vc, rows, cfg.NumKeyValueHeads, kv: true, ctx.Saved(Plan.Value), firstRow, Plan.SeqLen, ctx.Temp(Plan.HeadExchange));
        }
    }

    /// <summary>
    /// xn (and rstd) = rmsnorm(h_c), q_c (and, when asked, the chunk's K and V rows), attention of the chunk's queries
    /// over keys [0, t0 + rows) into o and lse, and m = h_c + o·Woᵀ into <paramref name="mid"/>.
    /// </summary>
    private void ProjectAndAttend(int l, int b, int t0, int rows, float* hIn, bool keysAndValues, float* mid)
    {
        LayerSlots w = ctx.Layout.Layers[l];
        LlamaConfig cfg = ctx.Config;
        int c = cfg.HiddenSize, hd = cfg.QueryDim, kvd = cfg.KeyValueDim, seqLen = Plan.SeqLen;
        long r0 = ((long)b * seqLen) + t0;
        float* q = ctx.Temp(Plan.ChunkQuery), o = ctx.Temp(Plan.ChunkAttnOut), lse = ctx.Temp(Plan.ChunkLse);
        if (keysAndValues)
        {
            ProjectKeysAndValues(l, b, t0, rows, hIn); // leaves xn, rstd of this chunk
        }
        else
        {
            FillRope(b, t0, rows);
            ctx.NormForward(hIn, w.AttentionNorm, rows, ctx.Temp(Plan.ProjNorm), ctx.Temp(Plan.ProjRstd));
        }

        float* xn = ctx.Temp(Plan.ProjNorm);
        Linear.Forward(xn, rows, ctx.Projection(w.Query, c, hd, default, w.QueryBias), q, op: ProfiledOp.AttentionProjections, firstRow: r0);
        if (w.QueryNorm is { } qNorm)
        {
            ctx.HeadNormForward(q, qNorm, rows, cfg.NumAttentionHeads, q, ctx.Temp(Plan.ProjQkRstd));
        }

        using (StepProfiler.Measure(ProfiledOp.Rope))
        {
            Rope.Forward(q, rows, rows, cfg.NumAttentionHeads, ctx.Rope, 0);
        }

        long kvOffset = (long)b * seqLen * kvd;
        using (StepProfiler.Measure(ProfiledOp.AttentionForward))
        {
            if (ctx.SequenceParallel is { } sp)
            {
                AttendInHeads(sp, b, t0, rows, q, o, lse);
            }
            else
            {
                FlashAttention.ForwardQueries(q, ctx.Saved(Plan.Key) + kvOffset, ctx.Saved(Plan.Value) + kvOffset, t0, rows, cfg.NumAttentionHeads, cfg.NumKeyValueHeads, cfg.HeadDim,
                    o, lse, cfg.SlidingWindow ?? 0, RowDocumentStarts(b));
            }
        }

        // m = h + o·Woᵀ
        new TensorView(hIn, (long)rows * c).CopyTo(new TensorView(mid, (long)rows * c));
        Linear.Forward(o, rows, ctx.Projection(w.Output, hd, c, default), mid, accumulate: true, op: ProfiledOp.AttentionProjections, firstRow: r0);
    }

    /// <summary>The RoPE table's rows become this chunk's positions (absolute, restarting per document); RoPE of the
    /// chunk then runs at position offset 0. Valid until the next chunk's fill, backward included.</summary>
    private void FillRope(int b, int t0, int rows)
    {
        using var scope = StepProfiler.Measure(ProfiledOp.Rope);
        ctx.Rope.FillRows(Plan.Positions.Offset + t0, rows, ChunkDocumentStarts(b, t0));
    }

    private int* RowDocumentStarts(int b) => ctx.DocumentStarts == null ? null : ctx.DocumentStarts + ((long)b * Plan.SeqLen);

    /// <summary>Ulysses: the document starts of the whole row b (P·T positions), or null.</summary>
    private int* SequenceRowDocumentStarts(int b) => ctx.SequenceDocumentStarts == null ? null : ctx.SequenceDocumentStarts + ((long)b * Plan.SequenceParallel!.Ranks * Plan.SeqLen);

    private int* ChunkDocumentStarts(int b, int t0) => ctx.DocumentStarts == null ? null : ctx.DocumentStarts + ((long)b * Plan.SeqLen) + t0;
}
