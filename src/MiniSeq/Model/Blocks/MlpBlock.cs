// The MLP half of a decoder layer, h_out = m + (silu(rmsnorm(m)·Wgᵀ) * (rmsnorm(m)·Wuᵀ))·Wdᵀ, over chunks of rows
// (the mini-sequence MLP). Forward saves gate/up only when the MLP runs as one chunk (MsT off); otherwise backward
// recomputes norm, gate and up per chunk, so at no time does more than one chunk of N×F exist.
using MiniSeq.Diagnostics;
using MiniSeq.Kernels;
using MiniSeq.Tensors;

namespace MiniSeq.Model.Blocks;

/// <summary>Forward and backward of the (mini-sequence) MLP half of layer l.</summary>
internal sealed unsafe class MlpBlock(PassContext ctx)
{
    /// <summary>h_out = h_mid + MLP(rmsnorm(h_mid)), chunk by chunk; <paramref name="hMid"/> may be h_out itself (in place).</summary>
    public void Forward(int l, LayerWorkspaceSlots ws, float* hMid, float* hOut) => Forward(l, hMid, ctx.Rows, hOut, ws.Gate, ws.Up);

    /// <summary>h_out = h_mid + MLP(rmsnorm(h_mid)) over <paramref name="rowsTotal"/> rows, in chunks of the plan's MLP
    /// chunk rows; gate/up go to the saved slots when given (unchunked MLP), else to scratch. <paramref name="firstRow"/>:
    /// the pass row of hMid's first row (LoRA dropout masks). hOut may be hMid: each chunk's rows are normed before
    /// the down projection adds to them.</summary>
    public void Forward(int l, float* hMid, int rowsTotal, float* hOut, ArenaSlot? gateSlot = null, ArenaSlot? upSlot = null, long firstRow = 0)
    {
        LayerSlots w = ctx.Layout.Layers[l];
        PassPlan plan = ctx.Plan;
        int c = ctx.Config.HiddenSize, f = ctx.Config.IntermediateSize, chunk = plan.MlpChunkRows;
        float* xn = ctx.Temp(plan.MlpNorm), rstd = ctx.Temp(plan.MlpRstd), p = ctx.Temp(plan.MlpProduct);
        LinearWeights wg = ctx.Projection(w.Gate, c, f, default), wu = ctx.Projection(w.Up, c, f, default), wd = ctx.Projection(w.Down, f, c, default);
        if (hMid != hOut)
        {
            new TensorView(hMid, (long)rowsTotal * c).CopyTo(new TensorView(hOut, (long)rowsTotal * c));
        }

        for (int r0 = 0; r0 < rowsTotal; r0 += chunk)
        {
            int rows = Math.Min(chunk, rowsTotal - r0);
            float* g = gateSlot is ArenaSlot gs ? ctx.Work(gs) + ((long)r0 * f) : ctx.Temp(plan.MlpGate);
            float* u = upSlot is ArenaSlot us ? ctx.Work(us) + ((long)r0 * f) : ctx.Temp(plan.MlpUp);
            ctx.NormForward(hMid + ((long)r0 * c), w.MlpNorm, rows, xn, rstd);
            Linear.Forward(xn, rows, wg, g, op: ProfiledOp.MlpGemms, firstRow: firstRow + r0);
            Linear.Forward(xn, rows, wu, u, op: ProfiledOp.MlpGemms, firstRow: firstRow + r0);
            using (StepProfiler.Measure(ProfiledOp.SwiGlu))
            {
                SwiGlu.Forward(g, u, (long)rows * f, p);
            }

            Linear.Forward(p, rows, wd, hOut + ((long)r0 * c), accumulate: true, op: ProfiledOp.MlpGemms, firstRow: firstRow + r0);
        }
    }

    /// <summary>dRes enters as dL/dh_out and leaves as dL/dm (residual included); m is in <paramref name="hMid"/>.</summary>
    public void Backward(int l, LayerWorkspaceSlots ws, float* hMid, float* dRes, TensorView gradients)
        => Backward(l, hMid, ctx.Rows, dRes, gradients, ws.Gate, ws.Up, recompute: ws.Gate is null || ctx.Plan.Policy.Recomputes);

    /// <summary>Over <paramref name="rowsTotal"/> rows of h_mid: dRes enters as dL/dh_out and leaves as dL/dm; gate/up
    /// live in the saved slots when given, else in scratch, and are recomputed per chunk when asked.</summary>
    public void Backward(int l, float* hMid, int rowsTotal, float* dRes, TensorView gradients, ArenaSlot? gateSlot = null, ArenaSlot? upSlot = null, bool recompute = true, long firstRow = 0)
    {
        LayerSlots w = ctx.Layout.Layers[l];
        PassPlan plan = ctx.Plan;
        int c = ctx.Config.HiddenSize, f = ctx.Config.IntermediateSize, chunk = plan.MlpChunkRows;
        float* xn = ctx.Temp(plan.MlpNorm), rstd = ctx.Temp(plan.MlpRstd), p = ctx.Temp(plan.MlpProduct), dxn = ctx.Temp(plan.MlpDNorm);
        LinearWeights wg = ctx.Projection(w.Gate, c, f, gradients), wu = ctx.Projection(w.Up, c, f, gradients), wd = ctx.Projection(w.Down, f, c, gradients);
        for (int r0 = 0; r0 < rowsTotal; r0 += chunk)
        {
            int rows = Math.Min(chunk, rowsTotal - r0);
            float* g = gateSlot is ArenaSlot gs ? ctx.Work(gs) + ((long)r0 * f) : ctx.Temp(plan.MlpGate);
            float* u = upSlot is ArenaSlot us ? ctx.Work(us) + ((long)r0 * f) : ctx.Temp(plan.MlpUp);
            float* dOut = dRes + ((long)r0 * c);
            float* mChunk = hMid + ((long)r0 * c);
            ctx.NormForward(mChunk, w.MlpNorm, rows, xn, rstd);
            if (recompute)
            {
                Linear.Forward(xn, rows, wg, g, op: ProfiledOp.MlpGemms, firstRow: firstRow + r0);
                Linear.Forward(xn, rows, wu, u, op: ProfiledOp.MlpGemms, firstRow: firstRow + r0);
            }

            // forward: out = p·Wdᵀ with p = silu(g)·u  →  dWd += doutᵀ·p ; dp = dout·Wd (into p)
            using (StepProfiler.Measure(ProfiledOp.SwiGlu))
            {
                SwiGlu.Forward(g, u, (long)rows * f, p);
            }

            Linear.Backward(dOut, p, rows, wd, p, op: ProfiledOp.MlpGemms, firstRow: firstRow + r0);

            // g, u ← dg, du (in place)
            using (StepProfiler.Measure(ProfiledOp.SwiGlu))
            {
                SwiGlu.Backward(p, g, u, (long)rows * f, g, u);
            }

            // forward: g = xn·Wgᵀ, u = xn·Wuᵀ  →  dWg += dgᵀ·xn ; dWu += duᵀ·xn ; dxn = dg·Wg + du·Wu
            Linear.Backward(g, xn, rows, wg, dxn, op: ProfiledOp.MlpGemms, firstRow: firstRow + r0);
            Linear.Backward(u, xn, rows, wu, dxn, accumulateDx: true, op: ProfiledOp.MlpGemms, firstRow: firstRow + r0);

            // forward: xn = rmsnorm(m)  →  dm += rmsnorm_backward(dxn) (dm already holds the residual path's dout)
            ctx.NormBackward(dxn, mChunk, w.MlpNorm, rstd, rows, dOut, gradients);
        }
    }
}
