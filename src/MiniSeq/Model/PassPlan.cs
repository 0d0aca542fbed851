// The memory plan of one forward/backward pass: every activation saved for backward and every scratch buffer,
// with sizes computed from (config, batch rows, sequence length, policy) before anything is allocated. The trainer
// allocates exactly these arenas and the planner predicts from them, so predicted = allocated by construction.
//
// Activations arena:
//   LayerInputs[0..L]  (N, C) each: the residual stream entering each layer (LayerInputs[L] = final hidden state);
//                      one buffer, updated in place, when the inputs are not kept (evaluation, bf16 store).
//   Workspaces[w]      one per layer without checkpointing; with checkpointing that keeps attention (policy
//                      KeepAttention) one per layer whose AttnOut and Lse are its own and the rest shared:
//                      Q (N, H·D) post-RoPE, K, V (N, KvH·D), AttnOut (N, H·D), Lse (B, H, T), HMid (N, C) only
//                      without recomputation (else m = h + attention lives in the layer's output buffer, forward
//                      and recompute alike), and Gate, Up (N, F) only when the MLP is not chunked.
// Scratch arena (phases that never overlap share memory):
//   DResidual (N, C) — the one residual-gradient buffer, alive from the LM head down to the embedding.
//   With plain checkpointing (and for eval) the one workspace shared by every layer (WorkspaceInScratch): dead from the
//   last layer's forward to the first layer's recompute, so the LM head chunk is laid over it (and Ulysses' attention
//   forward over its gate, up: the workspace's last slots, written after attention).
//   union { forward layer | LM head chunk | MLP backward chunk | attention backward (+ partial dk/dv when the
//   backward splits the query blocks of an odd number of (batch, kv head) pairs) }. No slot for dq: the attention
//   backward takes rowsum(dO∘O) first (B·H·T floats) and writes dq over the workspace's AttnOut; nor for dL/da,
//   written over the buffer that held m (dead after the MLP backward) when H·D ≤ C; nor for the LM head's dxn,
//   written over its xn.
//   Qwen3 adds the per-head q/k norm's rstd to the forward layer and (q or k) before the norm, its rstd and its
//   gradient, per projection chunk, to the attention backward.
//   Ulysses (sequence parallel over P ranks) adds one chunk's all-to-all exchange buffer before the union, a phase
//   of its own for the attention forward's head-layout q (then output), k, v (B·P·T rows, H/P and KvH_local heads), and
//   head-layout k, v (later the local dk, dv) and the rowsums in both layouts in place of dk, dv and the rowsum in the
//   attention backward; the backward's head-layout q, dOutput, dq, dk, dv reuse the dead a, q, d_attn_out, k, v (dk,
//   dv in scratch only when kv heads are replicated, P > KvH), and the local dq a's buffer.
// Sequence-chunked layers (policy SequenceChunk = S) plan differently, see PlanChunked: the residual stream, K and V,
// dK and dV for the whole sequence; every other tensor for S positions of one sequence; layer inputs in a store.
// Under Ulysses, K, V, dK, dV are in head layout over the whole rows (this rank's kv heads), and one chunk's q and
// attention output have head-layout twins (HeadQuery, HeadAttnOut: P blocks of S rows).
// Precision bf16 in one process keeps q, k, v only as bf16 (AttentionInputsBf16): the one workspace's in scratch
// (checkpointing, evaluation), each layer's SavedBf16 ones otherwise; flash attention reads them directly, per-chunk
// fp32 projections (ProjQuery …) feed them.
// Precision bf16 (mixed precision) adds the ComputeWeights arena (a bf16 copy of every projection weight and of the LM
// head, category Parameters) and stores the saved activations as bf16: LayerInputs becomes one fp32 buffer (the
// residual stream, updated in place by forward; backward widens each stored input into it) and the L layer inputs live
// in a bf16 LayerInputStore. Evaluation keeps that one stream buffer too. Without checkpointing, every layer's q, k, v,
// attention output, h_mid (gate, up) also go to bf16 slots (SavedBf16), and one fp32 workspace without q, k, v (with
// every layer's own lse) serves all layers.
using MiniSeq.Kernels;
using MiniSeq.Tensors;

namespace MiniSeq.Model;

/// <summary>Per-layer saved tensors (one workspace).</summary>
public sealed record LayerWorkspaceSlots(
    ArenaSlot Query,      // (N, H·D)
    ArenaSlot Key,        // (N, KvH·D)
    ArenaSlot Value,      // (N, KvH·D)
    ArenaSlot AttnOut,    // (N, H·D)
    ArenaSlot Lse,        // (B, H, T)
    ArenaSlot? HMid,      // (N, C) only without recomputation; else m lives in the layer's output buffer
    ArenaSlot? Gate,      // (N, F) unchunked MLP only
    ArenaSlot? Up);       // (N, F) unchunked MLP only

/// <summary>One layer's saved activations stored as bf16 (<see cref="PassPlan.SavedBf16"/>); the fp32 workspace holds
/// the same tensors while the layer runs.</summary>
public sealed record SavedBf16Slots(ArenaSlot Query, ArenaSlot Key, ArenaSlot Value, ArenaSlot AttnOut, ArenaSlot HMid, ArenaSlot? Gate, ArenaSlot? Up)
{
    /// <summary>q, k, v with their fp32 workspace slots (stored before attention).</summary>
    public IEnumerable<(ArenaSlot Bf16, ArenaSlot Fp32)> AttentionInputs(LayerWorkspaceSlots ws)
    {
        yield return (Query, ws.Query);
        yield return (Key, ws.Key);
        yield return (Value, ws.Value);
    }

    /// <summary>The attention output, h_mid (and gate, up) with their fp32 workspace slots (stored after the layer).</summary>
    public IEnumerable<(ArenaSlot Bf16, ArenaSlot Fp32)> LayerOutputs(LayerWorkspaceSlots ws)
    {
        yield return (AttnOut, ws.AttnOut);
        yield return (HMid, ws.HMid!.Value);
        if (Gate is { } gate && Up is { } up)
        {
            yield return (gate, ws.Gate!.Value);
            yield return (up, ws.Up!.Value);
        }
    }
}

/// <summary>Memory plan of one forward (+ backward) pass over a micro-batch of (batchRows, seqLen) tokens.</summary>
public sealed class PassPlan
{
    /// <summary>Rows per chunk of the RMSNorm + Q/K/V projection (memory only; the math is row-wise).</summary>
    public const int ProjectionChunkRows = 1024;

    /// <summary>Builds the plan.</summary>
    /// <remarks><paramref name="lora"/>: the model carries LoRA adapters, whose rows × rank intermediates need
    /// <see cref="LoraRows"/> (and, with dropout, a block of dropped inputs <see cref="LoraDropoutBlock"/>).</remarks>
    /// <remarks><paramref name="sequenceParallel"/> (Ulysses, P ranks): <paramref name="seqLen"/> is this rank's shard
    /// of a sequence of P·seqLen tokens (<paramref name="positions"/> gives its offset); attention runs over the whole
    /// sequence for H/P query heads in head-major scratch buffers (<see cref="HeadQuery"/> … forward,
    /// <see cref="BackHeadKey"/> … backward).</remarks>
    /// <remarks><paramref name="precision"/> bf16: mixed precision (see <see cref="Model.Precision"/>); the policy's
    /// checkpointed layer inputs become bf16 when it recomputes (<see cref="Policy"/> says so).</remarks>
    public PassPlan(LlamaConfig config, int batchSize, int seqLen, MemoryPolicy policy, bool training = true, LossOptions? loss = null, TokenPositions? positions = null, Lora.LoraConfig? lora = null, int sequenceParallel = 1, Precision precision = Precision.Float32)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(policy);
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(seqLen, 1);
        if (precision == Precision.BFloat16 && lora is not null)
        {
            throw new ArgumentException("--precision bf16 does not combine with LoRA: the frozen base needs no fp32 master; store it as bf16 with --lora-base-dtype bf16 instead.");
        }

        if (precision == Precision.BFloat16)
        {
            policy = policy with { LayerInputDType = ActivationDType.BFloat16 };
        }

        if (training && policy.KeepAttention && policy.Checkpoint && policy.LayerInputDType != ActivationDType.Float32)
        {
            // The recompute starts from the bf16-rounded layer input, the forward ran on the fp32 one: attention outputs
            // kept from the forward would not match the recomputed q, k, v of the backward.
            throw new ArgumentException("--checkpoint attn needs fp32 layer inputs: under --precision bf16 the backward recomputes each layer from its bf16-rounded input, which the kept attention outputs (computed from the fp32 input) would not match; use --checkpoint on.");
        }

        Config = config;
        BatchSize = batchSize;
        SeqLen = seqLen;
        Precision = precision;
        Policy = policy;
        ComputeWeights = PlanComputeWeights(config, precision);
        Training = training;
        Loss = loss ?? LossOptions.Default;
        Lora = lora;
        Positions = positions ?? TokenPositions.Contiguous;
        Positions.RequireSupported(batchSize, seqLen);
        SequenceParallel = sequenceParallel == 1 ? null : Distributed.UlyssesHeads.For(config, sequenceParallel);
        if (Rows > int.MaxValue)
        {
            throw new ArgumentException(FormattableString.Invariant(
                $"A micro-batch of {batchSize} × {seqLen} = {Rows} tokens exceeds the 2^31 − 1 rows one pass can index; use --micro-batch or a shorter --seq-len."));
        }
        long n = Rows;
        int c = config.HiddenSize, f = config.IntermediateSize, v = config.VocabSize;
        int hd = config.QueryDim, kvd = config.KeyValueDim, heads = config.NumAttentionHeads;
        int layers = config.NumHiddenLayers;

        if (policy.SequenceChunked)
        {
            PlanChunked(policy.SequenceChunk!.Value);
            return;
        }

        MlpChunkRows = policy.MlpChunks is int mm ? (int)CeilDiv(n, Math.Max(1, mm)) : (int)n;
        LmHeadChunkRows = policy.LmHeadChunks is int lm ? (int)CeilDiv(n, Math.Max(1, lm)) : (int)n;
        ProjectionRows = (int)Math.Min(n, ProjectionChunkRows);
        bool mlpSaved = policy.MlpChunks is null && training;

        // ---- activations ----
        Activations = new ArenaPlan("activations", MemoryCategory.Activations);
        bool storeInputs = training && policy.LayerInputDType != ActivationDType.Float32;
        bool storeSaved = storeInputs && !policy.Checkpoint; // every saved activation in bf16 (mixed precision, no recompute)
        bool keepAllLayers = training && !policy.Checkpoint && !storeSaved;
        if (storeInputs)
        {
            // bf16 inputs h_0 … h_{L−1} in the store (checkpointed, or saved); the fp32 stream is one buffer, updated in place.
            LayerInputStoreLayers = layers;
            LayerInputStoreBytes = LayerInputStore.BytesFor(layers, n, c, policy.LayerInputDType);
        }

        // Evaluation and a stored-input pass keep one fp32 residual stream, updated in place: a layer reads h_l only
        // until the attention block has copied it into h_mid, and only then does the MLP write h_{l+1} over it.
        int inputs = training && !storeInputs ? layers + 1 : 1;
        LayerInputs = new ArenaSlot[inputs];
        for (int i = 0; i < inputs; i++)
        {
            LayerInputs[i] = Activations.Add($"layer_input_{i}", n * c);
        }

        // ---- scratch ----
        Scratch = new ArenaPlan("scratch", MemoryCategory.Scratch);
        AddLoraRows(n); // the output projection runs over every row at once
        DResidual = training ? Scratch.Add("d_residual", n * c) : default;
        if (SequenceParallel is { } sp)
        {
            // Ulysses: the all-to-alls' send and receive blocks of one chunk of local positions.
            HeadExchange = Scratch.Add("head_exchange", Distributed.UlyssesAttention.ExchangeFloats(sp, config, seqLen));
        }

        // ---- layer workspaces ----
        // Checkpointing keeps one workspace for all layers; keeping the attention outputs gives every layer its own
        // attention output and lse (the recompute then skips flash attention) and shares the rest. Saved bf16
        // activations share one fp32 workspace too (each layer's lse is its own) and keep every layer's in bf16.
        // A workspace that serves every layer and is rebuilt by each layer's (re)computation (checkpointing,
        // evaluation) is dead from the last layer's forward to the first layer's backward: it goes into scratch, where
        // the LM head's phase shares its memory (the N × V logits of an unchunked head, or one MsT chunk's).
        int workspaces = keepAllLayers || KeepsAttention || storeSaved ? layers : 1;
        WorkspaceInScratch = !keepAllLayers && !KeepsAttention && !storeSaved;
        ArenaPlan workspaceArena = WorkspaceInScratch ? Scratch : Activations;

        // Mixed precision rounds q, k, v to bf16 after RoPE wherever a layer keeps them: the one rebuilt workspace
        // (checkpointing, evaluation) and every layer's saved activations (vanilla, MsT). In one process they are
        // computed per projection chunk, rounded into bf16 slots and read by flash attention directly — the
        // workspace's own, or the layer's saved ones — so no fp32 copy exists. Under Ulysses, whose all-to-alls move
        // fp32, they are rounded in place in an fp32 workspace.
        RoundsAttentionInputs = precision == Precision.BFloat16 && (WorkspaceInScratch || storeSaved);
        ElementType qkvType = AttentionInputsBf16 ? ElementType.BF16 : ElementType.F32;
        long lmHeadBase = Scratch.Cursor;
        SavedBf16 = new SavedBf16Slots[storeSaved ? layers : 0];
        for (int l = 0; l < SavedBf16.Length; l++)
        {
            SavedBf16[l] = new SavedBf16Slots(
                Activations.Add($"q_bf16_{l}", n * hd, ElementType.BF16),
                Activations.Add($"k_bf16_{l}", n * kvd, ElementType.BF16),
                Activations.Add($"v_bf16_{l}", n * kvd, ElementType.BF16),
                Activations.Add($"attn_out_bf16_{l}", n * hd, ElementType.BF16),
                Activations.Add($"h_mid_bf16_{l}", n * c, ElementType.BF16),
                mlpSaved ? Activations.Add($"gate_bf16_{l}", n * f, ElementType.BF16) : null,
                mlpSaved ? Activations.Add($"up_bf16_{l}", n * f, ElementType.BF16) : null);
        }

        // h_mid (m = h + attention) survives to its layer's backward only without recomputation. A recomputing (or
        // evaluation) pass keeps m in the layer's output buffer: forward writes m there and the MLP adds to it in place;
        // the recompute rebuilds m there too (that buffer is dead in backward), and dL/da then goes over it.
        bool midSaved = keepAllLayers || storeSaved;
        Workspaces = new LayerWorkspaceSlots[workspaces];
        for (int w = 0; w < workspaces; w++)
        {
            bool own = keepAllLayers || w == 0;
            bool savedQkv = storeSaved && AttentionInputsBf16; // attention reads the layer's saved bf16 q, k, v
            Workspaces[w] = new LayerWorkspaceSlots(
                savedQkv ? SavedBf16[w].Query : own ? workspaceArena.Add($"q_{w}", n * hd, qkvType) : Workspaces[0].Query,
                savedQkv ? SavedBf16[w].Key : own ? workspaceArena.Add($"k_{w}", n * kvd, qkvType) : Workspaces[0].Key,
                savedQkv ? SavedBf16[w].Value : own ? workspaceArena.Add($"v_{w}", n * kvd, qkvType) : Workspaces[0].Value,
                own || KeepsAttention ? workspaceArena.Add($"attn_out_{w}", n * hd) : Workspaces[0].AttnOut,
                workspaceArena.Add($"lse_{w}", (long)batchSize * heads * seqLen),
                midSaved ? (own ? workspaceArena.Add($"h_mid_{w}", n * c) : Workspaces[0].HMid) : null,
                mlpSaved ? (own ? workspaceArena.Add($"gate_{w}", n * f) : Workspaces[0].Gate) : null,
                mlpSaved ? (own ? workspaceArena.Add($"up_{w}", n * f) : Workspaces[0].Up) : null);
        }

        long phaseBase = Scratch.Cursor;

        // forward layer: norm + projection chunk, MLP chunk.
        long mr = MlpChunkRows, pr = ProjectionRows, lr = LmHeadChunkRows;
        ProjNorm = Scratch.Add("proj_norm", pr * c);
        ProjRstd = Scratch.Add("proj_rstd", pr);
        ProjQkRstd = config.QkNorm ? Scratch.Add("proj_qk_rstd", pr * heads) : default;
        RecomputesFromStore = training && storeInputs && policy.Checkpoint;
        if (AttentionInputsBf16)
        {
            // one projection chunk's fp32 q, k, v (normed, rotated), then rounded into the workspace's bf16 slots
            ProjQuery = Scratch.Add("proj_q", pr * hd);
            ProjKey = Scratch.Add("proj_k", pr * kvd);
            ProjValue = Scratch.Add("proj_v", pr * kvd);
        }

        AddMlpChunkSlots(mr, gateAndUp: !mlpSaved);
        if (SequenceParallel is { } forward)
        {
            // Ulysses attention forward: q (then the output, written over it), k and v over the whole sequence (B·P·T
            // rows) for this rank's heads, alive only inside the attention call (after the projection chunks, before
            // the MLP): a phase of its own, sharing memory with the norm + projection and MLP chunks above and, with the
            // workspace in scratch, with its last slots gate and up (unchunked MLP), which are written after attention.
            Scratch.Rewind(WorkspaceInScratch && Workspaces[0].Gate is { } gate ? gate.ByteOffset : phaseBase);
            long full = n * forward.Ranks, headFloats = full * forward.LocalHeads * config.HeadDim, kvFloats = full * forward.LocalKvHeads * config.HeadDim;
            HeadQuery = Scratch.Add("head_q", headFloats);
            HeadKey = Scratch.Add("head_k", kvFloats);
            HeadValue = Scratch.Add("head_v", kvFloats);
        }

        // LM head chunk (over a workspace in scratch: dead while the head runs).
        Scratch.Rewind(lmHeadBase);
        AddLmHeadChunkSlots(lr);

        // attention backward (the MLP backward chunk reuses the forward-layer slots above, a different phase).
        if (training)
        {
            Scratch.Rewind(phaseBase);
            // dL/da goes over the buffer that held m, dead once the MLP backward has run (the attention backward runs
            // after it), unless the attention output is wider than the hidden state.
            DAttnOut = hd <= c ? default : Scratch.Add("d_attn_out", n * hd);

            // rowsum(dO∘O), taken first so that the attention output's buffer can take dq (B·H·T floats).
            AttentionRowDot = Scratch.Add("attn_row_dot", n * heads);
            long partials;
            if (SequenceParallel is { } ulysses)
            {
                // The rowsums' head-layout twin; k, v over the whole sequence for this rank's heads, later the local
                // dk, dv (the same sizes as one process's dk, dv when kv heads are split). The heads' q, dOutput, dq,
                // dk and dv reuse the local a, q, d_attn_out, k and v (see UlyssesAttention.Backward), the local dq
                // goes to a's buffer; only replicated kv heads (larger than the local k, v) need dk and dv buffers here.
                long full = n * ulysses.Ranks, kvFloats = full * ulysses.LocalKvHeads * config.HeadDim;
                AttentionRowDotHeads = Scratch.Add("attn_row_dot_heads", n * heads);
                BackHeadKey = Scratch.Add("back_head_k", Math.Max(kvFloats, n * kvd));
                BackHeadValue = Scratch.Add("back_head_v", Math.Max(kvFloats, n * kvd));
                if (kvFloats != n * kvd)
                {
                    HeadDKey = Scratch.Add("head_d_k", kvFloats);
                    HeadDValue = Scratch.Add("head_d_v", kvFloats);
                }

                partials = FlashAttention.BackwardWorkspaceFloats(batchSize, seqLen * ulysses.Ranks, ulysses.LocalKvHeads, config.HeadDim);
            }
            else
            {
                // dq is written over the workspace's attention output (AttentionBlock.Backward).
                DKey = Scratch.Add("d_k", n * kvd);
                DValue = Scratch.Add("d_v", n * kvd);
                partials = FlashAttention.BackwardWorkspaceFloats(batchSize, seqLen, config.NumKeyValueHeads, config.HeadDim);
            }

            AttentionPartials = partials > 0 ? Scratch.Add("attn_bwd_partials", partials) : default;
            BackProjNorm = Scratch.Add("back_proj_norm", pr * c);
            BackProjInput = RecomputesFromStore ? Scratch.Add("back_proj_input", pr * c) : default;
            BackProjRstd = Scratch.Add("back_proj_rstd", pr);
            BackProjDNorm = Scratch.Add("back_proj_d_norm", pr * c);
            if (config.QkNorm)
            {
                // q or k before its per-head norm (recomputed), its norm's rstd, and the gradient before the norm.
                BackQkPre = Scratch.Add("back_qk_pre", pr * hd);
                BackQkRstd = Scratch.Add("back_qk_rstd", pr * heads);
                BackQkDPre = Scratch.Add("back_qk_d_pre", pr * hd);
            }
        }
    }

    /// <summary>bf16 compute copies of the projection weights and the LM head (empty in fp32), in parameter order.</summary>
    private static ArenaPlan PlanComputeWeights(LlamaConfig config, Precision precision)
    {
        var plan = new ArenaPlan("compute_weights", MemoryCategory.Parameters);
        if (precision == Precision.BFloat16)
        {
            foreach (ParameterInfo info in ComputeWeightSources(new ParameterLayout(config)))
            {
                plan.Add(info.Name, info.ElementCount, ElementType.BF16);
            }
        }

        return plan;
    }

    /// <summary>The fp32 master tensors that have a bf16 compute copy under mixed precision: every projection weight and
    /// the LM head (the embedding table when tied: the lookup reads the fp32 master, the LM-head GEMM its copy).</summary>
    public static IEnumerable<ParameterInfo> ComputeWeightSources(ParameterLayout layout)
    {
        ArgumentNullException.ThrowIfNull(layout);
        foreach (ParameterInfo info in layout.Tensors)
        {
            if (info.Kind is ParameterKind.Projection or ParameterKind.LmHead || (info.Kind == ParameterKind.Embedding && layout.Config.TieWordEmbeddings))
            {
                yield return info;
            }
        }
    }

    /// <summary>The arithmetic precision of the pass.</summary>
    public Precision Precision { get; }

    /// <summary>Mixed precision: the bf16 compute copies of the weights (see <see cref="ComputeWeightSources"/>), in
    /// their order; empty in fp32.</summary>
    public ArenaPlan ComputeWeights { get; }

    private void AddLoraRows(long rows)
    {
        if (LoraRank > 0)
        {
            LoraRows = Scratch.Add("lora_rows", 2 * rows * LoraRank);
        }

        if (Lora is { Dropout: > 0 })
        {
            int widest = Math.Max(Math.Max(Config.HiddenSize, Config.IntermediateSize), Config.QueryDim);
            LoraDropoutBlock = Scratch.Add("lora_dropout_block", (long)LoraDropout.BlockRows * widest);
        }
    }

    /// <summary>
    /// Sequence-chunked layers: the residual stream (N, C) is updated in place chunk by chunk and becomes the residual
    /// gradient in backward; K and V (and dK, dV) exist for the whole sequence; everything else for one chunk of S
    /// positions of one sequence. Layer inputs 1..L−1 live in a <see cref="LayerInputStore"/> (memory or disk, fp32 or
    /// bf16); layer 0's input is recomputed from the embedding.
    /// </summary>
    [System.Diagnostics.CodeAnalysis.MemberNotNull(nameof(Activations), nameof(Scratch), nameof(LayerInputs), nameof(Workspaces))]
    private void PlanChunked(int sequenceChunk)
    {
        LlamaConfig config = Config;
        long n = Rows;
        int c = config.HiddenSize, f = config.IntermediateSize, v = config.VocabSize;
        int hd = config.QueryDim, kvd = config.KeyValueDim, heads = config.NumAttentionHeads;
        int s = Math.Min(sequenceChunk, SeqLen);
        SequenceChunkRows = s;
        ProjectionRows = s;
        MlpChunkRows = (int)Math.Min(s, Policy.MlpChunks is int mm ? CeilDiv(n, Math.Max(1, mm)) : n);
        LmHeadChunkRows = (int)Math.Min(Training ? s : n, Policy.LmHeadChunks is int lm ? CeilDiv(n, Math.Max(1, lm)) : n);
        long mr = MlpChunkRows, lr = LmHeadChunkRows;

        Activations = new ArenaPlan("activations", MemoryCategory.Activations);
        Stream = Activations.Add("residual_stream", n * c);
        LayerInputs = []; // the stream and the LayerInputStore take their place
        Workspaces = [];

        // K and V of the whole sequence: (N, KvH·D) in one process; under Ulysses in head layout, (B·P·T, KvH_local·D)
        // for this rank's kv heads over the whole rows (the size of the local K, V when kv heads are split).
        Distributed.UlyssesHeads? sp = SequenceParallel;
        long kvCache = sp is null ? n * kvd : n * sp.Ranks * sp.LocalKvHeads * config.HeadDim;
        Key = Activations.Add("k", kvCache);
        Value = Activations.Add("v", kvCache);
        int stored = Training ? config.NumHiddenLayers - 1 : 0;
        LayerInputStoreLayers = stored;
        LayerInputStoreBytes = stored > 0 ? LayerInputStore.BytesFor(stored, n, c, Policy.LayerInputDType) : 0;
        LayerInputStagingBytes = stored > 0 && Policy.OffloadDirectory is not null ? LayerInputStore.StagingBytes(s, c, Policy.LayerInputDType) : 0;

        Scratch = new ArenaPlan("scratch", MemoryCategory.Scratch);
        AddLoraRows(s); // every projection runs over one chunk
        if (sp is not null)
        {
            // Ulysses: one chunk's all-to-all blocks; the chunk's local K, V before they go to head layout (in backward
            // later its dK, dV back from it); its q and attention output in head layout, P blocks of S rows (H/P heads).
            HeadExchange = Scratch.Add("head_exchange", Distributed.UlyssesAttention.ExchangeFloats(sp, config, s));
            ChunkKey = Scratch.Add("chunk_k", (long)s * kvd);
            ChunkValue = Scratch.Add("chunk_v", (long)s * kvd);
            HeadQuery = Scratch.Add("head_chunk_q", (long)s * hd);
            HeadAttnOut = Scratch.Add("head_chunk_attn_out", (long)s * hd);
        }

        if (Training)
        {
            DKey = Scratch.Add("d_k", kvCache);
            DValue = Scratch.Add("d_v", kvCache);
            long partials = sp is null
                ? FlashAttention.BackwardQueriesWorkspaceFloats(0, SeqLen, config.NumKeyValueHeads, config.HeadDim)
                : FlashAttention.BackwardQueriesWorkspaceFloats(0, SeqLen * sp.Ranks, sp.LocalKvHeads, config.HeadDim);
            AttentionPartials = partials > 0 ? Scratch.Add("attn_bwd_partials", partials) : default;
            ChunkInput = Scratch.Add("chunk_input", (long)s * c);
        }

        ProjNorm = Scratch.Add("proj_norm", (long)s * c);
        ProjRstd = Scratch.Add("proj_rstd", s);
        ProjQkRstd = config.QkNorm ? Scratch.Add("proj_qk_rstd", (long)s * heads) : default;
        ChunkQuery = Scratch.Add("chunk_q", (long)s * hd);
        ChunkAttnOut = Scratch.Add("chunk_attn_out", (long)s * hd);
        ChunkLse = Scratch.Add("chunk_lse", (long)s * heads);
        ChunkMid = Scratch.Add("chunk_h_mid", (long)s * c);
        if (Training)
        {
            DQuery = Scratch.Add("chunk_d_q", (long)s * hd);
            DAttnOut = Scratch.Add("chunk_d_attn_out", (long)s * hd);
            BackProjDNorm = Scratch.Add("chunk_d_norm", (long)s * c);
        }

        long phaseBase = Scratch.Cursor;
        AddMlpChunkSlots(mr, gateAndUp: true);
        Scratch.Rewind(phaseBase);
        AddLmHeadChunkSlots(lr);
        if (Training && config.QkNorm)
        {
            Scratch.Rewind(phaseBase);
            BackQkPre = Scratch.Add("back_qk_pre", (long)s * hd);
            BackQkRstd = Scratch.Add("back_qk_rstd", (long)s * heads);
            BackQkDPre = Scratch.Add("back_qk_d_pre", (long)s * hd);
        }
    }

    /// <summary>The MLP chunk's temporaries (gate and up only when they are not saved per layer).</summary>
    private void AddMlpChunkSlots(long rows, bool gateAndUp)
    {
        int c = Config.HiddenSize, f = Config.IntermediateSize;
        MlpNorm = Scratch.Add("mlp_norm", rows * c);
        MlpRstd = Scratch.Add("mlp_rstd", rows);
        MlpGate = gateAndUp ? Scratch.Add("mlp_gate", rows * f) : default;
        MlpUp = gateAndUp ? Scratch.Add("mlp_up", rows * f) : default;
        MlpProduct = Scratch.Add("mlp_product", rows * f);
        MlpDNorm = Training ? Scratch.Add("mlp_d_norm", rows * c) : default;
    }

    /// <summary>The LM-head chunk's temporaries, logits included. The gradient of the normed rows needs no slot of its
    /// own: Linear.Backward reads xn for dW before it writes dxn, so dxn overwrites xn (the norm backward reads h and
    /// rstd, not xn) — one (rows, C) buffer less at the phase that sets the scratch peak of an unchunked LM head.</summary>
    private void AddLmHeadChunkSlots(long rows)
    {
        int c = Config.HiddenSize;
        HeadNorm = Scratch.Add("head_norm", rows * c);
        HeadRstd = Scratch.Add("head_rstd", rows);
        HeadLogits = Scratch.Add("head_logits", rows * Config.VocabSize);
        HeadRowLoss = Scratch.Add("head_row_loss", rows);
    }

    /// <summary>The model's LoRA adapters' configuration, or null.</summary>
    public Lora.LoraConfig? Lora { get; }

    /// <summary>Rank of the model's LoRA adapters (0 = none).</summary>
    public int LoraRank => Lora?.Rank ?? 0;

    /// <summary>With LoRA dropout: <see cref="LoraDropout.BlockRows"/> rows of the widest projection input.</summary>
    public ArenaSlot LoraDropoutBlock { get; private set; }

    /// <summary>2 · rank floats per row of the largest projection call: the x·Aᵀ and dy·B intermediates of an adapter.</summary>
    public ArenaSlot LoraRows { get; private set; }

    /// <summary>The model config.</summary>
    public LlamaConfig Config { get; }

    /// <summary>Rows per pass (micro-batch rows).</summary>
    public int BatchSize { get; }

    /// <summary>Tokens per row.</summary>
    public int SeqLen { get; }

    /// <summary>Token rows N = B·T.</summary>
    public long Rows => (long)BatchSize * SeqLen;

    /// <summary>The policy the plan was built for.</summary>
    public MemoryPolicy Policy { get; }

    /// <summary>Loss options (never chosen by the planner: they change the numbers).</summary>
    public LossOptions Loss { get; }

    /// <summary>RoPE position offset and document boundaries of the rows.</summary>
    public TokenPositions Positions { get; }

    /// <summary>Whether gradients are computed (else: evaluation).</summary>
    public bool Training { get; }

    /// <summary>Token rows per MLP chunk (N when the MLP is not chunked).</summary>
    public int MlpChunkRows { get; private set; }

    /// <summary>Token rows per LM-head chunk (N when not chunked).</summary>
    public int LmHeadChunkRows { get; private set; }

    /// <summary>Token rows per norm + projection chunk.</summary>
    public int ProjectionRows { get; private set; }

    /// <summary>Saved activations.</summary>
    public ArenaPlan Activations { get; private set; }

    /// <summary>Scratch memory.</summary>
    public ArenaPlan Scratch { get; private set; }

#pragma warning disable CS1591 // slots are described by the class remarks
    public ArenaSlot[] LayerInputs { get; private set; }
    public LayerWorkspaceSlots[] Workspaces { get; private set; }

    /// <summary>Whether the one workspace that serves every layer is in <see cref="Scratch"/> (checkpointing without kept
    /// attention, and evaluation: each layer's forward or recompute rebuilds it, so it is dead while the LM head runs,
    /// whose chunk shares its memory) rather than in <see cref="Activations"/>.</summary>
    public bool WorkspaceInScratch { get; private set; }

    /// <summary>Checkpointing with the layer inputs in the bf16 store: the recompute widens h_l into the one fp32 stream
    /// buffer and turns it into m in place, dL/da then goes over it, so the attention backward reads h_l from the store
    /// again, one projection chunk at a time (<see cref="BackProjInput"/>).</summary>
    public bool RecomputesFromStore { get; private set; }

    /// <summary>Mixed precision in one process: the workspaces' q, k, v slots are bf16 — the one rebuilt workspace's own
    /// (<see cref="WorkspaceInScratch"/>), or each layer's saved ones (<see cref="SavedBf16"/>) — rounded per projection
    /// chunk after RoPE and read by flash attention directly; the projections write each chunk's fp32 values to
    /// <see cref="ProjQuery"/>, <see cref="ProjKey"/>, <see cref="ProjValue"/>.</summary>
    public bool AttentionInputsBf16 => RoundsAttentionInputs && SequenceParallel is null;

    /// <summary>Mixed precision (every policy but sequence-chunked layers): attention runs on q, k, v rounded to bf16
    /// (kept as bf16 when <see cref="AttentionInputsBf16"/>, else — under Ulysses — rounded in place in fp32).</summary>
    public bool RoundsAttentionInputs { get; private set; }

    /// <summary>Mixed precision without recomputation: every layer's saved q, k, v, attention output, h_mid (and gate,
    /// up when the MLP is not chunked) rounded to bf16 after its forward, widened into the one fp32 workspace before its
    /// backward (empty otherwise).</summary>
    public SavedBf16Slots[] SavedBf16 { get; private set; } = [];

    /// <summary>Whether each layer's attention output and lse survive to its backward, whose recompute then skips the
    /// flash-attention forward (<see cref="MemoryPolicy.KeepAttention"/> with checkpointing, training only).</summary>
    public bool KeepsAttention => Training && Policy.Checkpoint && Policy.KeepAttention && !Policy.SequenceChunked;

    public ArenaSlot DResidual { get; private set; }
    public ArenaSlot ProjNorm { get; private set; }
    public ArenaSlot ProjRstd { get; private set; }
    public ArenaSlot ProjQkRstd { get; private set; }
    public ArenaSlot BackProjInput { get; private set; }
    public ArenaSlot ProjQuery { get; private set; }
    public ArenaSlot ProjKey { get; private set; }
    public ArenaSlot ProjValue { get; private set; }
    public ArenaSlot MlpNorm { get; private set; }
    public ArenaSlot MlpRstd { get; private set; }
    public ArenaSlot MlpGate { get; private set; }
    public ArenaSlot MlpUp { get; private set; }
    public ArenaSlot MlpProduct { get; private set; }
    public ArenaSlot MlpDNorm { get; private set; }
    public ArenaSlot HeadNorm { get; private set; }
    public ArenaSlot HeadRstd { get; private set; }
    public ArenaSlot HeadLogits { get; private set; }
    public ArenaSlot HeadRowLoss { get; private set; }

    /// <summary>dL/da, the attention output's gradient; empty when it is written over the buffer that held m (the
    /// workspace's h_mid, or a recomputing pass's layer output buffer; H·D ≤ C).</summary>
    public ArenaSlot DAttnOut { get; private set; }

    /// <summary>Attention backward: rowsum(dO∘O) per (batch, head, position) laid out as lse (under Ulysses: first the
    /// local rows' sums, (B·T, H), then this rank's heads' laid out as lse).</summary>
    public ArenaSlot AttentionRowDot { get; private set; }

    /// <summary>Ulysses attention backward: this rank's heads' rowsum(dO∘O), (B·P·T, H/P), as the all-to-all leaves it.</summary>
    public ArenaSlot AttentionRowDotHeads { get; private set; }

    /// <summary>Ulysses sequence parallel over P ranks (heads per rank), or null: the whole sequence is local.</summary>
    public Distributed.UlyssesHeads? SequenceParallel { get; }

    /// <summary>Ulysses forward: q (B·P·T, H/P·D), head-major over the whole sequence (attention forward only); with
    /// sequence-chunked layers one chunk's q in head layout (P blocks of S rows, S·H·D floats).</summary>
    public ArenaSlot HeadQuery { get; private set; }

    /// <summary>Ulysses forward: k (B·P·T, KvH_local·D) over the whole sequence.</summary>
    public ArenaSlot HeadKey { get; private set; }

    /// <summary>Ulysses forward: v (B·P·T, KvH_local·D) over the whole sequence.</summary>
    public ArenaSlot HeadValue { get; private set; }

    /// <summary>Ulysses with sequence-chunked layers: one chunk's attention output in head layout (P blocks of S rows);
    /// without them the heads' output is written over <see cref="HeadQuery"/>.</summary>
    public ArenaSlot HeadAttnOut { get; private set; }

    /// <summary>Ulysses: one chunk's all-to-all send and receive blocks (see UlyssesAttention.ExchangeFloats).</summary>
    public ArenaSlot HeadExchange { get; private set; }

    /// <summary>Ulysses backward: k (B·P·T, KvH_local·D) over the whole sequence; later the local dk (N, KvH·D).</summary>
    public ArenaSlot BackHeadKey { get; private set; }

    /// <summary>Ulysses backward: v (B·P·T, KvH_local·D) over the whole sequence; later the local dv (N, KvH·D).</summary>
    public ArenaSlot BackHeadValue { get; private set; }

    /// <summary>Ulysses backward, replicated kv heads only: dk (B·P·T, KvH_local·D); split kv heads reuse the local k.</summary>
    public ArenaSlot HeadDKey { get; private set; }

    /// <summary>Ulysses backward, replicated kv heads only: dv (B·P·T, KvH_local·D); split kv heads reuse the local v.</summary>
    public ArenaSlot HeadDValue { get; private set; }

    /// <summary>Sequence-chunked layers: one chunk's dq (S, H·D). Whole-sequence layers have none: dq is written over
    /// the workspace's attention output.</summary>
    public ArenaSlot DQuery { get; private set; }

    public ArenaSlot DKey { get; private set; }
    public ArenaSlot DValue { get; private set; }

    /// <summary>The split attention backward's partial dk/dv (odd B·KvH only; see FlashAttention.BackwardWorkspaceFloats).</summary>
    public ArenaSlot AttentionPartials { get; private set; }
    public ArenaSlot BackProjNorm { get; private set; }
    public ArenaSlot BackProjRstd { get; private set; }
    public ArenaSlot BackProjDNorm { get; private set; }
    public ArenaSlot BackQkPre { get; private set; }
    public ArenaSlot BackQkRstd { get; private set; }
    public ArenaSlot BackQkDPre { get; private set; }

    // sequence-chunked layers only
    public ArenaSlot Stream { get; private set; }
    public ArenaSlot Key { get; private set; }
    public ArenaSlot Value { get; private set; }
    public ArenaSlot ChunkInput { get; private set; }
    public ArenaSlot ChunkQuery { get; private set; }
    public ArenaSlot ChunkAttnOut { get; private set; }
    public ArenaSlot ChunkLse { get; private set; }
    public ArenaSlot ChunkMid { get; private set; }
    public ArenaSlot ChunkKey { get; private set; }   // Ulysses only
    public ArenaSlot ChunkValue { get; private set; } // Ulysses only
#pragma warning restore CS1591

    /// <summary>Rows of the RoPE cos/sin table: the pass's own positions [Offset, Offset + SeqLen), filled from
    /// <see cref="TokenPositions.Offset"/> (so a Ulysses rank holds its N/P positions, not every position before its
    /// shard; RoPE then runs at offset 0), or one chunk's rows when layers are sequence-chunked (the table is refilled
    /// per chunk). See <see cref="RopeTable.FillRows"/>.</summary>
    public int RopeRows => SequenceChunkRows > 0 ? SequenceChunkRows : SeqLen;

    /// <summary>Positions per chunk of sequence-chunked layers (0 when the policy does not chunk layers).</summary>
    public int SequenceChunkRows { get; private set; }

    /// <summary>Layer inputs kept in the <see cref="LayerInputStore"/> (L − 1 when training sequence-chunked, L when
    /// training with bf16 layer inputs — checkpointed, or saved under mixed precision — else 0).</summary>
    public int LayerInputStoreLayers { get; private set; }

    /// <summary>Bytes of the layer-input store: resident when in memory, on disk when offloaded.</summary>
    public long LayerInputStoreBytes { get; private set; }

    /// <summary>Resident staging buffers of an offloaded layer-input store.</summary>
    public long LayerInputStagingBytes { get; private set; }

    /// <summary>Resident bytes of the layer-input store (0 when offloaded).</summary>
    public long LayerInputResidentBytes => Policy.OffloadDirectory is null ? LayerInputStoreBytes : 0;

    /// <summary>Disk bytes of the layer-input store (0 when in memory).</summary>
    public long LayerInputDiskBytes => Policy.OffloadDirectory is null ? 0 : LayerInputStoreBytes;

    private static long CeilDiv(long a, long b) => (a + b - 1) / b;
}
