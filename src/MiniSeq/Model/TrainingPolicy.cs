// How a training step trades memory for recompute: mini-sequence (MsT) chunking of the MLP and of the LM head +
// cross-entropy, and per-layer activation checkpointing. Chunked always computes exactly what unchunked computes.
using MiniSeq.Kernels;

namespace MiniSeq.Model;

/// <summary>Memory policy of a training step.</summary>
public sealed record TrainingPolicy
{
    /// <summary>
    /// Mini-sequence MLP: null = off (the MLP keeps its N×F gate/up activations for backward); M ≥ 1 = split the
    /// B·T token rows into M chunks, keep only the block input and recompute each chunk in backward.
    /// </summary>
    public int? MlpChunks { get; init; }

    /// <summary>
    /// Mini-sequence LM head + cross-entropy: null = off (one N×V logits block); M ≥ 1 = M chunks of token rows,
    /// logits exist for one chunk at a time.
    /// </summary>
    public int? LmHeadChunks { get; init; }

    /// <summary>
    /// LM head: false (default) = gradient in forward (Liger): each chunk's logit gradient is formed as soon as its
    /// loss is known, so logits are computed once. true = recompute (CCE-style): a loss-only pass over all chunks, then
    /// a second pass that recomputes each chunk's logits for the gradient. Same memory, +2·N·C·V FLOPs; kept for the
    /// measurement in docs/benchmarks.
    /// </summary>
    public bool LmHeadRecompute { get; init; }

    /// <summary>Per-layer activation checkpointing: keep only each layer's input, recompute the layer in backward.</summary>
    public bool Checkpoint { get; init; }

    /// <summary>Loss options (label smoothing, z-loss, final-logit soft-cap).</summary>
    public CrossEntropyOptions Loss { get; init; }

    /// <summary>Nothing chunked, nothing recomputed.</summary>
    public static TrainingPolicy Vanilla => new();

    /// <summary>Fewest token rows per auto chunk: smaller chunks make the chunk GEMMs measurably slower (docs/benchmarks/overhead.md).</summary>
    public const int MinAutoChunkRows = 2048;

    /// <summary>
    /// Auto MLP chunks: the paper's later rule (and DeepSpeed TiledMLP's) is chunks of C tokens; measured here, chunks
    /// below ≈2048 rows cost GEMM efficiency (k = chunk rows is too short), so a chunk is max(C, 2048) rows. At long N
    /// such a chunk still fits inside the attention-backward scratch phase it shares memory with, so it costs no peak.
    /// </summary>
    public static int AutoMlpChunks(LlamaConfig config, long rows)
        => (int)Math.Max(1, (rows + Math.Max(config.HiddenSize, MinAutoChunkRows) - 1) / Math.Max(config.HiddenSize, MinAutoChunkRows));

    /// <summary>
    /// Auto LM-head chunks: the paper's M = ⌈V/C⌉ (each logits chunk about as large as the N×C hidden states), but never
    /// chunks below 2048 rows (measured: smaller chunks slow the LM-head GEMMs, and at short N memory is no issue).
    /// </summary>
    public static int AutoLmHeadChunks(LlamaConfig config, long rows)
    {
        long paper = (config.VocabSize + config.HiddenSize - 1) / config.HiddenSize;
        long byRows = (rows + MinAutoChunkRows - 1) / MinAutoChunkRows;
        return (int)Math.Max(1, Math.Min(paper, byRows));
    }

    /// <summary>MsT on both blocks with the auto rule, plus checkpointing if asked.</summary>
    public static TrainingPolicy MiniSequence(LlamaConfig config, long rows, bool checkpoint)
        => new() { MlpChunks = AutoMlpChunks(config, rows), LmHeadChunks = AutoLmHeadChunks(config, rows), Checkpoint = checkpoint };

    /// <summary>Short name, e.g. "mst(mlp 16, lm 32)+checkpoint".</summary>
    public string Describe()
    {
        string mst = (MlpChunks, LmHeadChunks) switch
        {
            (null, null) => "vanilla",
            _ => $"mst(mlp {MlpChunks?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "off"}, lm {LmHeadChunks?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "off"})",
        };
        return Checkpoint ? (mst == "vanilla" ? "checkpoint" : mst + "+checkpoint") : mst;
    }
}
