// Final norm, LM head and cross-entropy over chunks of rows (the mini-sequence LM head). With a gradient, each chunk's
// logit gradient is formed in place as soon as its loss is known (scaled by 1/N_valid of the whole batch) and pushed
// through the LM head and the final norm at once — dW_lm += dzᵀ·xn exactly once per chunk — so no logits survive the
// chunk. Chunks whose labels are all -100 contribute nothing and are skipped.
using MiniSeq.Diagnostics;
using MiniSeq.Kernels;
using MiniSeq.Tensors;

namespace MiniSeq.Model.Blocks;

/// <summary>Forward (+ backward) of the final norm, LM head and loss.</summary>
internal sealed unsafe class LmHeadBlock(PassContext ctx)
{
    /// <summary>
    /// Sum of token losses over the chunks. When <paramref name="dRes"/> is not null (and this is the gradient pass
    /// of the policy), dL/dh_L is added into it and the head's gradients into <paramref name="gradients"/>.
    /// </summary>
    public double ForwardBackward(float* h, int* labels, float gradScale, float* dRes, TensorView gradients, bool recomputePass = false)
        => ForwardBackward(h, labels, ctx.Rows, gradScale, dRes, gradients, recomputePass);

    /// <summary><see cref="ForwardBackward(float*, int*, float, float*, TensorView, bool)"/> over the first
    /// <paramref name="rowsTotal"/> rows at h, labels and dRes (pass rows <paramref name="firstRow"/>…).</summary>
    public double ForwardBackward(float* h, int* labels, int rowsTotal, float gradScale, float* dRes, TensorView gradients, bool recomputePass = false, long firstRow = 0)
    {
        PassPlan plan = ctx.Plan;
        int c = ctx.Config.HiddenSize, v = ctx.Config.VocabSize, chunk = plan.LmHeadChunkRows;
        bool backward = dRes != null && (recomputePass || !plan.Loss.LmHeadRecompute);
        float* xn = ctx.Temp(plan.HeadNorm), rstd = ctx.Temp(plan.HeadRstd), logits = ctx.Temp(plan.HeadLogits), rowLoss = ctx.Temp(plan.HeadRowLoss);
        LinearWeights head = ctx.Projection(ctx.Layout.LmHead, c, v, backward ? gradients : default);
        double lossSum = 0;
        for (int r0 = 0; r0 < rowsTotal; r0 += chunk)
        {
            int rows = Math.Min(chunk, rowsTotal - r0);
            if (!HasValidLabel(labels + r0, rows))
            {
                continue;
            }

            float* hChunk = h + ((long)r0 * c);
            ctx.NormForward(hChunk, ctx.Layout.FinalNorm, rows, xn, rstd);
            Linear.Forward(xn, rows, head, logits, op: ProfiledOp.LmHeadGemms, firstRow: firstRow + r0);
            using (StepProfiler.Measure(ProfiledOp.CrossEntropy))
            {
                lossSum += CrossEntropy.ForwardBackward(logits, labels + r0, rows, v, plan.Loss.CrossEntropy, backward ? gradScale : 0f, rowLoss);
            }

            if (backward)
            {
                // dxn overwrites xn: Linear.Backward reads xn (dW, a LoRA adapter's input) before it writes dx.
                float* dxn = xn;
                Linear.Backward(logits, xn, rows, head, dxn, op: ProfiledOp.LmHeadGemms, firstRow: firstRow + r0);
                ctx.NormBackward(dxn, hChunk, ctx.Layout.FinalNorm, rstd, rows, dRes + ((long)r0 * c), gradients);
            }
        }

        return lossSum;
    }

    /// <summary>Logits (V floats each) of single rows of the final hidden states.</summary>
    public void Logits(float* h, ReadOnlySpan<int> rows, float* destination)
    {
        int c = ctx.Config.HiddenSize, v = ctx.Config.VocabSize;
        float* xn = ctx.Temp(ctx.Plan.HeadNorm), rstd = ctx.Temp(ctx.Plan.HeadRstd);
        LinearWeights head = ctx.Projection(ctx.Layout.LmHead, c, v, default);
        for (int i = 0; i < rows.Length; i++)
        {
            ctx.NormForward(h + ((long)rows[i] * c), ctx.Layout.FinalNorm, 1, xn, rstd);
            Linear.Forward(xn, 1, head, destination + ((long)i * v), op: ProfiledOp.LmHeadGemms, firstRow: rows[i]);
        }
    }

    private static bool HasValidLabel(int* labels, int rows)
    {
        for (int i = 0; i < rows; i++)
        {
            if (labels[i] != CrossEntropy.IgnoreIndex)
            {
                return true;
            }
        }

        return false;
    }
}
