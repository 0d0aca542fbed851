// Incremental decoding with a KV cache. One Step runs one token at the next position through every layer with the
// same ops as LlamaPass (Linear projections with Qwen2's biases, Qwen3's per-head q/k RMSNorm, RoPE from the same
// float32 table, SwiGLU MLP, final norm, LM head), appends that position's key and value rows to the cache, and
// attends its query over the cached keys (causal, Mistral's sliding window: position i sees keys i − W < j ≤ i).
// Prefill of 16 tokens or more runs them in blocks of up to 512 positions, each through every layer with the training
// kernels (GEMMs over the block's rows, flash attention of its queries over every cached position), writing keys and
// values straight into the cache — a 4,656-token prompt took 50 s token by token, ≈ 100× longer; the same after earlier
// positions (a chat's next turn) as from an empty cache. Shorter prompts go through Step. Either way the logits of
// every position equal the full forward's (LlamaPass.ForwardLogits) up to float rounding.
using MiniSeq.Kernels;
using MiniSeq.Model;
using MiniSeq.Tensors;

namespace MiniSeq.Generation;

/// <summary>Runs a model one token at a time over a <see cref="KvCache"/>.</summary>
public sealed unsafe class Generator : IDisposable
{
    private readonly LlamaModel _model;
    private readonly RopeTable _rope;
    private readonly NativeBuffer _work;
    private readonly float* _h, _xn, _rstd, _q, _attn, _scores, _gate, _up;

    /// <summary>A generator for sequences of up to <paramref name="maxLength"/> tokens (prompt and new tokens).</summary>
    public Generator(LlamaModel model, int maxLength)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (model.Adapters is not null)
        {
            throw new InvalidOperationException("Generation runs on plain weights: merge the LoRA adapters first (LlamaModel.MergeAdapters; the CLI's generate --adapter does).");
        }

        if (model.Layout.Bf16Projections)
        {
            throw new InvalidOperationException("Generation runs on fp32 weights: load the model without bf16 projections.");
        }

        LlamaConfig cfg = model.Config;
        if (maxLength <= 0 || maxLength > cfg.MaxPositionEmbeddings)
        {
            throw new ArgumentOutOfRangeException(nameof(maxLength), $"{maxLength} tokens: the model takes 1 to max_position_embeddings = {cfg.MaxPositionEmbeddings}.");
        }

        _model = model;
        Cache = new KvCache(cfg, maxLength, model.Ledger);
        _rope = new RopeTable(cfg.HeadDim, cfg.RopeTheta, maxLength, model.Ledger, cfg.RopeScaling);
        int c = cfg.HiddenSize, hd = cfg.QueryDim, f = cfg.IntermediateSize;
        int rstd = Math.Max(cfg.NumAttentionHeads, 1);
        long[] sizes = [c, c, rstd, hd, hd, maxLength, f, f];
        _work = new NativeBuffer(sizes.Sum(), MemoryCategory.Scratch, model.Ledger, "generator");
        float* p = _work.Pointer;
        _h = p;
        _xn = _h + sizes[0];
        _rstd = _xn + sizes[1];
        _q = _rstd + sizes[2];
        _attn = _q + sizes[3];
        _scores = _attn + sizes[4];
        _gate = _scores + sizes[5];
        _up = _gate + sizes[6];
    }

    /// <summary>The cache of the positions run so far.</summary>
    public KvCache Cache { get; }

    /// <summary>The position of the next token (= tokens run so far).</summary>
    public int Position => Cache.Length;

    /// <summary>The model's vocabulary size (the length of a logits row).</summary>
    public int VocabSize => _model.Config.VocabSize;

    /// <summary>Starts a new sequence.</summary>
    public void Reset() => Cache.Reset();

    /// <summary>Runs the prompt (appending to the cache) and writes the logits after its last token.</summary>
    public void Prefill(ReadOnlySpan<int> prompt, Span<float> logits)
    {
        if (prompt.IsEmpty)
        {
            throw new ArgumentException("The prompt is empty.", nameof(prompt));
        }

        if (prompt.Length >= BatchedPrefillMinTokens)
        {
            PrefillBatched(prompt, logits);
            return;
        }

        foreach (int token in prompt)
        {
            Step(token, logits);
        }
    }

    private void CheckToken(int token, string parameter)
    {
        if ((uint)token >= (uint)_model.Config.VocabSize)
        {
            throw new ArgumentOutOfRangeException(parameter, $"token id {token} is outside the vocabulary [0, {_model.Config.VocabSize}).");
        }
    }

    private void CheckLogits(Span<float> logits)
    {
        if (logits.Length < _model.Config.VocabSize)
        {
            throw new ArgumentException($"logits holds {logits.Length} floats; {_model.Config.VocabSize} are needed.", nameof(logits));
        }
    }

    // Below this many tokens the one-token steps are as fast as allocating the block buffers.
    internal const int BatchedPrefillMinTokens = 16;

    /// <summary>Called after each block of a batched prefill with the prompt's tokens done so far and its length (null:
    /// no reports) — a long prompt's prefill takes a while.</summary>
    public Action<int, int>? PrefillProgress { get; set; }

    /// <summary>Positions per block of a batched prefill: bounds its buffers (rows × (2·hidden + 2·q + 2·intermediate +
    /// 2·heads) floats, ≈ 26 MiB for Qwen2.5-0.5B) whatever the prompt's length, with GEMMs still 512 rows tall.
    /// Settable for tests (block boundaries).</summary>
    internal int PrefillBlockRows { get; init; } = 512;

    /// <summary>
    /// The prompt in blocks of positions, each through every layer as the training pass runs a chunk: GEMMs over the
    /// block's rows, its keys and values written straight into the cache, flash attention of its queries over every
    /// cached position (<see cref="FlashAttention.ForwardQueries(float*, float*, float*, int, int, int, int, int, float*, float*, int, int*)"/>).
    /// The same from an empty cache or after earlier positions (a chat's next turn).
    /// </summary>
    private void PrefillBatched(ReadOnlySpan<int> prompt, Span<float> logits)
    {
        LlamaConfig cfg = _model.Config;
        if (Cache.Length + prompt.Length > Cache.MaxLength)
        {
            throw new InvalidOperationException($"The KV cache holds {Cache.MaxLength} positions; {Cache.Length} are used and the prompt has {prompt.Length} tokens.");
        }

        CheckLogits(logits);
        foreach (int token in prompt)
        {
            CheckToken(token, nameof(prompt)); // the embedding does not check ids; nothing is cached yet
        }

        int c = cfg.HiddenSize, hd = cfg.QueryDim, f = cfg.IntermediateSize, heads = cfg.NumAttentionHeads;
        int block = Math.Min(PrefillBlockRows, prompt.Length);
        long rstdFloats = (long)block * Math.Max(heads, 1);
        using var work = new NativeBuffer((2L * block * c) + (2L * block * hd) + (2L * block * f) + rstdFloats + ((long)block * heads), MemoryCategory.Scratch, _model.Ledger, "generator prefill");
        float* h = work.Pointer, xn = h + ((long)block * c), q = xn + ((long)block * c), attn = q + ((long)block * hd);
        float* gate = attn + ((long)block * hd), up = gate + ((long)block * f), rstd = up + ((long)block * f), lse = rstd + rstdFloats;
        int[] ids = prompt.ToArray();
        fixed (int* tokens = ids)
        {
            for (int b0 = 0; b0 < ids.Length; b0 += block)
            {
                int n = Math.Min(block, ids.Length - b0);
                Embedding.Forward(tokens + b0, n, W(_model.Layout.Embedding), c, h);
                ForwardLayers(h, n, Cache.Length, xn, rstd, q, attn, gate, up, lse);
                Cache.Advance(n);
                PrefillProgress?.Invoke(b0 + n, ids.Length);
                if (b0 + n == ids.Length)
                {
                    NextTokenLogits(h + ((long)(n - 1) * c), xn, rstd, logits);
                }
            }
        }
    }

    /// <summary>
    /// Rows h (n, hidden) at positions [pos, pos + n) through every layer, in place, their keys and values written into
    /// the cache at pos. Attention: flash attention of the n queries over the cached positions, or with
    /// <paramref name="lse"/> null (a step: n = 1, q = _q, attn = _attn) the one-query sum of <see cref="Attend"/>.
    /// </summary>
    private void ForwardLayers(float* h, int n, int pos, float* xn, float* rstd, float* q, float* attn, float* gate, float* up, float* lse)
    {
        LlamaConfig cfg = _model.Config;
        ParameterLayout layout = _model.Layout;
        int c = cfg.HiddenSize, hd = cfg.QueryDim, kvd = cfg.KeyValueDim, f = cfg.IntermediateSize;
        int heads = cfg.NumAttentionHeads, kvHeads = cfg.NumKeyValueHeads, d = cfg.HeadDim;
        float eps = (float)cfg.RmsNormEps;
        for (int l = 0; l < cfg.NumHiddenLayers; l++)
        {
            LayerSlots w = layout.Layers[l];
            float* kRows = Cache.Keys(l) + ((long)pos * kvd), vRows = Cache.Values(l) + ((long)pos * kvd);

            // xn1 = rmsnorm(h) ; q = xn1·Wqᵀ (+ bq) ; k = xn1·Wkᵀ (+ bk) ; v = xn1·Wvᵀ (+ bv), k and v straight into the cache
            RmsNorm.Forward(h, W(w.AttentionNorm), n, c, eps, xn, rstd);
            Linear.Forward(xn, n, Projection(w.Query, c, hd, w.QueryBias), q);
            Linear.Forward(xn, n, Projection(w.Key, c, kvd, w.KeyBias), kRows);
            Linear.Forward(xn, n, Projection(w.Value, c, kvd, w.ValueBias), vRows);
            if (w.QueryNorm is { } qNorm && w.KeyNorm is { } kNorm)
            {
                RmsNorm.Forward(q, W(qNorm), n * heads, d, eps, q, rstd);
                RmsNorm.Forward(kRows, W(kNorm), n * kvHeads, d, eps, kRows, rstd);
            }

            Rope.Forward(q, n, n, heads, _rope, pos);
            Rope.Forward(kRows, n, n, kvHeads, _rope, pos);
            if (lse == null)
            {
                Attend(l, pos);
            }
            else
            {
                FlashAttention.ForwardQueries(q, Cache.Keys(l), Cache.Values(l), pos, n, heads, kvHeads, d, attn, lse, cfg.SlidingWindow ?? 0, null);
            }

            // h = h + a·Woᵀ
            Linear.Forward(attn, n, Projection(w.Output, hd, c), h, accumulate: true);

            // h = h + (silu(xn2·Wgᵀ) * (xn2·Wuᵀ))·Wdᵀ with xn2 = rmsnorm(h)
            RmsNorm.Forward(h, W(w.MlpNorm), n, c, eps, xn, rstd);
            Linear.Forward(xn, n, Projection(w.Gate, c, f), gate);
            Linear.Forward(xn, n, Projection(w.Up, c, f), up);
            SwiGlu.Forward(gate, up, (long)n * f, gate);
            Linear.Forward(gate, n, Projection(w.Down, f, c), h, accumulate: true);
        }
    }

    /// <summary>logits (V floats) = LM head of rmsnorm(hRow), the next-token logits after the row's position.</summary>
    private void NextTokenLogits(float* hRow, float* xn, float* rstd, Span<float> logits)
    {
        LlamaConfig cfg = _model.Config;
        ParameterLayout layout = _model.Layout;
        RmsNorm.Forward(hRow, W(layout.FinalNorm), 1, cfg.HiddenSize, (float)cfg.RmsNormEps, xn, rstd);
        fixed (float* dst = logits)
        {
            Linear.Forward(xn, 1, Projection(layout.LmHead, cfg.HiddenSize, cfg.VocabSize), dst);
        }
    }

    /// <summary>Runs <paramref name="token"/> at <see cref="Position"/> and writes its next-token logits (V floats).</summary>
    public void Step(int token, Span<float> logits)
    {
        LlamaConfig cfg = _model.Config;
        CheckToken(token, nameof(token));
        CheckLogits(logits);
        int pos = Cache.Length;
        if (pos >= Cache.MaxLength)
        {
            throw new InvalidOperationException($"The generator was built for {Cache.MaxLength} tokens; all are used.");
        }

        int tok = token;
        Embedding.Forward(&tok, 1, W(_model.Layout.Embedding), cfg.HiddenSize, _h);
        ForwardLayers(_h, 1, pos, _xn, _rstd, _q, _attn, _gate, _up, lse: null);
        Cache.Advance();
        NextTokenLogits(_h, _xn, _rstd, logits);
    }

    /// <summary>
    /// Prefills <paramref name="prompt"/>, then yields up to <paramref name="maxNewTokens"/> tokens drawn by
    /// <paramref name="sampler"/>, stopping after a token in <paramref name="stopTokens"/> (which is yielded).
    /// </summary>
    public IEnumerable<int> Generate(int[] prompt, int maxNewTokens, Sampler sampler, IReadOnlyCollection<int>? stopTokens = null)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        ArgumentNullException.ThrowIfNull(sampler);
        ArgumentOutOfRangeException.ThrowIfNegative(maxNewTokens);
        if (prompt.Length + maxNewTokens > Cache.MaxLength + 1)
        {
            throw new ArgumentException($"{prompt.Length} prompt tokens + {maxNewTokens} new tokens do not fit the generator's {Cache.MaxLength} positions.");
        }

        return Run(prompt, maxNewTokens, sampler, stopTokens);
    }

    private IEnumerable<int> Run(int[] prompt, int maxNewTokens, Sampler sampler, IReadOnlyCollection<int>? stopTokens)
    {
        var logits = new float[VocabSize];
        Reset();
        Prefill(prompt, logits);
        for (int i = 0; i < maxNewTokens; i++)
        {
            int next = sampler.Sample(logits);
            yield return next;
            if (stopTokens?.Contains(next) == true || i == maxNewTokens - 1)
            {
                yield break;
            }

            Step(next, logits);
        }
    }

    /// <summary>_attn (H·D) = softmax(q·Kᵀ/√D)·V over the cached positions the query at <paramref name="pos"/> sees.</summary>
    private void Attend(int layer, int pos)
    {
        LlamaConfig cfg = _model.Config;
        int d = cfg.HeadDim, heads = cfg.NumAttentionHeads, kvHeads = cfg.NumKeyValueHeads, kvd = cfg.KeyValueDim;
        int group = heads / kvHeads;
        int window = cfg.SlidingWindow ?? 0;
        int first = window > 0 ? Math.Max(0, pos - window + 1) : 0;
        float scale = 1f / MathF.Sqrt(d);
        float* keys = Cache.Keys(layer), values = Cache.Values(layer);
        for (int h = 0; h < heads; h++)
        {
            int g = h / group;
            float* q = _q + ((long)h * d);
            float max = float.NegativeInfinity;
            for (int j = first; j <= pos; j++)
            {
                float* k = keys + ((long)j * kvd) + ((long)g * d);
                float s = 0;
                for (int e = 0; e < d; e++)
                {
                    s += q[e] * k[e];
                }

                s *= scale;
                _scores[j] = s;
                max = Math.Max(max, s);
            }

            double sum = 0;
            for (int j = first; j <= pos; j++)
            {
                float p = MathF.Exp(_scores[j] - max);
                _scores[j] = p;
                sum += p;
            }

            float* o = _attn + ((long)h * d);
            new Span<float>(o, d).Clear();
            float inv = (float)(1.0 / sum);
            for (int j = first; j <= pos; j++)
            {
                float p = _scores[j] * inv;
                float* v = values + ((long)j * kvd) + ((long)g * d);
                for (int e = 0; e < d; e++)
                {
                    o[e] += p * v[e];
                }
            }
        }
    }

    private float* W(ArenaSlot slot) => _model.Parameters[slot].Pointer;

    private LinearWeights Projection(ArenaSlot weight, int inFeatures, int outFeatures, ArenaSlot? bias = null)
        => new(W(weight), inFeatures, outFeatures, null, bias is { } b ? W(b) : null);

    /// <summary>Frees the cache and the work buffers.</summary>
    public void Dispose()
    {
        Cache.Dispose();
        _rope.Dispose();
        _work.Dispose();
    }
}
