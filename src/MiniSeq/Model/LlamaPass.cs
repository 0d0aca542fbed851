// One forward (+ backward) pass of a Llama model over a block of token rows, following a PassPlan. Every op is an
// explicit Forward/Backward call in order; backward walks the layers in reverse and accumulates (+=) into the
// gradient arena, so micro-batches and mini-sequence chunks simply add up. The blocks (Model/Blocks) hold the math:
//
// Layer l, per row (B·T rows; C hidden, H·D query width, KvH·D key/value width, F MLP width):
//   AttentionBlock: xn1 = rmsnorm(h_l) ; q = rope(xn1·Wqᵀ) ; k = rope(xn1·Wkᵀ) ; v = xn1·Wvᵀ ;
//                   m = h_l + flash_attention(q, k, v)·Woᵀ
//   MlpBlock:       h_{l+1} = m + (silu(xn2·Wgᵀ) * (xn2·Wuᵀ))·Wdᵀ with xn2 = rmsnorm(m), in mini-sequence chunks
// LmHeadBlock: loss = Σ_valid CE(rmsnorm(h_L)·Wlmᵀ, y) / N_valid, per LM-head chunk, the logit gradient formed in
// forward (so no logits survive the chunk). Every projection is a Linear op. The RMSNorms are recomputed from their
// saved inputs (cheap, row-wise) instead of being saved.
// Mixed precision (plan Precision bf16): every pass first rounds the fp32 master weights into the plan's bf16 compute
// copies (so a pass always sees the weights as they are now: after a load, an optimizer step, a resume or a ZeRO
// all-gather), and every projection's GEMMs read the copy while its gradient accumulates in fp32. The activations saved
// for backward are stored as bf16: the layer inputs (the forward goes on with the fp32 values), q, k, v (rounded after
// RoPE; flash attention reads them as bf16), and without checkpointing every layer's attention output, h_mid (gate,
// up), widened into one fp32 workspace before the layer's backward.
using MiniSeq.Diagnostics;
using MiniSeq.Kernels;
using MiniSeq.Model.Blocks;
using MiniSeq.Tensors;

namespace MiniSeq.Model;

/// <summary>Runs forward/backward passes for one plan; owns the activation and scratch arenas of that plan.</summary>
public sealed unsafe class LlamaPass : IDisposable
{
    private readonly LlamaModel _model;
    private readonly Arena _activations;
    private readonly Arena _scratch;
    private readonly Arena _computeWeights;
    private readonly RopeTable _rope;
    private readonly PassContext _ctx;
    private readonly AttentionBlock _attention;
    private readonly MlpBlock _mlp;
    private readonly LmHeadBlock _head;
    private readonly LayerInputStore? _layerInputs;
    private readonly SequenceChunkedLayers? _chunked;
    private NativeBuffer? _documentStarts; // (B·T) ints, allocated on the first packed batch
    private NativeBuffer? _sequenceDocuments; // Ulysses: the whole rows' (B·P·T) document ids, then their starts
    private RopeTable? _documentRope; // Ulysses with packed rows: positions [0, Offset + T)
    private Action<PassProgress>? _progress;

    /// <summary>Allocates the plan's arenas (accounted to the model's ledger).</summary>
    /// <remarks><paramref name="sequenceParallel"/>: the group of a Ulysses plan (<see cref="PassPlan.SequenceParallel"/>,
    /// of the same size); every rank must run the same calls.</remarks>
    public LlamaPass(LlamaModel model, PassPlan plan, Distributed.ICommunicator? sequenceParallel = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(plan);
        _model = model;
        Plan = plan;
        if (plan.Precision == Precision.BFloat16 && model.Layout.Bf16Projections)
        {
            throw new ArgumentException("--precision bf16 needs fp32 master weights; this model's projections are stored as bf16 (a frozen LoRA base): load it in fp32.", nameof(model));
        }

        _activations = new Arena(plan.Activations, model.Ledger);
        _scratch = new Arena(plan.Scratch, model.Ledger);
        _computeWeights = new Arena(plan.ComputeWeights, model.Ledger);
        _rope = new RopeTable(model.Config.HeadDim, model.Config.RopeTheta, plan.RopeRows, model.Ledger, model.Config.RopeScaling);
        if (plan.SequenceChunkRows == 0 && plan.Positions.Offset > 0)
        {
            _rope.FillRows(plan.Positions.Offset, plan.SeqLen, null); // row t = position Offset + t (PassPlan.RopeRows)
        }
        if ((plan.SequenceParallel?.Ranks ?? 1) != (sequenceParallel?.Size ?? 1))
        {
            throw new ArgumentException($"The plan is for {plan.SequenceParallel?.Ranks ?? 1} sequence-parallel ranks; the communicator has {sequenceParallel?.Size ?? 1}.", nameof(sequenceParallel));
        }

        _ctx = new PassContext(model, plan, _activations, _scratch, _rope, _computeWeights)
        {
            SequenceParallel = plan.SequenceParallel is { } heads
                ? new Distributed.UlyssesAttention(sequenceParallel!, heads, plan.BatchSize, plan.SeqLen, model.Config.HeadDim)
                : null,
        };
        _attention = new AttentionBlock(_ctx);
        _mlp = new MlpBlock(_ctx);
        _head = new LmHeadBlock(_ctx);
        MemoryPolicy policy = plan.Policy;
        if (plan.LayerInputStoreLayers > 0)
        {
            _layerInputs = policy.OffloadDirectory is { } directory
                ? LayerInputStore.OnDisk(directory, plan.LayerInputStoreLayers, plan.Rows, model.Config.HiddenSize, policy.LayerInputDType, plan.SequenceChunkRows, model.Ledger)
                : LayerInputStore.InMemory(plan.LayerInputStoreLayers, plan.Rows, model.Config.HiddenSize, policy.LayerInputDType, model.Ledger);
        }

        if (plan.SequenceChunkRows > 0)
        {
            _chunked = new SequenceChunkedLayers(_ctx, _attention, _mlp, _head, _layerInputs);
        }
    }

    /// <summary>The plan this pass runs.</summary>
    public PassPlan Plan { get; }

    /// <summary>Seed of the LoRA dropout masks of the next <see cref="ForwardBackward"/> (null: no dropout); forward-only
    /// calls never drop.</summary>
    public ulong? DropoutSeed { get; set; }

    /// <summary>Which token of the global batch each row of the next <see cref="ForwardBackward"/> is, for the dropout
    /// masks (default: the pass row; see <see cref="DropoutTokens"/>).</summary>
    public DropoutTokens DropoutTokens { get; set; }

    private int Rows => _ctx.Rows;

    /// <summary>Called on the pass's thread after each layer forward, after the LM head and after each layer backward
    /// of a training pass (null: no reports).</summary>
    public Action<PassProgress>? Progress
    {
        get => _progress;
        set
        {
            _progress = value;
            if (_chunked is not null)
            {
                _chunked.Progress = value;
            }
        }
    }

    private int Layers => _model.Config.NumHiddenLayers;

    /// <summary>
    /// Forward and backward over the plan's rows. Accumulates gradients scaled by <paramref name="gradScale"/> (use
    /// 1/N_valid of the whole accumulation window) into <paramref name="gradients"/> (same layout as parameters) and
    /// returns the unscaled sum of token losses.
    /// </summary>
    /// <remarks><paramref name="documentIds"/> (B·T, optional): packed rows; attention stays inside each document and
    /// RoPE positions restart at each (see <see cref="DocumentLayout"/>). Empty: one document per row.</remarks>
    public double ForwardBackward(ReadOnlySpan<int> tokens, ReadOnlySpan<int> labels, float gradScale, TensorView gradients, ReadOnlySpan<int> documentIds = default)
    {
        if (!Plan.Training)
        {
            throw new InvalidOperationException("This pass was planned for evaluation; plan with training: true.");
        }

        CheckRows(tokens, labels);
        using var documents = new DocumentScope(this, documentIds);
        RefreshComputeWeights();
        _ctx.DropoutSeed = DropoutSeed;
        _ctx.DropoutTokens = DropoutTokens;
        try
        {
            return ForwardBackwardCore(tokens, labels, gradScale, gradients);
        }
        finally
        {
            _ctx.DropoutSeed = null;
        }
    }

    private double ForwardBackwardCore(ReadOnlySpan<int> tokens, ReadOnlySpan<int> labels, float gradScale, TensorView gradients)
    {
        fixed (int* tok = tokens, lab = labels)
        {
            if (_chunked is not null)
            {
                double chunkedLoss = _chunked.Forward(tok, lab, training: true, gradScale, gradients);
                _chunked.Backward(tok, gradients);
                using (StepProfiler.Measure(ProfiledOp.Other))
                {
                    Embedding.Backward(_ctx.Saved(Plan.Stream), tok, Rows, _model.Config.HiddenSize, _ctx.GradientOf(gradients, _model.Layout.Embedding));
                }

                return chunkedLoss;
            }

            float* hFinal = RunLayersForward(tok, training: true);
            float* dRes = _ctx.Temp(Plan.DResidual);
            _scratch[Plan.DResidual].Clear();
            double lossSum = _head.ForwardBackward(hFinal, lab, gradScale, dRes, gradients);
            if (Plan.Loss.LmHeadRecompute)
            {
                // CCE-style variant: the pass above was loss-only; recompute every chunk's logits for the gradient.
                _head.ForwardBackward(hFinal, lab, gradScale, dRes, gradients, recomputePass: true);
            }

            _progress?.Invoke(new PassProgress(PassPhase.LmHead, Layers, Layers));
            for (int l = Layers - 1; l >= 0; l--)
            {
                LayerBackward(l, dRes, gradients);
                _progress?.Invoke(new PassProgress(PassPhase.Backward, Layers - l, Layers));
            }

            // Embedding: dE[tokens[r]] += dh_0[r].
            using (StepProfiler.Measure(ProfiledOp.Other))
            {
                Embedding.Backward(dRes, tok, Rows, _model.Config.HiddenSize, _ctx.GradientOf(gradients, _model.Layout.Embedding));
            }

            return lossSum;
        }
    }

    /// <summary>Forward only; returns the sum of token losses over labels that are not -100.</summary>
    public double ForwardLoss(ReadOnlySpan<int> tokens, ReadOnlySpan<int> labels, ReadOnlySpan<int> documentIds = default)
    {
        CheckRows(tokens, labels);
        using var documents = new DocumentScope(this, documentIds);
        RefreshComputeWeights();
        fixed (int* tok = tokens, lab = labels)
        {
            float* h = RunLayersForward(tok, training: false);
            return _head.ForwardBackward(h, lab, 0f, null, default);
        }
    }

    /// <summary>Forward only; writes the logits (V floats each) of the given token rows into <paramref name="destination"/>.</summary>
    public void ForwardLogits(ReadOnlySpan<int> tokens, ReadOnlySpan<int> rows, Span<float> destination)
    {
        CheckRows(tokens, tokens);
        int v = _model.Config.VocabSize;
        if (destination.Length < (long)rows.Length * v)
        {
            throw new ArgumentException($"Destination holds {destination.Length} floats; {rows.Length} rows × {v} are needed.", nameof(destination));
        }

        RefreshComputeWeights();
        fixed (int* tok = tokens)
        fixed (float* dst = destination)
        {
            float* h = RunLayersForward(tok, training: false);
            _head.Logits(h, rows, dst);
        }
    }

    /// <summary>Mixed precision: rounds the fp32 master weights into their bf16 compute copies (round to nearest even);
    /// nothing in fp32. Cheap next to a pass (one read of the weights, one write of half their size).</summary>
    private void RefreshComputeWeights()
    {
        if (Plan.ComputeWeights.Slots.Count == 0)
        {
            return;
        }

        using var scope = StepProfiler.Measure(ProfiledOp.Other);
        int i = 0;
        foreach (ParameterInfo master in PassPlan.ComputeWeightSources(_model.Layout))
        {
            BFloat16.FromFloat(_model.Parameters[master.Slot].Pointer, _computeWeights.Bf16(Plan.ComputeWeights.Slots[i++]), master.ElementCount);
        }
    }

    private void CheckRows(ReadOnlySpan<int> tokens, ReadOnlySpan<int> labels)
    {
        if (tokens.Length != Rows || labels.Length != Rows)
        {
            throw new ArgumentException($"The pass was planned for {Plan.BatchSize}×{Plan.SeqLen} = {Rows} tokens; got {tokens.Length} tokens and {labels.Length} labels.");
        }
    }

    /// <summary>Points the blocks at the document starts of one packed batch for the duration of a call.</summary>
    private readonly ref struct DocumentScope
    {
        private readonly PassContext _ctx;
        private readonly RopeTable _rope;

        public DocumentScope(LlamaPass pass, ReadOnlySpan<int> documentIds)
        {
            _ctx = pass._ctx;
            _rope = pass._rope;
            _ctx.DocumentStarts = null;
            if (documentIds.IsEmpty)
            {
                return;
            }

            PassPlan plan = pass.Plan;
            if (documentIds.Length != pass.Rows)
            {
                throw new ArgumentException($"The pass was planned for {pass.Rows} tokens; got {documentIds.Length} document ids.", nameof(documentIds));
            }

            if (_ctx.SequenceParallel is { } ulysses)
            {
                SequenceStarts(pass, ulysses.Communicator, documentIds);
                return;
            }

            if (!DocumentLayout.HasBoundaries(documentIds, plan.BatchSize, plan.SeqLen))
            {
                return; // one document per row: the plain causal path, bit for bit
            }

            // (B·T) ints in a float buffer of the same byte size (the ledger counts it as an activation).
            pass._documentStarts ??= new NativeBuffer(pass.Rows, MemoryCategory.Activations, pass._model.Ledger, "document starts");
            int* starts = (int*)pass._documentStarts.Pointer;
            DocumentLayout.Starts(documentIds, plan.BatchSize, plan.SeqLen, new Span<int>(starts, pass.Rows));
            _ctx.DocumentStarts = starts;
        }

        public void Dispose()
        {
            _ctx.DocumentStarts = null;
            _ctx.SequenceDocumentStarts = null;
            _ctx.Rope = _rope;
            _ctx.RopeOffset = 0;
        }

        // Ulysses: attention runs over the whole rows, so every rank gathers the rows' document ids (in rank order they
        // are the rows' positions in order), takes their starts for attention, and keeps its own positions' starts (in
        // whole-row coordinates, which RoPE's position offset expects) for RoPE. The decision to mask is the whole
        // rows', so every rank takes the same path.
        private void SequenceStarts(LlamaPass pass, Distributed.ICommunicator communicator, ReadOnlySpan<int> documentIds)
        {
            PassPlan plan = pass.Plan;
            int ranks = communicator.Size, t = plan.SeqLen, whole = t * ranks, rows = plan.BatchSize;
            long wholeTokens = (long)pass.Rows * ranks;
            pass._sequenceDocuments ??= new NativeBuffer(2 * wholeTokens, MemoryCategory.Activations, pass._model.Ledger, "document ids and starts of the whole rows");
            var ids = new Span<int>(pass._sequenceDocuments.Pointer, (int)wholeTokens);
            var starts = new Span<int>(pass._sequenceDocuments.Pointer + wholeTokens, (int)wholeTokens);
            for (int b = 0; b < rows; b++)
            {
                communicator.AllGather(documentIds.Slice(b * t, t), ids.Slice(b * whole, whole));
            }

            if (!DocumentLayout.HasBoundaries(ids, rows, whole))
            {
                return; // one document per row: the plain causal path, bit for bit
            }

            DocumentLayout.Starts(ids, rows, whole, starts);
            pass._documentStarts ??= new NativeBuffer(pass.Rows, MemoryCategory.Activations, pass._model.Ledger, "document starts");
            var local = new Span<int>(pass._documentStarts.Pointer, pass.Rows);
            for (int b = 0; b < rows; b++)
            {
                starts.Slice((b * whole) + (communicator.Rank * t), t).CopyTo(local.Slice(b * t, t));
            }

            _ctx.DocumentStarts = (int*)pass._documentStarts.Pointer;
            _ctx.SequenceDocumentStarts = (int*)pass._sequenceDocuments.Pointer + wholeTokens;

            if (plan.SequenceChunkRows > 0)
            {
                return; // sequence-chunked layers refill their chunk-sized RoPE table per chunk from the local starts
            }

            // A document that began in an earlier shard restarts RoPE below this shard's first position.
            int offset = plan.Positions.Offset;
            LlamaConfig config = pass._model.Config;
            pass._documentRope ??= new RopeTable(config.HeadDim, config.RopeTheta, offset + t, pass._model.Ledger, config.RopeScaling);
            _ctx.Rope = pass._documentRope;
            _ctx.RopeOffset = offset;
        }
    }

    private float* RunLayersForward(int* tokens, bool training)
    {
        if (_chunked is not null)
        {
            _chunked.Forward(tokens, null, training: false, 0f, default);
            return _ctx.Saved(Plan.Stream);
        }

        float* h0 = _ctx.Saved(Plan.LayerInputs[0]);
        using (StepProfiler.Measure(ProfiledOp.Other))
        {
            Embedding.Forward(tokens, Rows, _ctx.Weight(_model.Layout.Embedding), _model.Config.HiddenSize, h0);
        }

        // Training keeps every layer input; evaluation (and training with stored layer inputs) updates one stream buffer
        // in place: the attention block reads h_l before it copies it into h_mid, the MLP writes h_{l+1} after.
        bool keepAll = training && _layerInputs is null;
        for (int l = 0; l < Layers; l++)
        {
            float* hIn = _ctx.Saved(Plan.LayerInputs[keepAll ? l : 0]);
            float* hOut = _ctx.Saved(Plan.LayerInputs[keepAll ? l + 1 : 0]);
            if (training && _layerInputs is not null)
            {
                // checkpoint: store ← h_l (bf16, rounded to nearest even); the forward goes on with the fp32 h_l.
                _layerInputs.Write(l, 0, Rows, hIn);
            }

            LayerWorkspaceSlots ws = Workspace(l);
            SavedBf16Slots? saved = training && Plan.SavedBf16.Length > 0 ? Plan.SavedBf16[l] : null;
            float* mid = ws.HMid is { } hMid ? _ctx.Work(hMid) : hOut; // m in h_mid when saved, else in h_out itself
            _attention.Forward(l, hIn, ws, mid, savedBf16: saved);
            _mlp.Forward(l, ws, mid, hOut);
            if (saved is not null)
            {
                // q, k, v were stored before attention (AttentionBlock); the rest is rounded now.
                using var scope = StepProfiler.Measure(ProfiledOp.Other);
                foreach ((ArenaSlot bf16, ArenaSlot fp32) in saved.LayerOutputs(ws))
                {
                    _ctx.StoreBf16(_ctx.Work(fp32), bf16);
                }
            }

            if (training)
            {
                _progress?.Invoke(new PassProgress(PassPhase.Forward, l + 1, Layers));
            }
        }

        return _ctx.Saved(Plan.LayerInputs[keepAll ? Layers : 0]);
    }

    private LayerWorkspaceSlots Workspace(int layer) => Plan.Workspaces[Plan.Workspaces.Length == 1 ? 0 : layer];

    /// <summary>dRes enters as dL/dh_{l+1} and leaves as dL/dh_l.</summary>
    private void LayerBackward(int l, float* dRes, TensorView gradients)
    {
        LayerWorkspaceSlots ws = Workspace(l);
        float* hIn, mid;
        LayerInputStore? storedInput = null;
        if (Plan.RecomputesFromStore)
        {
            // Checkpointed bf16 layer inputs: h_l is widened into the stream buffer (free once the LM head has run),
            // where the recompute turns it into m in place, then dL/da goes over it; the attention backward reads h_l
            // from the store again, one projection chunk at a time.
            hIn = null;
            storedInput = _layerInputs;
            mid = _ctx.Saved(Plan.LayerInputs[0]);
            storedInput!.Read(l, 0, Rows, mid);
        }
        else if (_layerInputs is not null)
        {
            // Saved bf16 layer inputs (no recompute): widen h_l into the stream buffer; m is the workspace's h_mid.
            hIn = _ctx.Saved(Plan.LayerInputs[0]);
            _layerInputs.Read(l, 0, Rows, hIn);
            mid = _ctx.Work(ws.HMid!.Value);
        }
        else
        {
            // Kept layer inputs: m is h_mid when saved, else rebuilt in this layer's output buffer (layer l + 1's
            // input, dead once that layer's backward has run).
            hIn = _ctx.Saved(Plan.LayerInputs[l]);
            mid = ws.HMid is { } hMid ? _ctx.Work(hMid) : _ctx.Saved(Plan.LayerInputs[l + 1]);
        }

        if (Plan.SavedBf16.Length > 0)
        {
            // Mixed precision without recomputation: widen this layer's saved bf16 activations into the fp32 workspace
            // (q, k, v only under Ulysses: one process's flash attention reads the saved bf16 ones).
            using var scope = StepProfiler.Measure(ProfiledOp.Other);
            SavedBf16Slots saved = Plan.SavedBf16[l];
            IEnumerable<(ArenaSlot Bf16, ArenaSlot Fp32)> widened = Plan.AttentionInputsBf16 ? saved.LayerOutputs(ws) : saved.AttentionInputs(ws).Concat(saved.LayerOutputs(ws));
            foreach ((ArenaSlot bf16, ArenaSlot fp32) in widened)
            {
                _ctx.LoadBf16(bf16, _ctx.Work(fp32));
            }
        }

        if (Plan.Policy.Recomputes)
        {
            // Recompute the attention half from the checkpointed layer input (without flash attention when this layer's
            // output and lse were kept); the MLP half is recomputed per chunk below.
            _attention.Forward(l, hIn == null ? mid : hIn, ws, mid, attentionKept: Plan.KeepsAttention);
        }

        _mlp.Backward(l, ws, mid, dRes, gradients);
        _attention.Backward(l, hIn, ws, mid, dRes, gradients, storedInput);
    }

    /// <summary>Frees the arenas.</summary>
    public void Dispose()
    {
        _activations.Dispose();
        _scratch.Dispose();
        _computeWeights.Dispose();
        _rope.Dispose();
        _documentStarts?.Dispose();
        _sequenceDocuments?.Dispose();
        _documentRope?.Dispose();
        _layerInputs?.Dispose();
    }
}
