// A Hugging Face LlamaForCausalLM training step in LibTorch (TorchSharp), fp32: RMSNorm, RoPE (rotate_half),
// GQA by repeating the kv heads, scaled_dot_product_attention(is_causal), SwiGLU MLP, tied or untied LM head, mean
// cross-entropy with ignore_index -100. Memory modes as in `miniseq bench step`: vanilla; checkpoint (per-layer
// activation checkpointing as a custom autograd function); mst+checkpoint (MsT: chunked MLP and chunked LM head +
// cross-entropy as custom autograd functions, plus checkpointing).
using MiniSeq.IO;
using MiniSeq.Model;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace MiniSeq.LibTorchBench;

/// <summary>How the MsT LM head forms its gradient.</summary>
internal enum LmHeadMode
{
    /// <summary>Gradient in forward (Liger; MiniSeq's default, LossOptions.LmHeadRecompute = false): logits once per chunk.</summary>
    GradInForward,

    /// <summary>Save only the input; backward recomputes each chunk's logits (CCE-style; MiniSeq's LmHeadRecompute = true).</summary>
    Recompute,
}

/// <summary>Memory policy of one run.</summary>
internal sealed record TorchPolicy(bool Checkpoint, int? MlpChunkRows, int? LmHeadChunkRows, LmHeadMode LmHead)
{
    /// <summary>The same modes and auto chunk sizes as MiniSeq (MemoryPolicy.AutoMlpChunks / AutoLmHeadChunks, rows per chunk = ⌈rows / M⌉).</summary>
    public static TorchPolicy For(string mode, LlamaConfig config, long rows, LmHeadMode lmHead, int? chunkRowsOverride = null)
    {
        int ChunkRows(int chunks) => chunkRowsOverride ?? (int)((rows + chunks - 1) / chunks);
        return mode switch
        {
            "vanilla" => new TorchPolicy(false, null, null, lmHead),
            "checkpoint" => new TorchPolicy(true, null, null, lmHead),
            "mst" => new TorchPolicy(false, ChunkRows(MemoryPolicy.AutoMlpChunks(config, rows)), ChunkRows(MemoryPolicy.AutoLmHeadChunks(config, rows)), lmHead),
            "mst+checkpoint" => new TorchPolicy(true, ChunkRows(MemoryPolicy.AutoMlpChunks(config, rows)), ChunkRows(MemoryPolicy.AutoLmHeadChunks(config, rows)), lmHead),
            _ => throw new ArgumentException($"unknown mode '{mode}' (vanilla, checkpoint, mst, mst+checkpoint)"),
        };
    }
}

/// <summary>One decoder layer's parameters.</summary>
internal sealed record LayerWeights(Tensor AttnNorm, Tensor Wq, Tensor Wk, Tensor Wv, Tensor Wo, Tensor MlpNorm, Tensor Wg, Tensor Wu, Tensor Wd)
{
    public Tensor[] All => [AttnNorm, Wq, Wk, Wv, Wo, MlpNorm, Wg, Wu, Wd];

    public static LayerWeights From(IReadOnlyList<Tensor> t) => new(t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7], t[8]);
}

/// <summary>The model: parameters as LibTorch leaf tensors, loaded from a MiniSeq / HF model directory.</summary>
internal sealed class TorchLlama
{
    public LlamaConfig Config { get; }
    public Tensor Embed { get; }
    public Tensor FinalNorm { get; }
    public Tensor LmHead { get; }
    public IReadOnlyList<LayerWeights> Layers { get; }
    public IReadOnlyList<TorchSharp.Modules.Parameter> Parameters { get; }

    private TorchLlama(LlamaConfig config, Tensor embed, Tensor finalNorm, Tensor lmHead, IReadOnlyList<LayerWeights> layers, IReadOnlyList<TorchSharp.Modules.Parameter> parameters)
    {
        Config = config;
        Embed = embed;
        FinalNorm = finalNorm;
        LmHead = lmHead;
        Layers = layers;
        Parameters = parameters;
    }

    /// <summary>Reads config.json + model.safetensors (F32/BF16/F16, converted to fp32 by MiniSeq's reader).</summary>
    public static TorchLlama Load(string directory)
    {
        LlamaConfig config = ModelDirectory.ReadConfig(directory);
        using SafeTensorsReader reader = SafeTensorsReader.Open(Path.Combine(directory, ModelDirectory.WeightsFileName));
        var parameters = new List<TorchSharp.Modules.Parameter>();
        TorchSharp.Modules.Parameter P(string name)
        {
            SafeTensorInfo info = reader.GetTensor(name);
            float[] data = reader.ReadFloat32(name);
            long[] shape = info.Shape.Select(s => (long)s).ToArray();
            var p = new TorchSharp.Modules.Parameter(tensor(data, shape, ScalarType.Float32), requires_grad: true);
            parameters.Add(p);
            return p;
        }

        Tensor embed = P(HfTensorNames.Embedding);
        var layers = new List<LayerWeights>();
        for (int l = 0; l < config.NumHiddenLayers; l++)
        {
            layers.Add(new LayerWeights(P(HfTensorNames.AttentionNorm(l)), P(HfTensorNames.QueryProjection(l)), P(HfTensorNames.KeyProjection(l)),
                P(HfTensorNames.ValueProjection(l)), P(HfTensorNames.OutputProjection(l)), P(HfTensorNames.MlpNorm(l)),
                P(HfTensorNames.GateProjection(l)), P(HfTensorNames.UpProjection(l)), P(HfTensorNames.DownProjection(l))));
        }

        Tensor norm = P(HfTensorNames.FinalNorm);
        Tensor head = config.TieWordEmbeddings && !reader.Contains(HfTensorNames.LmHead) ? embed : P(HfTensorNames.LmHead);
        if (config.TieWordEmbeddings && !ReferenceEquals(head, embed))
        {
            // A tied model that still ships lm_head.weight: HF ties it to the embedding anyway.
            parameters.Remove((TorchSharp.Modules.Parameter)head);
            head = embed;
        }

        return new TorchLlama(config, embed, norm, head, layers, parameters);
    }

    /// <summary>HF RoPE tables (float32, as LlamaRotaryEmbedding): cos, sin of shape [T, D].</summary>
    public (Tensor Cos, Tensor Sin) RopeTables(int seqLen)
    {
        int d = Config.HeadDim;
        using var scope = NewDisposeScope();
        Tensor invFreq = 1.0f / pow(Config.RopeTheta, arange(0, d, 2, ScalarType.Int64).to_type(ScalarType.Float32) / d);
        Tensor freqs = arange(seqLen, ScalarType.Int64).to_type(ScalarType.Float32).unsqueeze(1) * invFreq.unsqueeze(0);
        Tensor emb = cat([freqs, freqs], -1);
        return (scope.MoveToOuter(emb.cos()), scope.MoveToOuter(emb.sin()));
    }

    /// <summary>Mean cross-entropy of one forward pass (autograd graph built if grad mode is on).</summary>
    public Tensor Loss(Tensor ids, Tensor labels, Tensor cos, Tensor sin, TorchPolicy policy)
    {
        Tensor x = Embed.index_select(0, ids.flatten()).view(ids.shape[0], ids.shape[1], Config.HiddenSize);
        foreach (LayerWeights w in Layers)
        {
            using var scope = NewDisposeScope();
            Tensor y = policy.Checkpoint && is_grad_enabled()
                ? CheckpointLayer.apply([x, cos, sin, .. w.All, new LayerArgs(this, policy.MlpChunkRows)])
                : Layer(x, cos, sin, w, policy.MlpChunkRows);
            x = scope.MoveToOuter(y);
        }

        using var tail = NewDisposeScope();
        Tensor h = RmsNorm(x, FinalNorm, Config.RmsNormEps);
        Tensor loss;
        if (policy.LmHeadChunkRows is int rows)
        {
            loss = policy.LmHead == LmHeadMode.GradInForward
                ? ChunkedLmHeadGradInForward.apply(h, LmHead, labels, rows)
                : ChunkedLmHeadRecompute.apply(h, LmHead, labels, rows);
        }
        else
        {
            Tensor logits = F.linear(h, LmHead);
            loss = F.cross_entropy(logits.view(-1, Config.VocabSize), labels.flatten(), ignore_index: -100);
        }

        return tail.MoveToOuter(loss);
    }

    public static Tensor RmsNorm(Tensor x, Tensor w, double eps)
    {
        Tensor variance = x.pow(2).mean([-1L], keepdim: true);
        return w * (x * rsqrt(variance + eps));
    }

    private static Tensor RotateHalf(Tensor x)
    {
        long h = x.shape[^1] / 2;
        return cat([-x.narrow(-1, h, h), x.narrow(-1, 0, h)], -1);
    }

    /// <summary>One decoder layer: x + attn(norm(x)), then + mlp(norm(·)) (chunked MsT MLP if <paramref name="mlpChunkRows"/>).</summary>
    public Tensor Layer(Tensor x, Tensor cos, Tensor sin, LayerWeights w, int? mlpChunkRows)
    {
        LlamaConfig c = Config;
        long b = x.shape[0], t = x.shape[1];
        int heads = c.NumAttentionHeads, kvHeads = c.NumKeyValueHeads, d = c.HeadDim, rep = heads / kvHeads;
        Tensor h = RmsNorm(x, w.AttnNorm, c.RmsNormEps);
        Tensor q = F.linear(h, w.Wq).view(b, t, heads, d).transpose(1, 2);
        Tensor k = F.linear(h, w.Wk).view(b, t, kvHeads, d).transpose(1, 2);
        Tensor v = F.linear(h, w.Wv).view(b, t, kvHeads, d).transpose(1, 2);
        q = q * cos + RotateHalf(q) * sin;
        k = k * cos + RotateHalf(k) * sin;
        if (rep > 1)
        {
            // repeat_kv: TorchSharp's scaled_dot_product_attention has no GQA flag.
            k = k.unsqueeze(2).expand(b, kvHeads, rep, t, d).reshape(b, heads, t, d);
            v = v.unsqueeze(2).expand(b, kvHeads, rep, t, d).reshape(b, heads, t, d);
        }

        Tensor o = F.scaled_dot_product_attention(q, k, v, is_casual: true);
        x = x + F.linear(o.transpose(1, 2).reshape(b, t, heads * d), w.Wo);
        h = RmsNorm(x, w.MlpNorm, c.RmsNormEps);
        Tensor y = mlpChunkRows is int rows
            ? ChunkedMlp.apply(h, w.Wg, w.Wu, w.Wd, rows)
            : F.linear(F.silu(F.linear(h, w.Wg)) * F.linear(h, w.Wu), w.Wd);
        return x + y;
    }
}

/// <summary>Non-tensor arguments of <see cref="CheckpointLayer"/>.</summary>
internal sealed record LayerArgs(TorchLlama Model, int? MlpChunkRows);

/// <summary>
/// Per-layer activation checkpointing (TorchSharp has no checkpoint API): forward runs under no_grad (Function.apply
/// does that) and saves only the layer input (and the weights / RoPE tables, which exist anyway); backward recomputes
/// the layer with grad enabled and backpropagates through it. Inputs: x, cos, sin, 9 layer weights, LayerArgs.
/// </summary>
internal sealed class CheckpointLayer : autograd.SingleTensorFunction<CheckpointLayer>
{
    public override string Name => "CheckpointLayer";

    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var x = (Tensor)vars[0];
        var cos = (Tensor)vars[1];
        var sin = (Tensor)vars[2];
        var w = LayerWeights.From(vars.Skip(3).Take(9).Cast<Tensor>().ToList());
        var args = (LayerArgs)vars[12];
        ctx.save_for_backward([x, cos, sin, .. w.All]);
        ctx.save_data("args", args);
        using var scope = NewDisposeScope();
        return scope.MoveToOuter(args.Model.Layer(x, cos, sin, w, args.MlpChunkRows));
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor gradOutput)
    {
        var args = (LayerArgs)ctx.get_data("args");
        List<Tensor> saved = ctx.get_saved_variables();
        using var scope = NewDisposeScope();
        List<Tensor> grads;
        using (enable_grad())
        {
            Tensor x = saved[0].detach().requires_grad_(true);
            Tensor[] w = saved.Skip(3).Select(t => t.detach().requires_grad_(true)).ToArray();
            Tensor y = args.Model.Layer(x, saved[1], saved[2], LayerWeights.From(w), args.MlpChunkRows);
            grads = [.. autograd.grad([y], [x, .. w], [gradOutput])];
        }

        var result = new List<Tensor> { grads[0], null!, null! };
        result.AddRange(grads.Skip(1));
        result.Add(null!);
        foreach (Tensor g in grads)
        {
            scope.MoveToOuter(g);
        }

        return result;
    }
}

/// <summary>
/// MsT MLP: down(silu(h Wg^T) * (h Wu^T)) over chunks of token rows; saves only h (and the weights); backward
/// recomputes each chunk. Inputs: h, Wg, Wu, Wd, chunk rows.
/// </summary>
internal sealed class ChunkedMlp : autograd.SingleTensorFunction<ChunkedMlp>
{
    public override string Name => "ChunkedMlp";

    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var (h, wg, wu, wd) = ((Tensor)vars[0], (Tensor)vars[1], (Tensor)vars[2], (Tensor)vars[3]);
        int chunk = (int)vars[4];
        ctx.save_for_backward([h, wg, wu, wd]);
        ctx.save_data("chunk", chunk);
        long[] shape = h.shape;
        Tensor h2 = h.reshape(-1, shape[^1]);
        long n = h2.shape[0];
        Tensor output = empty(n, wd.shape[0], dtype: h.dtype);
        for (long s = 0; s < n; s += chunk)
        {
            using var scope = NewDisposeScope();
            long len = Math.Min(chunk, n - s);
            Tensor hc = h2.narrow(0, s, len);
            output.narrow(0, s, len).copy_(F.linear(F.silu(F.linear(hc, wg)) * F.linear(hc, wu), wd));
        }

        return output.view([.. shape[..^1], wd.shape[0]]);
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor dy)
    {
        List<Tensor> saved = ctx.get_saved_variables();
        var (h, wg, wu, wd) = (saved[0], saved[1], saved[2], saved[3]);
        int chunk = (int)ctx.get_data("chunk");
        long[] shape = h.shape;
        Tensor h2 = h.reshape(-1, shape[^1]);
        Tensor dy2 = dy.reshape(-1, dy.shape[^1]);
        long n = h2.shape[0];
        Tensor dh = empty_like(h2);
        Tensor dwg = zeros_like(wg), dwu = zeros_like(wu), dwd = zeros_like(wd);
        for (long s = 0; s < n; s += chunk)
        {
            using var scope = NewDisposeScope();
            long len = Math.Min(chunk, n - s);
            Tensor hc = h2.narrow(0, s, len), dyc = dy2.narrow(0, s, len);
            Tensor g = F.linear(hc, wg), u = F.linear(hc, wu);
            Tensor sg = sigmoid(g);
            Tensor a = g * sg;
            dwd.addmm_(dyc.t(), a * u);
            Tensor dau = dyc.matmul(wd);
            Tensor du = dau * a;
            Tensor dg = dau * u * (sg * (1 + g * (1 - sg)));
            Tensor dhc = dh.narrow(0, s, len);
            dhc.copy_(dg.matmul(wg));
            dhc.addmm_(du, wu);
            dwg.addmm_(dg.t(), hc);
            dwu.addmm_(du.t(), hc);
        }

        return [dh.view(shape), dwg, dwu, dwd, null!];
    }
}

/// <summary>Shared pieces of the chunked LM head + cross-entropy (mean over labels != -100).</summary>
internal static class LmHeadChunks
{
    /// <summary>Loss sum (float64) and, if <paramref name="dh"/> is given, the unscaled gradient of one chunk.</summary>
    public static double Chunk(Tensor hc, Tensor w, Tensor lc, Tensor? dh, Tensor? dw)
    {
        using var scope = NewDisposeScope();
        Tensor logits = F.linear(hc, w);
        Tensor valid = lc.ne(-100);
        Tensor safe = lc.clamp_min(0);
        Tensor lse = logits.logsumexp(-1);
        Tensor picked = logits.gather(1, safe.unsqueeze(1)).squeeze(1);
        double total = ((lse - picked) * valid).sum(ScalarType.Float64).item<double>();
        if (dh is not null && dw is not null)
        {
            // dlogits = softmax - onehot on valid rows, 0 on ignored rows (in place on the logits)
            Tensor dl = logits.sub_(lse.unsqueeze(1)).exp_();
            dl.scatter_add_(1, safe.unsqueeze(1), full([safe.shape[0], 1], -1.0f));
            dl.mul_(valid.unsqueeze(1).to_type(dl.dtype));
            dh.copy_(dl.matmul(w));
            dw.addmm_(dl.t(), hc);
        }

        return total;
    }

    public static int ValidCount(Tensor labels) => (int)labels.ne(-100).sum().item<long>();
}

/// <summary>
/// MsT LM head + cross-entropy, gradient in forward (as MiniSeq's default policy and Liger): per chunk of token rows,
/// logits → loss → dlogits → dH, dW; logits exist for one chunk at a time; backward scales the saved dH, dW.
/// Inputs: h, W, labels, chunk rows.
/// </summary>
internal sealed class ChunkedLmHeadGradInForward : autograd.SingleTensorFunction<ChunkedLmHeadGradInForward>
{
    public override string Name => "ChunkedLmHeadGradInForward";

    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var (h, w, labels) = ((Tensor)vars[0], (Tensor)vars[1], (Tensor)vars[2]);
        int chunk = (int)vars[3];
        Tensor h2 = h.reshape(-1, h.shape[^1]);
        Tensor lab = labels.flatten();
        long n = h2.shape[0];
        Tensor dh = empty_like(h2), dw = zeros_like(w);
        double total = 0;
        for (long s = 0; s < n; s += chunk)
        {
            long len = Math.Min(chunk, n - s);
            total += LmHeadChunks.Chunk(h2.narrow(0, s, len), w, lab.narrow(0, s, len), dh.narrow(0, s, len), dw);
        }

        int count = Math.Max(1, LmHeadChunks.ValidCount(lab));
        dh.div_(count);
        dw.div_(count);
        ctx.save_for_backward([dh, dw]);
        ctx.save_data("shape", h.shape);
        return tensor((float)(total / count));
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor g)
    {
        List<Tensor> saved = ctx.get_saved_variables();
        return [(saved[0] * g).view((long[])ctx.get_data("shape")), saved[1] * g, null!, null!];
    }
}

/// <summary>
/// MsT LM head + cross-entropy that saves only its input (and W): forward is loss-only per chunk; backward recomputes
/// each chunk's logits for the gradient (CCE-style; MiniSeq's LossOptions.LmHeadRecompute = true).
/// Inputs: h, W, labels, chunk rows.
/// </summary>
internal sealed class ChunkedLmHeadRecompute : autograd.SingleTensorFunction<ChunkedLmHeadRecompute>
{
    public override string Name => "ChunkedLmHeadRecompute";

    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var (h, w, labels) = ((Tensor)vars[0], (Tensor)vars[1], (Tensor)vars[2]);
        int chunk = (int)vars[3];
        Tensor h2 = h.reshape(-1, h.shape[^1]);
        Tensor lab = labels.flatten();
        long n = h2.shape[0];
        double total = 0;
        for (long s = 0; s < n; s += chunk)
        {
            long len = Math.Min(chunk, n - s);
            total += LmHeadChunks.Chunk(h2.narrow(0, s, len), w, lab.narrow(0, s, len), null, null);
        }

        int count = Math.Max(1, LmHeadChunks.ValidCount(lab));
        ctx.save_for_backward([h, w, labels]);
        ctx.save_data("chunk", chunk);
        ctx.save_data("count", count);
        return tensor((float)(total / count));
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor g)
    {
        List<Tensor> saved = ctx.get_saved_variables();
        var (h, w, labels) = (saved[0], saved[1], saved[2]);
        int chunk = (int)ctx.get_data("chunk"), count = (int)ctx.get_data("count");
        Tensor h2 = h.reshape(-1, h.shape[^1]);
        Tensor lab = labels.flatten();
        long n = h2.shape[0];
        Tensor dh = empty_like(h2), dw = zeros_like(w);
        for (long s = 0; s < n; s += chunk)
        {
            long len = Math.Min(chunk, n - s);
            LmHeadChunks.Chunk(h2.narrow(0, s, len), w, lab.narrow(0, s, len), dh.narrow(0, s, len), dw);
        }

        Tensor scale = g / count;
        dh.mul_(scale);
        dw.mul_(scale);
        return [dh.view(h.shape), dw, null!, null!];
    }
}
