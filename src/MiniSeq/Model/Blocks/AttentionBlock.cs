// The attention half of a decoder layer: m = h + attention(rope(rmsnorm(h)·Wqᵀ), rope(rmsnorm(h)·Wkᵀ), rmsnorm(h)·Wvᵀ)·Woᵀ.
// Qwen2 adds biases to the q, k, v projections; Qwen3 applies a per-head RMSNorm (weight of width D) to q and k after
// the projection and before RoPE. Forward saves q, k (normed, rotated), v, the attention output, one log-sum-exp per row
// and head, and m (h_mid); the input norm (and Qwen3's pre-norm q, k) is recomputed per projection chunk from h.
// Mistral's sliding window and the document boundaries of packed rows are honoured inside the flash-attention
// tiles; RoPE positions restart at each document. Under PassPlan.AttentionInputsBf16 q, k, v are kept as bf16 (rounded
// per projection chunk after RoPE) and flash attention reads them directly. The RoPE table's row t holds position Offset + t (a Ulysses shard's
// global positions; PassPlan.RopeRows), so RoPE runs at offset 0. Backward accumulates into the gradient arena
// and adds dL/dh into dRes.
using MiniSeq.Diagnostics;
using MiniSeq.Kernels;
using MiniSeq.Tensors;

namespace MiniSeq.Model.Blocks;

/// <summary>Forward and backward of the attention half of layer l.</summary>
internal sealed unsafe class AttentionBlock(PassContext ctx)
{
    /// <summary>q, k, v, attention output, lse and h_mid of layer l from its input hIn; with
    /// <paramref name="attentionKept"/> (a recompute whose layer kept its attention output and lse) q, k, v and h_mid
    /// only — the flash-attention forward would write the same bits again. <paramref name="savedBf16"/> (mixed precision
    /// without recomputation): q, k and v are rounded to bf16 and stored there before attention, which then runs on
    /// the rounded values, so the backward's probabilities (from the stored q, k and this forward's lse) sum to one.</summary>
    /// <remarks>m = h + a·Woᵀ goes to <paramref name="mid"/>: the workspace's h_mid, the layer's output buffer, or hIn
    /// itself (in place: hIn is not read after the projections).</remarks>
    public void Forward(int l, float* hIn, LayerWorkspaceSlots ws, float* mid, bool attentionKept = false, SavedBf16Slots? savedBf16 = null)
    {
        LayerSlots w = ctx.Layout.Layers[l];
        LlamaConfig cfg = ctx.Config;
        PassPlan plan = ctx.Plan;
        int c = cfg.HiddenSize, hd = cfg.QueryDim, kvd = cfg.KeyValueDim, rowsTotal = ctx.Rows;
        // Mixed precision rounds q, k, v after RoPE, per projection chunk: into the bf16 slots flash attention reads
        // (the chunk is computed in fp32 scratch), or — under Ulysses, whose all-to-alls move fp32 — in place.
        bool bf16Inputs = plan.AttentionInputsBf16, roundInPlace = plan.RoundsAttentionInputs && !bf16Inputs;
        float* q = bf16Inputs ? null : ctx.Work(ws.Query), k = bf16Inputs ? null : ctx.Work(ws.Key), v = bf16Inputs ? null : ctx.Work(ws.Value);
        float* attn = ctx.Work(ws.AttnOut);
        float* xn = ctx.Temp(plan.ProjNorm), rstd = ctx.Temp(plan.ProjRstd);
        LinearWeights wq = ctx.Projection(w.Query, c, hd, default, w.QueryBias), wk = ctx.Projection(w.Key, c, kvd, default, w.KeyBias),
            wv = ctx.Projection(w.Value, c, kvd, default, w.ValueBias);
        for (int r0 = 0; r0 < rowsTotal; r0 += plan.ProjectionRows)
        {
            int rows = Math.Min(plan.ProjectionRows, rowsTotal - r0);
            float* qc = bf16Inputs ? ctx.Temp(plan.ProjQuery) : q + ((long)r0 * hd);
            float* kc = bf16Inputs ? ctx.Temp(plan.ProjKey) : k + ((long)r0 * kvd);
            float* vc = bf16Inputs ? ctx.Temp(plan.ProjValue) : v + ((long)r0 * kvd);

            // xn1 = rmsnorm(h) ; q = xn1·Wqᵀ (+ bq) ; k = xn1·Wkᵀ (+ bk) ; v = xn1·Wvᵀ (+ bv)
            ctx.NormForward(hIn + ((long)r0 * c), w.AttentionNorm, rows, xn, rstd);
            Linear.Forward(xn, rows, wq, qc, op: ProfiledOp.AttentionProjections, firstRow: r0);
            Linear.Forward(xn, rows, wk, kc, op: ProfiledOp.AttentionProjections, firstRow: r0);
            Linear.Forward(xn, rows, wv, vc, op: ProfiledOp.AttentionProjections, firstRow: r0);
            if (w.QueryNorm is { } qNorm && w.KeyNorm is { } kNorm)
            {
                // Qwen3: q = q_norm(q) per head, k = k_norm(k) per head, in place (rows·heads rows of width D)
                float* qkRstd = ctx.Temp(plan.ProjQkRstd);
                ctx.HeadNormForward(qc, qNorm, rows, cfg.NumAttentionHeads, qc, qkRstd);
                ctx.HeadNormForward(kc, kNorm, rows, cfg.NumKeyValueHeads, kc, qkRstd);
            }

            using (StepProfiler.Measure(ProfiledOp.Rope))
            {
                Rope.Forward(qc, rows, plan.SeqLen, cfg.NumAttentionHeads, ctx.Rope, ctx.RopeOffset, ctx.DocumentStarts, firstRow: r0);
                Rope.Forward(kc, rows, plan.SeqLen, cfg.NumKeyValueHeads, ctx.Rope, ctx.RopeOffset, ctx.DocumentStarts, firstRow: r0);
            }

            if (bf16Inputs || roundInPlace)
            {
                using var scope = StepProfiler.Measure(ProfiledOp.Other);
                if (bf16Inputs)
                {
                    BFloat16.FromFloat(qc, ctx.WorkBf16(ws.Query) + ((long)r0 * hd), (long)rows * hd);
                    BFloat16.FromFloat(kc, ctx.WorkBf16(ws.Key) + ((long)r0 * kvd), (long)rows * kvd);
                    BFloat16.FromFloat(vc, ctx.WorkBf16(ws.Value) + ((long)r0 * kvd), (long)rows * kvd);
                }
                else
                {
                    BFloat16.RoundInPlace(qc, (long)rows * hd);
                    BFloat16.RoundInPlace(kc, (long)rows * kvd);
                    BFloat16.RoundInPlace(vc, (long)rows * kvd);
                }
            }
        }

        if (savedBf16 is not null && !bf16Inputs)
        {
            // Ulysses without recomputation: the rounded q, k, v (exact in bf16) are also the layer's saved ones.
            using var scope = StepProfiler.Measure(ProfiledOp.Other);
            foreach ((ArenaSlot bf16, ArenaSlot fp32) in savedBf16.AttentionInputs(ws))
            {
                ctx.StoreBf16(ctx.Work(fp32), bf16);
            }
        }

        // A recompute whose layer kept its attention output and lse (in its own workspace slots) skips flash attention.
        if (!attentionKept)
        {
            using (StepProfiler.Measure(ProfiledOp.AttentionForward))
            {
                if (ctx.SequenceParallel is { } sp)
                {
                    // Ulysses: all-to-all to the whole sequence for this rank's heads, attention there, all-to-all back.
                    sp.Forward(q, k, v, cfg, ctx.Temp(plan.HeadQuery), ctx.Temp(plan.HeadKey), ctx.Temp(plan.HeadValue), ctx.Temp(plan.HeadExchange), ctx.Work(ws.Lse), attn, ctx.SequenceDocumentStarts);
                }
                else if (bf16Inputs)
                {
                    FlashAttention.Forward(ctx.WorkBf16(ws.Query), ctx.WorkBf16(ws.Key), ctx.WorkBf16(ws.Value), plan.BatchSize, plan.SeqLen, cfg.NumAttentionHeads, cfg.NumKeyValueHeads, cfg.HeadDim,
                        attn, ctx.Work(ws.Lse), cfg.SlidingWindow ?? 0, ctx.DocumentStarts);
                }
                else
                {
                    FlashAttention.Forward(q, k, v, plan.BatchSize, plan.SeqLen, cfg.NumAttentionHeads, cfg.NumKeyValueHeads, cfg.HeadDim, attn, ctx.Work(ws.Lse), cfg.SlidingWindow ?? 0, ctx.DocumentStarts);
                }
            }
        }

        // h_mid = h + a·Woᵀ
        if (mid != hIn)
        {
            new TensorView(hIn, (long)rowsTotal * c).CopyTo(new TensorView(mid, (long)rowsTotal * c));
        }

        Linear.Forward(attn, rowsTotal, ctx.Projection(w.Output, hd, c, default), mid, accumulate: true, op: ProfiledOp.AttentionProjections);
    }

    /// <summary>Rows r0 … of the layer input: in place, or read (widened) from the store into the chunk slot.</summary>
    private float* InputRows(int l, float* hIn, LayerInputStore? storedInput, int r0, int rows, ArenaSlot chunk)
    {
        if (hIn != null)
        {
            return hIn + ((long)r0 * ctx.Config.HiddenSize);
        }

        using var scope = StepProfiler.Measure(ProfiledOp.Other);
        float* buffer = ctx.Temp(chunk);
        storedInput!.Read(l, r0, rows, buffer);
        return buffer;
    }

    /// <summary>dRes enters as dL/dm (residual included) and leaves as dL/dh. <paramref name="mid"/>: the buffer that
    /// held m (dead: the MLP backward ran), which takes dL/da; hIn null: the layer input comes from the store per chunk.</summary>
    public void Backward(int l, float* hIn, LayerWorkspaceSlots ws, float* mid, float* dRes, TensorView gradients, LayerInputStore? storedInput = null)
    {
        LayerSlots w = ctx.Layout.Layers[l];
        LlamaConfig cfg = ctx.Config;
        PassPlan plan = ctx.Plan;
        int c = cfg.HiddenSize, hd = cfg.QueryDim, kvd = cfg.KeyValueDim, rowsTotal = ctx.Rows;
        bool bf16Inputs = plan.AttentionInputsBf16;
        float* q = bf16Inputs ? null : ctx.Work(ws.Query), k = bf16Inputs ? null : ctx.Work(ws.Key), v = bf16Inputs ? null : ctx.Work(ws.Value);
        float* attn = ctx.Work(ws.AttnOut);
        float* dAttn = plan.DAttnOut.Length > 0 ? ctx.Temp(plan.DAttnOut) : mid, dq, dk, dv;

        // forward: m = h + a·Woᵀ  →  dWo += dmᵀ·a ; da = dm·Wo
        Linear.Backward(dRes, attn, rowsTotal, ctx.Projection(w.Output, hd, c, gradients), dAttn, op: ProfiledOp.AttentionProjections);

        // forward: a = flash_attention(q, k, v)
        if (ctx.SequenceParallel is { } sp)
        {
            using (StepProfiler.Measure(ProfiledOp.AttentionBackward))
            {
                // The saved q, k, v, a of this layer are overwritten (dead after this call; lse is kept).
                sp.Backward(dAttn, q, k, v, attn, ctx.Work(ws.Lse), cfg, ctx.Temp(plan.AttentionRowDot), ctx.Temp(plan.AttentionRowDotHeads), ctx.Temp(plan.BackHeadKey), ctx.Temp(plan.BackHeadValue),
                    plan.HeadDKey.Length > 0 ? ctx.Temp(plan.HeadDKey) : null, plan.HeadDValue.Length > 0 ? ctx.Temp(plan.HeadDValue) : null, ctx.Temp(plan.HeadExchange),
                    plan.AttentionPartials.Length > 0 ? ctx.Temp(plan.AttentionPartials) : null, ctx.SequenceDocumentStarts, out dq, out dk, out dv);
            }
        }
        else
        {
            dk = ctx.Temp(plan.DKey);
            dv = ctx.Temp(plan.DValue);
            ctx.Scratch[plan.DKey].Clear();
            ctx.Scratch[plan.DValue].Clear();
            using (StepProfiler.Measure(ProfiledOp.AttentionBackward))
            {
                // After dWo above, the backward's only use of the attention output is rowsum(dO∘O): taken first, it
                // frees the output's buffer for dq, so no (N, H·D) dq buffer is needed.
                float* rowDot = ctx.Temp(plan.AttentionRowDot);
                int heads = cfg.NumAttentionHeads, t = plan.SeqLen;
                for (int b = 0; b < plan.BatchSize; b++)
                {
                    long rows = (long)b * t * hd;
                    FlashAttention.RowDot(dAttn + rows, attn + rows, t, heads, cfg.HeadDim, rowDot + ((long)b * heads * t), rowStride: 1, headStride: t);
                }

                dq = attn;
                new TensorView(dq, (long)rowsTotal * hd).Clear();
                float* partials = plan.AttentionPartials.Length > 0 ? ctx.Temp(plan.AttentionPartials) : null;
                if (bf16Inputs)
                {
                    FlashAttention.Backward(dAttn, ctx.WorkBf16(ws.Query), ctx.WorkBf16(ws.Key), ctx.WorkBf16(ws.Value), ctx.Work(ws.Lse), plan.BatchSize, t, heads, cfg.NumKeyValueHeads, cfg.HeadDim,
                        dq, dk, dv, cfg.SlidingWindow ?? 0, ctx.DocumentStarts, partials, rowDot);
                }
                else
                {
                    FlashAttention.Backward(dAttn, q, k, v, output: null, ctx.Work(ws.Lse), plan.BatchSize, t, heads, cfg.NumKeyValueHeads, cfg.HeadDim, dq, dk, dv, cfg.SlidingWindow ?? 0, ctx.DocumentStarts,
                        partials, rowDot);
                }
            }
        }

        // forward: q = rope(q'), k = rope(k')
        using (StepProfiler.Measure(ProfiledOp.Rope))
        {
            Rope.Backward(dq, rowsTotal, plan.SeqLen, cfg.NumAttentionHeads, ctx.Rope, ctx.RopeOffset, ctx.DocumentStarts);
        }

        using (StepProfiler.Measure(ProfiledOp.Rope))
        {
            Rope.Backward(dk, rowsTotal, plan.SeqLen, cfg.NumKeyValueHeads, ctx.Rope, ctx.RopeOffset, ctx.DocumentStarts);
        }

        // forward: q' = xn·Wqᵀ, k' = xn·Wkᵀ, v = xn·Wvᵀ with xn = rmsnorm(h), per projection chunk
        float* xn = ctx.Temp(plan.BackProjNorm), rstd = ctx.Temp(plan.BackProjRstd), dxn = ctx.Temp(plan.BackProjDNorm);
        for (int r0 = 0; r0 < rowsTotal; r0 += plan.ProjectionRows)
        {
            int rows = Math.Min(plan.ProjectionRows, rowsTotal - r0);
            float* hChunk = InputRows(l, hIn, storedInput, r0, rows, plan.BackProjInput);
            ctx.NormForward(hChunk, w.AttentionNorm, rows, xn, rstd);
            ProjectionsBackward(l, hChunk, xn, rstd, rows, dq + ((long)r0 * hd), dk + ((long)r0 * kvd), dv + ((long)r0 * kvd), dxn, dRes + ((long)r0 * c), gradients, r0);
        }
    }

    /// <summary>
    /// Backward of xn = rmsnorm(h), q' = xn·Wqᵀ, k' = xn·Wkᵀ, v = xn·Wvᵀ (+ Qwen3's q/k norms) over <paramref name="rows"/>
    /// rows, given dq, dk (after RoPE backward) and dv, xn and its rstd: weight gradients accumulate, dRes += dL/dh.
    /// dxn is scratch of rows × C floats; the rows are pass rows <paramref name="firstRow"/>…. dq null: only the K/V
    /// projections' part; dk and dv null: only the q projection's (the norm's backward is linear in dxn, so the two
    /// parts add up to the whole: the Ulysses sequence-chunked layers run them at different times).
    /// </summary>
    internal void ProjectionsBackward(int l, float* h, float* xn, float* rstd, int rows, float* dq, float* dk, float* dv, float* dxn, float* dRes, TensorView gradients, long firstRow)
    {
        LayerSlots w = ctx.Layout.Layers[l];
        LlamaConfig cfg = ctx.Config;
        int c = cfg.HiddenSize, hd = cfg.QueryDim, kvd = cfg.KeyValueDim;
        if (dq != null)
        {
            LinearWeights wq = ctx.Projection(w.Query, c, hd, gradients, w.QueryBias);
            if (w.QueryNorm is { } qNorm)
            {
                // Qwen3, forward: q = q_norm(q'), k = k_norm(k') per head  →  dq' = q_norm_backward(dq), dk' likewise
                dq = HeadNormBackward(xn, rows, wq, qNorm, cfg.NumAttentionHeads, dq, gradients, firstRow);
            }

            // forward: q' = xn·Wqᵀ (+ bq)  →  dWq += dq'ᵀ·xn, dbq += Σ dq', dxn = dq'·Wq
            Linear.Backward(dq, xn, rows, wq, dxn, op: ProfiledOp.AttentionProjections, firstRow: firstRow);
        }

        if (dk != null)
        {
            LinearWeights wk = ctx.Projection(w.Key, c, kvd, gradients, w.KeyBias), wv = ctx.Projection(w.Value, c, kvd, gradients, w.ValueBias);
            if (w.KeyNorm is { } kNorm)
            {
                dk = HeadNormBackward(xn, rows, wk, kNorm, cfg.NumKeyValueHeads, dk, gradients, firstRow);
            }

            Linear.Backward(dk, xn, rows, wk, dxn, accumulateDx: dq != null, op: ProfiledOp.AttentionProjections, firstRow: firstRow);
            Linear.Backward(dv, xn, rows, wv, dxn, accumulateDx: true, op: ProfiledOp.AttentionProjections, firstRow: firstRow);
        }

        // forward: xn = rmsnorm(h)  →  dh += rmsnorm_backward(dxn) (dh already holds dm through the residual)
        ctx.NormBackward(dxn, h, w.AttentionNorm, rstd, rows, dRes, gradients);
    }

    /// <summary>
    /// Qwen3's per-head norm of one projection chunk, backward: recomputes the pre-norm projection p = xn·Wᵀ (+ b) and
    /// its rstd (the same kernel calls as forward, so bit-identical), then returns dp = rmsnorm_backward(dOut) in scratch
    /// (valid until the next call) and accumulates the norm weight's gradient.
    /// </summary>
    private float* HeadNormBackward(float* xn, int rows, in LinearWeights projection, ArenaSlot norm, int heads, float* dOut, TensorView gradients, long firstRow)
    {
        PassPlan plan = ctx.Plan;
        float* pre = ctx.Temp(plan.BackQkPre), rstd = ctx.Temp(plan.BackQkRstd), dPre = ctx.Temp(plan.BackQkDPre);
        long width = (long)rows * projection.OutFeatures;
        Linear.Forward(xn, rows, projection, pre, op: ProfiledOp.AttentionProjections, firstRow: firstRow);
        ctx.HeadNormForward(pre, norm, rows, heads, dPre, rstd); // the normed output is not needed: dPre is overwritten below
        new TensorView(dPre, width).Clear();
        ctx.HeadNormBackward(dOut, pre, norm, rstd, rows, heads, dPre, gradients);
        return dPre;
    }
}
