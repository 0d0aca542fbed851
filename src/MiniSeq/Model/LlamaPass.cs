// One forward (+ backward) pass of a Llama model over a block of token rows, following a StepPlan. Every op is an
// explicit Forward/Backward kernel call in order; backward walks the layers in reverse and accumulates (+=) into the
// gradient arena, so micro-batches and mini-sequence chunks simply add up.
//
// Layer l, per row (B·T rows; C hidden, H·D query width, KvH·D key/value width, F MLP width):
//   xn1 = rmsnorm(h_l) ; q = rope(xn1·Wqᵀ) ; k = rope(xn1·Wkᵀ) ; v = xn1·Wvᵀ ; a = flash_attention(q, k, v)
//   m = h_l + a·Woᵀ ; xn2 = rmsnorm(m) ; h_{l+1} = m + (silu(xn2·Wgᵀ) * (xn2·Wuᵀ))·Wdᵀ
// Head: loss = Σ_valid CE(rmsnorm(h_L)·Wlmᵀ, y) / N_valid, computed per LM-head chunk with the chunk's logit
// gradient formed in forward (so no logits survive the chunk). The RMSNorms are recomputed from their saved inputs
// (cheap, row-wise) instead of being saved.
using MiniSeq.Diagnostics;
using MiniSeq.Kernels;
using MiniSeq.Tensors;

namespace MiniSeq.Model;

/// <summary>Runs forward/backward passes for one plan; owns the activation and scratch arenas of that plan.</summary>
public sealed unsafe class LlamaPass : IDisposable
{
    private readonly LlamaModel _model;
    private readonly Arena _activations;
    private readonly Arena _scratch;
    private readonly RopeTable _rope;
    private readonly LlamaConfig _c;

    /// <summary>Allocates the plan's arenas (accounted to the model's ledger).</summary>
    public LlamaPass(LlamaModel model, StepPlan plan)
    {
        _model = model;
        _c = model.Config;
        Plan = plan;
        _activations = new Arena(plan.Activations, model.Ledger);
        _scratch = new Arena(plan.Scratch, model.Ledger);
        _rope = new RopeTable(_c.HeadDim, _c.RopeTheta, plan.SeqLen, model.Ledger);
    }

    /// <summary>The plan this pass runs.</summary>
    public StepPlan Plan { get; }

    private int Rows => (int)Plan.Rows;

    private float* P(ArenaSlot slot) => _model.Parameters[slot].Pointer;

    private float* A(ArenaSlot slot) => _activations[slot].Pointer;

    private float* S(ArenaSlot slot) => _scratch[slot].Pointer;

    /// <summary>
    /// Forward and backward over the plan's rows. Accumulates gradients scaled by <paramref name="gradScale"/> (use
    /// 1/N_valid of the whole accumulation window) into <paramref name="gradients"/> (same layout as parameters) and
    /// returns the unscaled sum of token losses.
    /// </summary>
    public double ForwardBackward(ReadOnlySpan<int> tokens, ReadOnlySpan<int> labels, float gradScale, TensorView gradients)
    {
        if (!Plan.Training)
        {
            throw new InvalidOperationException("This pass was planned for evaluation; plan with training: true.");
        }

        CheckRows(tokens, labels);
        fixed (int* tok = tokens, lab = labels)
        {
            RunLayersForward(tok, training: true);
            float* dRes = S(Plan.DResidual);
            _scratch[Plan.DResidual].Clear();
            float* hFinal = A(Plan.LayerInputs[_c.NumHiddenLayers]);
            double lossSum = HeadForwardBackward(hFinal, lab, gradScale, dRes, gradients);
            if (Plan.Policy.LmHeadRecompute)
            {
                // CCE-style variant: the pass above was loss-only; recompute every chunk's logits for the gradient.
                HeadForwardBackward(hFinal, lab, gradScale, dRes, gradients, recomputePass: true);
            }

            for (int l = _c.NumHiddenLayers - 1; l >= 0; l--)
            {
                LayerBackward(l, dRes, gradients);
            }

            // Embedding: dE[tokens[r]] += dh_0[r].
            using (StepProfiler.Measure(ProfiledOp.Other))
            {
                Embedding.Backward(dRes, tok, Rows, _c.HiddenSize, G(gradients, _model.Layout.Embedding));
            }

            return lossSum;
        }
    }

    /// <summary>Forward only; returns the sum of token losses over labels that are not -100 (per-row losses optional).</summary>
    public double ForwardLoss(ReadOnlySpan<int> tokens, ReadOnlySpan<int> labels)
    {
        CheckRows(tokens, labels);
        fixed (int* tok = tokens, lab = labels)
        {
            float* h = RunLayersForward(tok, training: false);
            return HeadForwardBackward(h, lab, 0f, null, default);
        }
    }

    /// <summary>Forward only; writes the logits (V floats each) of the given token rows into <paramref name="destination"/>.</summary>
    public void ForwardLogits(ReadOnlySpan<int> tokens, ReadOnlySpan<int> rows, Span<float> destination)
    {
        CheckRows(tokens, tokens);
        int c = _c.HiddenSize, v = _c.VocabSize;
        if (destination.Length < rows.Length * v)
        {
            throw new ArgumentException($"Destination holds {destination.Length} floats; {rows.Length} rows × {v} are needed.", nameof(destination));
        }

        fixed (int* tok = tokens)
        fixed (float* dst = destination)
        {
            float* h = RunLayersForward(tok, training: false);
            float* xn = S(Plan.HeadNorm), rstd = S(Plan.HeadRstd);
            for (int i = 0; i < rows.Length; i++)
            {
                NormForward(h + ((long)rows[i] * c), P(_model.Layout.FinalNorm), 1, c, (float)_c.RmsNormEps, xn, rstd);
                Gemm(ProfiledOp.LmHeadGemms, false, true, 1, v, c, xn, c, P(_model.Layout.LmHead), c, 0f, dst + ((long)i * v), v);
            }
        }
    }

    private void CheckRows(ReadOnlySpan<int> tokens, ReadOnlySpan<int> labels)
    {
        if (tokens.Length != Rows || labels.Length != Rows)
        {
            throw new ArgumentException($"The pass was planned for {Plan.BatchSize}×{Plan.SeqLen} = {Rows} tokens; got {tokens.Length} tokens and {labels.Length} labels.");
        }
    }

    private static float* G(TensorView gradients, ArenaSlot slot) => gradients.Pointer + slot.Offset;

    // ------------------------------------------------------------------ forward

    private float* RunLayersForward(int* tokens, bool training)
    {
        int c = _c.HiddenSize;
        float* h0 = A(Plan.LayerInputs[0]);
        using (StepProfiler.Measure(ProfiledOp.Other))
        {
            Embedding.Forward(tokens, Rows, P(_model.Layout.Embedding), c, h0);
        }

        for (int l = 0; l < _c.NumHiddenLayers; l++)
        {
            float* hIn = training ? A(Plan.LayerInputs[l]) : A(Plan.LayerInputs[l % 2]);
            float* hOut = training ? A(Plan.LayerInputs[l + 1]) : A(Plan.LayerInputs[(l + 1) % 2]);
            LayerWorkspaceSlots ws = Workspace(l);
            AttentionForward(l, hIn, ws);
            MlpForward(l, ws, hOut);
        }

        return training ? A(Plan.LayerInputs[_c.NumHiddenLayers]) : A(Plan.LayerInputs[_c.NumHiddenLayers % 2]);
    }

    private LayerWorkspaceSlots Workspace(int layer) => Plan.Workspaces[Plan.Workspaces.Length == 1 ? 0 : layer];

    /// <summary>q, k, v, attention output, lse and h_mid of layer l from its input hIn.</summary>
    private void AttentionForward(int l, float* hIn, LayerWorkspaceSlots ws)
    {
        LayerSlots w = _model.Layout.Layers[l];
        int c = _c.HiddenSize, hd = _c.QueryDim, kvd = _c.KeyValueDim;
        float* q = A(ws.Query), k = A(ws.Key), v = A(ws.Value), attn = A(ws.AttnOut), hMid = A(ws.HMid);
        float* xn = S(Plan.ProjNorm), rstd = S(Plan.ProjRstd);
        for (int r0 = 0; r0 < Rows; r0 += Plan.ProjectionRows)
        {
            int rows = Math.Min(Plan.ProjectionRows, Rows - r0);
            // xn1 = rmsnorm(h) ; q = xn1·Wqᵀ ; k = xn1·Wkᵀ ; v = xn1·Wvᵀ
            NormForward(hIn + ((long)r0 * c), P(w.AttentionNorm), rows, c, (float)_c.RmsNormEps, xn, rstd);
            Gemm(ProfiledOp.AttentionProjections, false, true, rows, hd, c, xn, c, P(w.Query), c, 0f, q + ((long)r0 * hd), hd);
            Gemm(ProfiledOp.AttentionProjections, false, true, rows, kvd, c, xn, c, P(w.Key), c, 0f, k + ((long)r0 * kvd), kvd);
            Gemm(ProfiledOp.AttentionProjections, false, true, rows, kvd, c, xn, c, P(w.Value), c, 0f, v + ((long)r0 * kvd), kvd);
        }

        using (StepProfiler.Measure(ProfiledOp.Rope))
        {
            Rope.Forward(q, Rows, Plan.SeqLen, _c.NumAttentionHeads, _rope, 0);
        }

        using (StepProfiler.Measure(ProfiledOp.Rope))
        {
            Rope.Forward(k, Rows, Plan.SeqLen, _c.NumKeyValueHeads, _rope, 0);
        }

        using (StepProfiler.Measure(ProfiledOp.AttentionForward))
        {
            FlashAttention.Forward(q, k, v, Plan.BatchSize, Plan.SeqLen, _c.NumAttentionHeads, _c.NumKeyValueHeads, _c.HeadDim, attn, A(ws.Lse));
        }

        // h_mid = h + a·Woᵀ
        new TensorView(hIn, (long)Rows * c).CopyTo(new TensorView(hMid, (long)Rows * c));
        Gemm(ProfiledOp.AttentionProjections, false, true, Rows, c, hd, attn, hd, P(w.Output), hd, 1f, hMid, c);
    }

    /// <summary>h_out = h_mid + MLP(rmsnorm(h_mid)), chunk by chunk; saves gate/up only when the MLP is not chunked.</summary>
    private void MlpForward(int l, LayerWorkspaceSlots ws, float* hOut)
    {
        LayerSlots w = _model.Layout.Layers[l];
        int c = _c.HiddenSize, f = _c.IntermediateSize, chunk = Plan.MlpChunkRows;
        float* hMid = A(ws.HMid), xn = S(Plan.MlpNorm), rstd = S(Plan.MlpRstd), p = S(Plan.MlpProduct);
        new TensorView(hMid, (long)Rows * c).CopyTo(new TensorView(hOut, (long)Rows * c));
        for (int r0 = 0; r0 < Rows; r0 += chunk)
        {
            int rows = Math.Min(chunk, Rows - r0);
            float* g = ws.Gate is ArenaSlot gs ? A(gs) + ((long)r0 * f) : S(Plan.MlpGate);
            float* u = ws.Up is ArenaSlot us ? A(us) + ((long)r0 * f) : S(Plan.MlpUp);
            NormForward(hMid + ((long)r0 * c), P(w.MlpNorm), rows, c, (float)_c.RmsNormEps, xn, rstd);
            Gemm(ProfiledOp.MlpGemms, false, true, rows, f, c, xn, c, P(w.Gate), c, 0f, g, f);
            Gemm(ProfiledOp.MlpGemms, false, true, rows, f, c, xn, c, P(w.Up), c, 0f, u, f);
            using (StepProfiler.Measure(ProfiledOp.SwiGlu))
            {
                SwiGlu.Forward(g, u, (long)rows * f, p);
            }

            Gemm(ProfiledOp.MlpGemms, false, true, rows, c, f, p, f, P(w.Down), f, 1f, hOut + ((long)r0 * c), c);
        }
    }

    // ------------------------------------------------------------------ LM head + loss

    /// <summary>
    /// Final norm, LM head and cross-entropy per chunk of rows. When <paramref name="dRes"/> is not null the chunk's
    /// logit gradient (scaled by gradScale) is formed in place and pushed through the LM head and the final norm at
    /// once: dW_lm += dzᵀ·xn (exactly once per chunk), dh_L += rmsnorm_backward(dz·W_lm). Chunks whose labels are all
    /// -100 contribute nothing and are skipped.
    /// </summary>
    private double HeadForwardBackward(float* h, int* labels, float gradScale, float* dRes, TensorView gradients, bool recomputePass = false)
    {
        int c = _c.HiddenSize, v = _c.VocabSize, chunk = Plan.LmHeadChunkRows;
        bool backward = dRes != null && (recomputePass || !Plan.Policy.LmHeadRecompute);
        float* xn = S(Plan.HeadNorm), rstd = S(Plan.HeadRstd), logits = S(Plan.HeadLogits), rowLoss = S(Plan.HeadRowLoss);
        float* wHead = P(_model.Layout.LmHead), wNorm = P(_model.Layout.FinalNorm);
        double lossSum = 0;
        for (int r0 = 0; r0 < Rows; r0 += chunk)
        {
            int rows = Math.Min(chunk, Rows - r0);
            if (!HasValidLabel(labels + r0, rows))
            {
                continue;
            }

            float* hChunk = h + ((long)r0 * c);
            NormForward(hChunk, wNorm, rows, c, (float)_c.RmsNormEps, xn, rstd);
            Gemm(ProfiledOp.LmHeadGemms, false, true, rows, v, c, xn, c, wHead, c, 0f, logits, v);
            using (StepProfiler.Measure(ProfiledOp.CrossEntropy))
            {
                lossSum += CrossEntropy.ForwardBackward(logits, labels + r0, rows, v, Plan.Policy.Loss, backward ? gradScale : 0f, rowLoss);
            }

            if (backward)
            {
                float* dxn = S(Plan.HeadDNorm);
                Gemm(ProfiledOp.LmHeadGemms, true, false, v, c, rows, logits, v, xn, c, 1f, G(gradients, _model.Layout.LmHead), c);
                Gemm(ProfiledOp.LmHeadGemms, false, false, rows, c, v, logits, v, wHead, c, 0f, dxn, c);
                NormBackward(dxn, hChunk, wNorm, rstd, rows, c, dRes + ((long)r0 * c), G(gradients, _model.Layout.FinalNorm));
            }
        }

        return lossSum;
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

    // ------------------------------------------------------------------ backward

    /// <summary>dRes enters as dL/dh_{l+1} and leaves as dL/dh_l.</summary>
    private void LayerBackward(int l, float* dRes, TensorView gradients)
    {
        LayerWorkspaceSlots ws = Workspace(l);
        float* hIn = A(Plan.LayerInputs[l]);
        if (Plan.Policy.Checkpoint)
        {
            // Recompute the attention half from the checkpointed layer input; the MLP half is recomputed per chunk below.
            AttentionForward(l, hIn, ws);
        }

        MlpBackward(l, ws, dRes, gradients);
        AttentionBackward(l, hIn, ws, dRes, gradients);
    }

    private void MlpBackward(int l, LayerWorkspaceSlots ws, float* dRes, TensorView gradients)
    {
        LayerSlots w = _model.Layout.Layers[l];
        int c = _c.HiddenSize, f = _c.IntermediateSize, chunk = Plan.MlpChunkRows;
        bool recompute = ws.Gate is null || Plan.Policy.Checkpoint;
        float* hMid = A(ws.HMid), xn = S(Plan.MlpNorm), rstd = S(Plan.MlpRstd), p = S(Plan.MlpProduct), dxn = S(Plan.MlpDNorm);
        for (int r0 = 0; r0 < Rows; r0 += chunk)
        {
            int rows = Math.Min(chunk, Rows - r0);
            float* g = ws.Gate is ArenaSlot gs ? A(gs) + ((long)r0 * f) : S(Plan.MlpGate);
            float* u = ws.Up is ArenaSlot us ? A(us) + ((long)r0 * f) : S(Plan.MlpUp);
            float* dOut = dRes + ((long)r0 * c);
            float* mChunk = hMid + ((long)r0 * c);
            NormForward(mChunk, P(w.MlpNorm), rows, c, (float)_c.RmsNormEps, xn, rstd);
            if (recompute)
            {
                Gemm(ProfiledOp.MlpGemms, false, true, rows, f, c, xn, c, P(w.Gate), c, 0f, g, f);
                Gemm(ProfiledOp.MlpGemms, false, true, rows, f, c, xn, c, P(w.Up), c, 0f, u, f);
            }

            // forward: out = p·Wdᵀ with p = silu(g)·u  →  dWd += doutᵀ·p ; dp = dout·Wd
            using (StepProfiler.Measure(ProfiledOp.SwiGlu))
            {
                SwiGlu.Forward(g, u, (long)rows * f, p);
            }

            Gemm(ProfiledOp.MlpGemms, true, false, c, f, rows, dOut, c, p, f, 1f, G(gradients, w.Down), f);
            Gemm(ProfiledOp.MlpGemms, false, false, rows, f, c, dOut, c, P(w.Down), f, 0f, p, f);
            // g, u ← dg, du (in place)
            using (StepProfiler.Measure(ProfiledOp.SwiGlu))
            {
                SwiGlu.Backward(p, g, u, (long)rows * f, g, u);
            }

            // forward: g = xn·Wgᵀ, u = xn·Wuᵀ  →  dWg += dgᵀ·xn ; dWu += duᵀ·xn ; dxn = dg·Wg + du·Wu
            Gemm(ProfiledOp.MlpGemms, true, false, f, c, rows, g, f, xn, c, 1f, G(gradients, w.Gate), c);
            Gemm(ProfiledOp.MlpGemms, true, false, f, c, rows, u, f, xn, c, 1f, G(gradients, w.Up), c);
            Gemm(ProfiledOp.MlpGemms, false, false, rows, c, f, g, f, P(w.Gate), c, 0f, dxn, c);
            Gemm(ProfiledOp.MlpGemms, false, false, rows, c, f, u, f, P(w.Up), c, 1f, dxn, c);
            // forward: xn = rmsnorm(m)  →  dm += rmsnorm_backward(dxn) (dm already holds the residual path's dout)
            NormBackward(dxn, mChunk, P(w.MlpNorm), rstd, rows, c, dOut, G(gradients, w.MlpNorm));
        }
    }

    private void AttentionBackward(int l, float* hIn, LayerWorkspaceSlots ws, float* dRes, TensorView gradients)
    {
        LayerSlots w = _model.Layout.Layers[l];
        int c = _c.HiddenSize, hd = _c.QueryDim, kvd = _c.KeyValueDim;
        float* q = A(ws.Query), k = A(ws.Key), v = A(ws.Value), attn = A(ws.AttnOut);
        float* dAttn = S(Plan.DAttnOut), dq = S(Plan.DQuery), dk = S(Plan.DKey), dv = S(Plan.DValue);

        // forward: m = h + a·Woᵀ  →  dWo += dmᵀ·a ; da = dm·Wo
        Gemm(ProfiledOp.AttentionProjections, true, false, c, hd, Rows, dRes, c, attn, hd, 1f, G(gradients, w.Output), hd);
        Gemm(ProfiledOp.AttentionProjections, false, false, Rows, hd, c, dRes, c, P(w.Output), hd, 0f, dAttn, hd);

        // forward: a = flash_attention(q, k, v)
        _scratch[Plan.DQuery].Clear();
        _scratch[Plan.DKey].Clear();
        _scratch[Plan.DValue].Clear();
        using (StepProfiler.Measure(ProfiledOp.AttentionBackward))
        {
            FlashAttention.Backward(dAttn, q, k, v, attn, A(ws.Lse), Plan.BatchSize, Plan.SeqLen, _c.NumAttentionHeads, _c.NumKeyValueHeads, _c.HeadDim, dq, dk, dv);
        }


        // forward: q = rope(q'), k = rope(k')
        using (StepProfiler.Measure(ProfiledOp.Rope))
        {
            Rope.Backward(dq, Rows, Plan.SeqLen, _c.NumAttentionHeads, _rope, 0);
        }

        using (StepProfiler.Measure(ProfiledOp.Rope))
        {
            Rope.Backward(dk, Rows, Plan.SeqLen, _c.NumKeyValueHeads, _rope, 0);
        }


        // forward: q' = xn·Wqᵀ, k' = xn·Wkᵀ, v = xn·Wvᵀ with xn = rmsnorm(h), per projection chunk
        float* xn = S(Plan.BackProjNorm), rstd = S(Plan.BackProjRstd), dxn = S(Plan.BackProjDNorm);
        for (int r0 = 0; r0 < Rows; r0 += Plan.ProjectionRows)
        {
            int rows = Math.Min(Plan.ProjectionRows, Rows - r0);
            float* hChunk = hIn + ((long)r0 * c);
            float* dqc = dq + ((long)r0 * hd), dkc = dk + ((long)r0 * kvd), dvc = dv + ((long)r0 * kvd);
            NormForward(hChunk, P(w.AttentionNorm), rows, c, (float)_c.RmsNormEps, xn, rstd);
            Gemm(ProfiledOp.AttentionProjections, true, false, hd, c, rows, dqc, hd, xn, c, 1f, G(gradients, w.Query), c);
            Gemm(ProfiledOp.AttentionProjections, true, false, kvd, c, rows, dkc, kvd, xn, c, 1f, G(gradients, w.Key), c);
            Gemm(ProfiledOp.AttentionProjections, true, false, kvd, c, rows, dvc, kvd, xn, c, 1f, G(gradients, w.Value), c);
            Gemm(ProfiledOp.AttentionProjections, false, false, rows, c, hd, dqc, hd, P(w.Query), c, 0f, dxn, c);
            Gemm(ProfiledOp.AttentionProjections, false, false, rows, c, kvd, dkc, kvd, P(w.Key), c, 1f, dxn, c);
            Gemm(ProfiledOp.AttentionProjections, false, false, rows, c, kvd, dvc, kvd, P(w.Value), c, 1f, dxn, c);
            // forward: xn = rmsnorm(h)  →  dh += rmsnorm_backward(dxn) (dh already holds dm through the residual)
            NormBackward(dxn, hChunk, P(w.AttentionNorm), rstd, rows, c, dRes + ((long)r0 * c), G(gradients, w.AttentionNorm));
        }
    }

    private static void Gemm(ProfiledOp op, bool transA, bool transB, int m, int n, int k, float* a, int lda, float* b, int ldb, float beta, float* c, int ldc)
    {
        using var scope = StepProfiler.Measure(op);
        MatMul.Gemm(transA, transB, m, n, k, 1f, a, lda, b, ldb, beta, c, ldc);
    }

    private static void NormForward(float* x, float* weight, int rows, int dim, float eps, float* output, float* rstd)
    {
        using var scope = StepProfiler.Measure(ProfiledOp.Norms);
        RmsNorm.Forward(x, weight, rows, dim, eps, output, rstd);
    }

    private static void NormBackward(float* dOutput, float* x, float* weight, float* rstd, int rows, int dim, float* dx, float* dWeight)
    {
        using var scope = StepProfiler.Measure(ProfiledOp.Norms);
        RmsNorm.Backward(dOutput, x, weight, rstd, rows, dim, dx, dWeight);
    }

    /// <summary>Frees the arenas.</summary>
    public void Dispose()
    {
        _activations.Dispose();
        _scratch.Dispose();
        _rope.Dispose();
    }
}
