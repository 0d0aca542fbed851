// How a training step trades memory for recompute: mini-sequence (MsT) chunking of the MLP and of the LM head +
// cross-entropy, and per-layer activation checkpointing. Chunked always computes exactly what unchunked computes.
// Loss options live apart (LossOptions): they change what is computed, a memory policy never does. Policy text
// ("vanilla", "mst+checkpoint", "mst(mlp 4, lm 2)", the CLI's off|auto|M) is parsed here and only here.
using System.Globalization;
using System.Text.RegularExpressions;
using MiniSeq.Tensors;

namespace MiniSeq.Model;

/// <summary>Memory policy of a training step.</summary>
public sealed partial record MemoryPolicy
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

    /// <summary>Per-layer activation checkpointing: keep only each layer's input, recompute the layer in backward.</summary>
    public bool Checkpoint { get; init; }

    /// <summary>
    /// With <see cref="Checkpoint"/> (not sequence-chunked): also keep each layer's attention output and log-sum-exp
    /// (N·(H·D + H) floats per layer), so the backward's recompute skips the flash-attention forward — at long N the
    /// costliest part of the recompute — and redoes only the projections, RoPE and the output projection (selective
    /// checkpointing, as torchtitan keeps SDPA's outputs). Exact: the kept tensors are the ones the recompute would
    /// produce, bit for bit. Name suffix "+attn" (<c>--checkpoint attn</c>).
    /// </summary>
    public bool KeepAttention { get; init; }

    /// <summary>
    /// Sequence-chunked layers: null = off; S = every layer (projections, RoPE, attention, output projection, MLP) runs
    /// in chunks of S positions of one sequence, forward and backward, so only K and V (and dK, dV in backward) exist for
    /// the whole sequence. Implies checkpointing (each layer is recomputed chunk by chunk in backward).
    /// </summary>
    public int? SequenceChunk { get; init; }

    /// <summary>How the activations saved for backward are stored: fp32 (exact) or bf16. Recomputing policies save only
    /// their layer inputs: those of sequence-chunked layers (<c>--activation-dtype</c>), or of checkpointing under
    /// <c>--precision bf16</c>; under <c>--precision bf16</c> a policy that does not recompute stores every saved
    /// activation of every layer as bf16 (<see cref="PassPlan"/> sets it; Describe adds "+bf16").</summary>
    public ActivationDType LayerInputDType { get; init; } = ActivationDType.Float32;

    /// <summary>Directory the checkpointed layer inputs of sequence-chunked layers are offloaded to (null: kept in memory).</summary>
    public string? OffloadDirectory { get; init; }

    /// <summary>Whether layers run in sequence chunks (<see cref="SequenceChunk"/> set).</summary>
    public bool SequenceChunked => SequenceChunk is not null;

    /// <summary>Whether each layer is recomputed in backward from its checkpointed input.</summary>
    public bool Recomputes => Checkpoint || SequenceChunked;

    /// <summary>Nothing chunked, nothing recomputed.</summary>
    public static MemoryPolicy Vanilla => new();

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
    /// chunks below <see cref="MinLmHeadChunkRows"/> rows (measured: smaller chunks slow the LM-head GEMMs, and at
    /// short N memory is no issue).
    /// </summary>
    public static int AutoLmHeadChunks(LlamaConfig config, long rows)
    {
        long paper = (config.VocabSize + config.HiddenSize - 1) / config.HiddenSize;
        long minRows = MinLmHeadChunkRows(config.VocabSize);
        long byRows = (rows + minRows - 1) / minRows;
        return (int)Math.Max(1, Math.Min(paper, byRows));
    }

    /// <summary>
    /// Fewest rows per auto LM-head chunk: 2048 up to V = 8192; for larger vocabularies the chunk GEMM stays large
    /// through its V columns, so the rows shrink to keep a chunk's logits at 2048 × 8192 floats (64 MiB), down to 256
    /// rows — with V = 32000 a logits chunk of 2048 rows alone would be 250 MiB.
    /// </summary>
    public static long MinLmHeadChunkRows(int vocabSize) => Math.Clamp(2048L * 8192 / Math.Max(1, vocabSize), 256, MinAutoChunkRows);

    /// <summary>MsT on both blocks with the auto rule, plus checkpointing if asked.</summary>
    public static MemoryPolicy MiniSequence(LlamaConfig config, long rows, bool checkpoint)
        => new() { MlpChunks = AutoMlpChunks(config, rows), LmHeadChunks = AutoLmHeadChunks(config, rows), Checkpoint = checkpoint };

    /// <summary>The named policies, fastest first (order measured by `miniseq bench memory`), each resolved for a
    /// config and a number of token rows.</summary>
    public static IReadOnlyList<(string Name, Func<LlamaConfig, long, MemoryPolicy> Make)> Standard { get; } =
    [
        ("vanilla", (_, _) => Vanilla),
        ("mst", (c, rows) => MiniSequence(c, rows, checkpoint: false)),
        ("checkpoint+attn", (_, _) => new MemoryPolicy { Checkpoint = true, KeepAttention = true }),
        ("mst+checkpoint+attn", (c, rows) => MiniSequence(c, rows, checkpoint: true) with { KeepAttention = true }),
        ("checkpoint", (_, _) => new MemoryPolicy { Checkpoint = true }),
        ("mst+checkpoint", (c, rows) => MiniSequence(c, rows, checkpoint: true)),
        ("chunked", (c, rows) => Chunked(c, rows)),
        ("chunked+offload", (c, rows) => Chunked(c, rows) with { OffloadDirectory = DefaultOffloadDirectory }),
        ("chunked+bf16", (c, rows) => Chunked(c, rows) with { LayerInputDType = ActivationDType.BFloat16 }),
        ("chunked+bf16+offload", (c, rows) => Chunked(c, rows) with { LayerInputDType = ActivationDType.BFloat16, OffloadDirectory = DefaultOffloadDirectory }),
    ];

    /// <summary>Where the planner's offload policies put layer inputs unless told otherwise: the system temp directory
    /// (the file is unlinked as soon as it is created, so nothing is left behind).</summary>
    public static string DefaultOffloadDirectory => Path.GetTempPath();

    /// <summary>Positions per chunk of the auto sequence-chunked policy. Sequence chunking is the memory frontier: at the
    /// lengths that need it attention dominates the step, so small chunks cost little (measured in
    /// docs/benchmarks/memory.md) while the chunk's working set shrinks with them.</summary>
    public const int AutoSequenceChunk = 512;

    /// <summary>
    /// Sequence-chunked layers with mini-sequences inside each chunk: MLP sub-chunks of 512 rows and LM-head sub-chunks
    /// of <see cref="MinLmHeadChunkRows"/>/8 rows (256 at V = 8192: logits of 8 MiB), so that no chunk temporary
    /// outweighs the whole-sequence tensors (halving both cost ≈ 4 % of a step at N = 16K for ≈ 4 MiB).
    /// </summary>
    public static MemoryPolicy Chunked(LlamaConfig config, long rows, int? chunk = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        long headRows = Math.Max(64, MinLmHeadChunkRows(config.VocabSize) / 8);
        return new MemoryPolicy
        {
            MlpChunks = (int)Math.Max(1, (rows + 511) / 512),
            LmHeadChunks = (int)Math.Max(1, (rows + headRows - 1) / headRows),
            Checkpoint = true,
            SequenceChunk = chunk ?? AutoSequenceChunk,
        };
    }

    /// <summary>
    /// Parses a policy name — <c>vanilla</c>, <c>mst</c>, <c>checkpoint</c>, <c>mst+checkpoint</c>, <c>chunked</c> (auto
    /// chunks for <paramref name="rows"/>), or what <see cref="Describe"/> prints, e.g. <c>mst(mlp 4, lm off)+checkpoint</c>
    /// or <c>mst(mlp 1, lm 4)+chunked(2048)</c>. The layer-input storage (dtype, offload) is not part of the name.
    /// </summary>
    /// <exception cref="ArgumentException">Not a policy.</exception>
    public static MemoryPolicy Parse(string text, LlamaConfig config, long rows)
    {
        ArgumentNullException.ThrowIfNull(text);
        string t = text.Trim().ToLowerInvariant();
        if (t.Contains("checkpoint+attn", StringComparison.Ordinal))
        {
            // "checkpoint+attn", "mst+checkpoint+attn", "mst(mlp 4, lm 2)+checkpoint+attn+bf16": the policy without
            // "+attn", keeping the attention outputs.
            return Parse(t.Replace("checkpoint+attn", "checkpoint", StringComparison.Ordinal), config, rows) with { KeepAttention = true };
        }

        if (t.EndsWith("+bf16", StringComparison.Ordinal) && !t.Contains("chunked", StringComparison.Ordinal))
        {
            // Mixed precision's storage: "checkpoint+bf16", "vanilla+bf16", "mst(mlp 4, lm 2)+bf16" …: the policy with
            // its saved activations (with checkpointing: its layer inputs) stored as bf16.
            return Parse(t[..^"+bf16".Length], config, rows) with { LayerInputDType = ActivationDType.BFloat16 };
        }

        foreach ((string name, Func<LlamaConfig, long, MemoryPolicy> make) in Standard)
        {
            if (t == name)
            {
                return make(config, rows);
            }
        }

        Match m = Described().Match(t);
        if (m.Success)
        {
            return new MemoryPolicy
            {
                MlpChunks = Chunks("mlp", m.Groups["mlp"].Value, config, rows, auto: AutoMlpChunks),
                LmHeadChunks = Chunks("lm", m.Groups["lm"].Value, config, rows, auto: AutoLmHeadChunks),
                Checkpoint = m.Groups["ckpt"].Success || m.Groups["seq"].Success,
                SequenceChunk = m.Groups["seq"].Success ? SequenceChunkValue(m.Groups["seq"].Value) : null,
                LayerInputDType = m.Groups["bf16"].Success ? ActivationDType.BFloat16 : ActivationDType.Float32,
            };
        }

        throw new ArgumentException($"'{text}' is not a memory policy: use vanilla, mst, checkpoint, mst+checkpoint, checkpoint+attn, mst+checkpoint+attn, chunked or e.g. mst(mlp 4, lm 2)+checkpoint, mst(mlp 1, lm 4)+chunked(2048).");
    }

    /// <summary>
    /// The policy of the CLI options <c>--mst-mlp off|auto|M</c>, <c>--mst-lm off|auto|M</c>, <c>--checkpoint off|on|attn</c>
    /// (attn: checkpointing that keeps each layer's attention output, <see cref="KeepAttention"/>),
    /// <c>--seq-chunk off|auto|S</c>, <c>--activation-dtype fp32|bf16</c> and <c>--offload off|disk|disk:PATH</c>
    /// (bf16 storage and offload are of the layer inputs of sequence-chunked layers: they imply <c>--seq-chunk auto</c>).
    /// </summary>
    public static MemoryPolicy FromOptions(string mlp, string lm, string checkpoint, LlamaConfig config, long rows, string seqChunk = "off", string activationDType = "fp32", string offload = "off")
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        ActivationDType dtype = ParseActivationDType(activationDType);
        string? directory = ParseOffload(offload);
        int? chunk = ParseSequenceChunk(seqChunk) ?? (dtype != ActivationDType.Float32 || directory is not null ? AutoSequenceChunk : null);
        bool keepAttention = checkpoint.Equals("attn", StringComparison.OrdinalIgnoreCase);
        if (chunk is not null && keepAttention)
        {
            throw new ArgumentException("--checkpoint attn keeps whole-sequence attention outputs per layer; sequence-chunked layers (--seq-chunk, --activation-dtype bf16, --offload) keep none: use one or the other.");
        }

        return new()
        {
            SequenceChunk = chunk,
            LayerInputDType = dtype,
            OffloadDirectory = directory,
            MlpChunks = Chunks("--mst-mlp", mlp, config, rows, AutoMlpChunks),
            LmHeadChunks = Chunks("--mst-lm", lm, config, rows, AutoLmHeadChunks),
            Checkpoint = checkpoint.ToLowerInvariant() switch
            {
                "on" or "true" or "attn" => true,
                "off" or "false" => false,
                _ => throw new ArgumentException($"--checkpoint must be on, off or attn (got '{checkpoint}')."),
            },
            KeepAttention = keepAttention,
        };
    }

    private static int? Chunks(string name, string value, LlamaConfig config, long rows, Func<LlamaConfig, long, int> auto)
    {
        ArgumentNullException.ThrowIfNull(value);
        return value.Trim().ToLowerInvariant() switch
        {
            "off" => null,
            "auto" => auto(config, rows),
            string v when int.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out int m) && m >= 1 => m,
            _ => throw new ArgumentException($"{name} must be off, auto or a chunk count ≥ 1 (got '{value}')."),
        };
    }

    /// <summary>The storage of <c>--activation-dtype fp32|bf16</c>.</summary>
    public static ActivationDType ParseActivationDType(string value)
    {
        ArgumentNullException.ThrowIfNull(value);
        return value.Trim().ToLowerInvariant() switch
        {
            "fp32" or "float32" => ActivationDType.Float32,
            "bf16" or "bfloat16" => ActivationDType.BFloat16,
            _ => throw new ArgumentException($"--activation-dtype must be fp32 or bf16 (got '{value}')."),
        };
    }

    /// <summary>The directory of <c>--offload off|disk|disk:PATH</c> (null: off; <c>disk</c>: <see cref="DefaultOffloadDirectory"/>).</summary>
    public static string? ParseOffload(string value)
    {
        ArgumentNullException.ThrowIfNull(value);
        string v = value.Trim();
        if (v.Equals("off", StringComparison.OrdinalIgnoreCase))
        {
            return null;
        }

        if (v.Equals("disk", StringComparison.OrdinalIgnoreCase))
        {
            return DefaultOffloadDirectory;
        }

        if (v.StartsWith("disk:", StringComparison.OrdinalIgnoreCase) && v.Length > 5)
        {
            return v[5..];
        }

        throw new ArgumentException($"--offload must be off, disk or disk:PATH (got '{value}').");
    }

    /// <summary>The positions per chunk of <c>--seq-chunk off|auto|S</c> (null: off).</summary>
    public static int? ParseSequenceChunk(string value)
    {
        ArgumentNullException.ThrowIfNull(value);
        return value.Trim().ToLowerInvariant() switch
        {
            "off" => null,
            "auto" => AutoSequenceChunk,
            string v => SequenceChunkValue(v),
        };
    }

    private static int SequenceChunkValue(string value)
        => int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out int s) && s >= 1
            ? s
            : throw new ArgumentException($"A sequence chunk must be off, auto or a number of positions ≥ 1 (got '{value}').");

    [GeneratedRegex(@"^mst\(mlp (?<mlp>\w+), lm (?<lm>\w+)\)(?:(?:(?<ckpt>\+checkpoint)|\+chunked\((?<seq>\d+)\))(?<bf16>\+bf16)?)?$")]
    private static partial Regex Described();

    /// <summary>Short name, e.g. "mst(mlp 16, lm 32)+checkpoint".</summary>
    public string Describe()
    {
        string mst = (MlpChunks, LmHeadChunks) switch
        {
            (null, null) => "vanilla",
            _ => $"mst(mlp {MlpChunks?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "off"}, lm {LmHeadChunks?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "off"})",
        };
        if (SequenceChunk is int chunk)
        {
            string mstPart = mst == "vanilla" ? "mst(mlp off, lm off)" : mst;
            string storage = (LayerInputDType == ActivationDType.BFloat16 ? "+bf16" : string.Empty) + (OffloadDirectory is null ? string.Empty : "+offload");
            return FormattableString.Invariant($"{mstPart}+chunked({chunk}){storage}");
        }

        string bf16 = LayerInputDType == ActivationDType.BFloat16 ? "+bf16" : string.Empty; // mixed precision
        string attn = KeepAttention ? "+attn" : string.Empty;
        return (Checkpoint ? (mst == "vanilla" ? "checkpoint" : mst + "+checkpoint") + attn : mst) + bf16;
    }
}
