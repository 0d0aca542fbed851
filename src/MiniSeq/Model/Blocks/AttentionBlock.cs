// The attention half of a decoder layer: m = h + attention(rope(rmsnorm(h)·Wqᵀ), rope(rmsnorm(h)·Wkᵀ), rmsnorm(h)·Wvᵀ)·Woᵀ.
// Forward saves q, k, v (rotated), the attention output, one log-sum-exp per row and head, and m (h_mid); the norm
// is recomputed per projection chunk from h. Backward accumulates into the gradient arena and adds dL/dh into dRes.
using MiniSeq.Diagnostics;
using MiniSeq.Kernels;
using MiniSeq.Tensors;

namespace MiniSeq.Model.Blocks;

/// <summary>Forward and backward of the attention half of layer l.</summary>
internal sealed unsafe class AttentionBlock(PassContext ctx)
{
    /// <summary>q, k, v, attention output, lse and h_mid of layer l from its input hIn.</summary>
    public void Forward(int l, float* hIn, LayerWorkspaceSlots ws)
    {
        LayerSlots w = ctx.Layout.Layers[l];
        LlamaConfig cfg = ctx.Config;
        PassPlan plan = ctx.Plan;
        int c = cfg.HiddenSize, hd = cfg.QueryDim, kvd = cfg.KeyValueDim, rowsTotal = ctx.Rows;
        float* q = ctx.Saved(ws.Query), k = ctx.Saved(ws.Key), v = ctx.Saved(ws.Value), attn = ctx.Saved(ws.AttnOut), hMid = ctx.Saved(ws.HMid);
        float* xn = ctx.Temp(plan.ProjNorm), rstd = ctx.Temp(plan.ProjRstd);
        LinearWeights wq = ctx.Projection(w.Query, c, hd, default), wk = ctx.Projection(w.Key, c, kvd, default), wv = ctx.Projection(w.Value, c, kvd, default);
        for (int r0 = 0; r0 < rowsTotal; r0 += plan.ProjectionRows)
        {
            int rows = Math.Min(plan.ProjectionRows, rowsTotal - r0);
            // xn1 = rmsnorm(h) ; q = xn1·Wqᵀ ; k = xn1·Wkᵀ ; v = xn1·Wvᵀ
            ctx.NormForward(hIn + ((long)r0 * c), w.AttentionNorm, rows, xn, rstd);
            Linear.Forward(xn, rows, wq, q + ((long)r0 * hd), op: ProfiledOp.AttentionProjections);
            Linear.Forward(xn, rows, wk, k + ((long)r0 * kvd), op: ProfiledOp.AttentionProjections);
            Linear.Forward(xn, rows, wv, v + ((long)r0 * kvd), op: ProfiledOp.AttentionProjections);
        }

        using (StepProfiler.Measure(ProfiledOp.Rope))
        {
            Rope.Forward(q, rowsTotal, plan.SeqLen, cfg.NumAttentionHeads, ctx.Rope, plan.Positions.Offset);
        }

        using (StepProfiler.Measure(ProfiledOp.Rope))
        {
            Rope.Forward(k, rowsTotal, plan.SeqLen, cfg.NumKeyValueHeads, ctx.Rope, plan.Positions.Offset);
        }

        using (StepProfiler.Measure(ProfiledOp.AttentionForward))
        {
            FlashAttention.Forward(q, k, v, plan.BatchSize, plan.SeqLen, cfg.NumAttentionHeads, cfg.NumKeyValueHeads, cfg.HeadDim, attn, ctx.Saved(ws.Lse), plan.Positions);
        }

        // h_mid = h + a·Woᵀ
        new TensorView(hIn, (long)rowsTotal * c).CopyTo(new TensorView(hMid, (long)rowsTotal * c));
        Linear.Forward(attn, rowsTotal, ctx.Projection(w.Output, hd, c, default), hMid, accumulate: true, op: ProfiledOp.AttentionProjections);
    }

    /// <summary>dRes enters as dL/dm (residual included) and leaves as dL/dh.</summary>
    public void Backward(int l, float* hIn, LayerWorkspaceSlots ws, float* dRes, TensorView gradients)
    {
        LayerSlots w = ctx.Layout.Layers[l];
        LlamaConfig cfg = ctx.Config;
        PassPlan plan = ctx.Plan;
        int c = cfg.HiddenSize, hd = cfg.QueryDim, kvd = cfg.KeyValueDim, rowsTotal = ctx.Rows;
        float* q = ctx.Saved(ws.Query), k = ctx.Saved(ws.Key), v = ctx.Saved(ws.Value), attn = ctx.Saved(ws.AttnOut);
        float* dAttn = ctx.Temp(plan.DAttnOut), dq = ctx.Temp(plan.DQuery), dk = ctx.Temp(plan.DKey), dv = ctx.Temp(plan.DValue);

        // forward: m = h + a·Woᵀ  →  dWo += dmᵀ·a ; da = dm·Wo
        Linear.Backward(dRes, attn, rowsTotal, ctx.Projection(w.Output, hd, c, gradients), dAttn, op: ProfiledOp.AttentionProjections);

        // forward: a = flash_attention(q, k, v)
        ctx.Scratch[plan.DQuery].Clear();
        ctx.Scratch[plan.DKey].Clear();
        ctx.Scratch[plan.DValue].Clear();
        using (StepProfiler.Measure(ProfiledOp.AttentionBackward))
        {
            FlashAttention.Backward(dAttn, q, k, v, attn, ctx.Saved(ws.Lse), plan.BatchSize, plan.SeqLen, cfg.NumAttentionHeads, cfg.NumKeyValueHeads, cfg.HeadDim, dq, dk, dv, plan.Positions);
        }

        // forward: q = rope(q'), k = rope(k')
        using (StepProfiler.Measure(ProfiledOp.Rope))
        {
            Rope.Backward(dq, rowsTotal, plan.SeqLen, cfg.NumAttentionHeads, ctx.Rope, plan.Positions.Offset);
        }

        using (StepProfiler.Measure(ProfiledOp.Rope))
        {
            Rope.Backward(dk, rowsTotal, plan.SeqLen, cfg.NumKeyValueHeads, ctx.Rope, plan.Positions.Offset);
        }

        // forward: q' = xn·Wqᵀ, k' = xn·Wkᵀ, v = xn·Wvᵀ with xn = rmsnorm(h), per projection chunk
        float* xn = ctx.Temp(plan.BackProjNorm), rstd = ctx.Temp(plan.BackProjRstd), dxn = ctx.Temp(plan.BackProjDNorm);
        LinearWeights wq = ctx.Projection(w.Query, c, hd, gradients), wk = ctx.Projection(w.Key, c, kvd, gradients), wv = ctx.Projection(w.Value, c, kvd, gradients);
        for (int r0 = 0; r0 < rowsTotal; r0 += plan.ProjectionRows)
        {
            int rows = Math.Min(plan.ProjectionRows, rowsTotal - r0);
            float* hChunk = hIn + ((long)r0 * c);
            ctx.NormForward(hChunk, w.AttentionNorm, rows, xn, rstd);
            Linear.Backward(dq + ((long)r0 * hd), xn, rows, wq, dxn, op: ProfiledOp.AttentionProjections);
            Linear.Backward(dk + ((long)r0 * kvd), xn, rows, wk, dxn, accumulateDx: true, op: ProfiledOp.AttentionProjections);
            Linear.Backward(dv + ((long)r0 * kvd), xn, rows, wv, dxn, accumulateDx: true, op: ProfiledOp.AttentionProjections);

            // forward: xn = rmsnorm(h)  →  dh += rmsnorm_backward(dxn) (dh already holds dm through the residual)
            ctx.NormBackward(dxn, hChunk, w.AttentionNorm, rstd, rows, dRes + ((long)r0 * c), gradients);
        }
    }
}
