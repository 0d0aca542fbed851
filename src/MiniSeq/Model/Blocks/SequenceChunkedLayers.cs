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
using MiniSeq.Diagnostics;
using MiniSeq.Kernels;
using MiniSeq.Tensors;

namespace MiniSeq.Model.Blocks;

/// <summary>Forward and backward of all decoder layers in sequence chunks (policy <see cref="MemoryPolicy.SequenceChunk"/>).</summary>
internal sealed unsafe class SequenceChunkedLayers(PassContext ctx, AttentionBlock attention, MlpBlock mlp, LmHeadBlock head, LayerInputStore? store)
{
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
        for (int l = 0; l < layers; l++)
        {
            for (int i = 0; i < ChunkCount; i++)
            {
                (int b, int t0, int rows) = Chunk(i);
                long r0 = ((long)b * Plan.SeqLen) + t0;
                float* hc = h + (r0 * c);
                if (training && l >= 1)
                {
                    store!.Write(l - 1, r0, rows, hc);
                }

                float* mid = ctx.Temp(Plan.ChunkMid);
                ProjectAndAttend(l, b, t0, rows, hc, keysAndValues: true, mid);
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
        }
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
        float* kc = ctx.Saved(Plan.Key) + (r0 * kvd), vc = ctx.Saved(Plan.Value) + (r0 * kvd);
        FillRope(b, t0, rows);
        ctx.NormForward(hIn, w.AttentionNorm, rows, xn, rstd);
        Linear.Forward(xn, rows, ctx.Projection(w.Key, c, kvd, default, w.KeyBias), kc, op: ProfiledOp.AttentionProjections, firstRow: r0);
        Linear.Forward(xn, rows, ctx.Projection(w.Value, c, kvd, default, w.ValueBias), vc, op: ProfiledOp.AttentionProjections, firstRow: r0);
        if (w.KeyNorm is { } kNorm)
        {
            ctx.HeadNormForward(kc, kNorm, rows, cfg.NumKeyValueHeads, kc, ctx.Temp(Plan.ProjQkRstd));
        }

        using var scope = StepProfiler.Measure(ProfiledOp.Rope);
        Rope.Forward(kc, rows, rows, cfg.NumKeyValueHeads, ctx.Rope, 0);
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
            FlashAttention.ForwardQueries(q, ctx.Saved(Plan.Key) + kvOffset, ctx.Saved(Plan.Value) + kvOffset, t0, rows, cfg.NumAttentionHeads, cfg.NumKeyValueHeads, cfg.HeadDim,
                o, lse, cfg.SlidingWindow ?? 0, RowDocumentStarts(b));
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

    private int* ChunkDocumentStarts(int b, int t0) => ctx.DocumentStarts == null ? null : ctx.DocumentStarts + ((long)b * Plan.SeqLen) + t0;
}
