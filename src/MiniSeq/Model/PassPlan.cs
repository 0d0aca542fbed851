// The memory plan of one forward/backward pass: every activation saved for backward and every scratch buffer,
// with sizes computed from (config, batch rows, sequence length, policy) before anything is allocated. The trainer
// allocates exactly these arenas and the planner predicts from them, so predicted = allocated by construction.
//
// Activations arena:
//   LayerInputs[0..L]  (N, C) each: the residual stream entering each layer (LayerInputs[L] = final hidden state).
//   Workspaces[w]      one per layer without checkpointing, one shared with checkpointing (or for eval):
//                      Q (N, H·D) post-RoPE, K, V (N, KvH·D), AttnOut (N, H·D), Lse (B, H, T), HMid (N, C),
//                      and Gate, Up (N, F) only when the MLP is not chunked.
// Scratch arena (phases that never overlap share memory):
//   DResidual (N, C) — the one residual-gradient buffer, alive from the LM head down to the embedding.
//   union { forward layer | LM head chunk | MLP backward chunk | attention backward (+ partial dk/dv when the
//   backward splits the query blocks of an odd number of (batch, kv head) pairs) }.
//   Qwen3 adds the per-head q/k norm's rstd to the forward layer and (q or k) before the norm, its rstd and its
//   gradient, per projection chunk, to the attention backward.
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
    ArenaSlot HMid,       // (N, C)
    ArenaSlot? Gate,      // (N, F) unchunked MLP only
    ArenaSlot? Up);       // (N, F) unchunked MLP only

/// <summary>Memory plan of one forward (+ backward) pass over a micro-batch of (batchRows, seqLen) tokens.</summary>
public sealed class PassPlan
{
    /// <summary>Rows per chunk of the RMSNorm + Q/K/V projection (memory only; the math is row-wise).</summary>
    public const int ProjectionChunkRows = 1024;

    /// <summary>Builds the plan.</summary>
    public PassPlan(LlamaConfig config, int batchSize, int seqLen, MemoryPolicy policy, bool training = true, LossOptions? loss = null, TokenPositions? positions = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(policy);
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(seqLen, 1);
        Config = config;
        BatchSize = batchSize;
        SeqLen = seqLen;
        Policy = policy;
        Training = training;
        Loss = loss ?? LossOptions.Default;
        Positions = positions ?? TokenPositions.Contiguous;
        Positions.RequireSupported(batchSize, seqLen);
        if (Rows > int.MaxValue)
        {
            throw new ArgumentException(FormattableString.Invariant(
                $"A micro-batch of {batchSize} × {seqLen} = {Rows} tokens exceeds the 2^31 − 1 rows one pass can index; use --micro-batch or a shorter --seq-len."));
        }
        long n = Rows;
        int c = config.HiddenSize, f = config.IntermediateSize, v = config.VocabSize;
        int hd = config.QueryDim, kvd = config.KeyValueDim, heads = config.NumAttentionHeads;
        int layers = config.NumHiddenLayers;

        MlpChunkRows = policy.MlpChunks is int mm ? (int)CeilDiv(n, Math.Max(1, mm)) : (int)n;
        LmHeadChunkRows = policy.LmHeadChunks is int lm ? (int)CeilDiv(n, Math.Max(1, lm)) : (int)n;
        ProjectionRows = (int)Math.Min(n, ProjectionChunkRows);
        bool mlpSaved = policy.MlpChunks is null && training;

        // ---- activations ----
        Activations = new ArenaPlan("activations", MemoryCategory.Activations);
        bool keepAllLayers = training && !policy.Checkpoint;
        int inputs = training ? layers + 1 : 2; // eval ping-pongs two buffers
        LayerInputs = new ArenaSlot[inputs];
        for (int i = 0; i < inputs; i++)
        {
            LayerInputs[i] = Activations.Add($"layer_input_{i}", n * c);
        }

        int workspaces = keepAllLayers ? layers : 1;
        Workspaces = new LayerWorkspaceSlots[workspaces];
        for (int w = 0; w < workspaces; w++)
        {
            Workspaces[w] = new LayerWorkspaceSlots(
                Activations.Add($"q_{w}", n * hd),
                Activations.Add($"k_{w}", n * kvd),
                Activations.Add($"v_{w}", n * kvd),
                Activations.Add($"attn_out_{w}", n * hd),
                Activations.Add($"lse_{w}", (long)batchSize * heads * seqLen),
                Activations.Add($"h_mid_{w}", n * c),
                mlpSaved ? Activations.Add($"gate_{w}", n * f) : null,
                mlpSaved ? Activations.Add($"up_{w}", n * f) : null);
        }

        // ---- scratch ----
        Scratch = new ArenaPlan("scratch", MemoryCategory.Scratch);
        DResidual = training ? Scratch.Add("d_residual", n * c) : default;
        long phaseBase = Scratch.Cursor;

        // forward layer: norm + projection chunk, MLP chunk.
        long mr = MlpChunkRows, pr = ProjectionRows, lr = LmHeadChunkRows;
        ProjNorm = Scratch.Add("proj_norm", pr * c);
        ProjRstd = Scratch.Add("proj_rstd", pr);
        ProjQkRstd = config.QkNorm ? Scratch.Add("proj_qk_rstd", pr * heads) : default;
        MlpNorm = Scratch.Add("mlp_norm", mr * c);
        MlpRstd = Scratch.Add("mlp_rstd", mr);
        MlpGate = mlpSaved ? default : Scratch.Add("mlp_gate", mr * f);
        MlpUp = mlpSaved ? default : Scratch.Add("mlp_up", mr * f);
        MlpProduct = Scratch.Add("mlp_product", mr * f);
        MlpDNorm = training ? Scratch.Add("mlp_d_norm", mr * c) : default;

        // LM head chunk.
        Scratch.Rewind(phaseBase);
        HeadNorm = Scratch.Add("head_norm", lr * c);
        HeadRstd = Scratch.Add("head_rstd", lr);
        HeadLogits = Scratch.Add("head_logits", lr * v);
        HeadRowLoss = Scratch.Add("head_row_loss", lr);
        HeadDNorm = training ? Scratch.Add("head_d_norm", lr * c) : default;

        // attention backward (the MLP backward chunk reuses the forward-layer slots above, a different phase).
        if (training)
        {
            Scratch.Rewind(phaseBase);
            DAttnOut = Scratch.Add("d_attn_out", n * hd);
            DQuery = Scratch.Add("d_q", n * hd);
            DKey = Scratch.Add("d_k", n * kvd);
            DValue = Scratch.Add("d_v", n * kvd);
            long partials = FlashAttention.BackwardWorkspaceFloats(batchSize, seqLen, config.NumKeyValueHeads, config.HeadDim);
            AttentionPartials = partials > 0 ? Scratch.Add("attn_bwd_partials", partials) : default;
            BackProjNorm = Scratch.Add("back_proj_norm", pr * c);
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
    public int MlpChunkRows { get; }

    /// <summary>Token rows per LM-head chunk (N when not chunked).</summary>
    public int LmHeadChunkRows { get; }

    /// <summary>Token rows per norm + projection chunk.</summary>
    public int ProjectionRows { get; }

    /// <summary>Saved activations.</summary>
    public ArenaPlan Activations { get; }

    /// <summary>Scratch memory.</summary>
    public ArenaPlan Scratch { get; }

#pragma warning disable CS1591 // slots are described by the class remarks
    public ArenaSlot[] LayerInputs { get; }
    public LayerWorkspaceSlots[] Workspaces { get; }
    public ArenaSlot DResidual { get; }
    public ArenaSlot ProjNorm { get; }
    public ArenaSlot ProjRstd { get; }
    public ArenaSlot ProjQkRstd { get; }
    public ArenaSlot MlpNorm { get; }
    public ArenaSlot MlpRstd { get; }
    public ArenaSlot MlpGate { get; }
    public ArenaSlot MlpUp { get; }
    public ArenaSlot MlpProduct { get; }
    public ArenaSlot MlpDNorm { get; }
    public ArenaSlot HeadNorm { get; }
    public ArenaSlot HeadRstd { get; }
    public ArenaSlot HeadLogits { get; }
    public ArenaSlot HeadRowLoss { get; }
    public ArenaSlot HeadDNorm { get; }
    public ArenaSlot DAttnOut { get; }
    public ArenaSlot DQuery { get; }
    public ArenaSlot DKey { get; }
    public ArenaSlot DValue { get; }

    /// <summary>The split attention backward's partial dk/dv (odd B·KvH only; see FlashAttention.BackwardWorkspaceFloats).</summary>
    public ArenaSlot AttentionPartials { get; }
    public ArenaSlot BackProjNorm { get; }
    public ArenaSlot BackProjRstd { get; }
    public ArenaSlot BackProjDNorm { get; }
    public ArenaSlot BackQkPre { get; }
    public ArenaSlot BackQkRstd { get; }
    public ArenaSlot BackQkDPre { get; }
#pragma warning restore CS1591

    private static long CeilDiv(long a, long b) => (a + b - 1) / b;
}
