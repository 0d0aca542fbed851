using MiniSeq.Generation;
using MiniSeq.Kernels;
using MiniSeq.Model;
using MiniSeq.Tests.Helpers;

namespace MiniSeq.Tests.Generation;

/// <summary>KV-cache decoding equals the full forward pass; greedy and seeded sampling behave.</summary>
public sealed unsafe class GeneratorTests
{
    private const double Tolerance = 1e-5;

    public static TheoryData<string> Configs => ["tiny", "mha", "mqa", "qwen2_bias", "qwen3_qk_norm", "mistral_window", "llama3_scaling"];

    private static LlamaConfig Config(string name) => name switch
    {
        "tiny" => ModelPresets.Tiny,
        "mha" => ModelPresets.Tiny with { NumKeyValueHeads = 4 },
        "mqa" => ModelPresets.Tiny with { NumKeyValueHeads = 1 },
        "qwen2_bias" => ModelPresets.Tiny with { ModelType = LlamaConfig.Qwen2, TieWordEmbeddings = true },
        "qwen3_qk_norm" => ModelPresets.Tiny with { ModelType = LlamaConfig.Qwen3, HeadDimOverride = 24 },
        "mistral_window" => ModelPresets.Tiny with { ModelType = LlamaConfig.Mistral, SlidingWindow = 5 },
        "llama3_scaling" => ModelPresets.Tiny with { RopeTheta = 500000, RopeScaling = new RopeScaling(RopeScaling.Llama3, 8, 1, 4, 16) },
        _ => throw new ArgumentException(name),
    };

    /// <summary>A random model whose norm weights and biases are random too (so q/k norms and biases matter).</summary>
    private static LlamaModel RandomModel(string name, ulong seed = 7)
    {
        var model = new LlamaModel(Config(name));
        model.InitializeRandom(seed);
        var rng = new DeterministicRandom(seed + 100);
        foreach (ParameterInfo p in model.Layout.Tensors)
        {
            Span<float> data = model.Parameters[p.Slot].Span;
            if (p.Kind == ParameterKind.Norm)
            {
                for (int i = 0; i < data.Length; i++)
                {
                    data[i] = 1f + (0.3f * (float)((rng.NextDouble() * 2) - 1));
                }
            }
            else if (p.Kind == ParameterKind.Bias)
            {
                rng.FillNormal(data, 0.1f);
            }
            else
            {
                // Larger than the HF init so attention is not uniform and the logits spread.
                for (int i = 0; i < data.Length; i++)
                {
                    data[i] *= 5f;
                }
            }
        }

        return model;
    }

    private static int[] RandomTokens(int count, int vocab, ulong seed)
    {
        var rng = new DeterministicRandom(seed);
        return Enumerable.Range(0, count).Select(_ => rng.NextInt(vocab)).ToArray();
    }

    private static float[] FullLogits(LlamaModel model, int[] tokens)
    {
        int v = model.Config.VocabSize;
        var logits = new float[tokens.Length * v];
        using var pass = new LlamaPass(model, new PassPlan(model.Config, 1, tokens.Length, MemoryPolicy.Vanilla, training: false));
        pass.ForwardLogits(tokens, Enumerable.Range(0, tokens.Length).ToArray(), logits);
        return logits;
    }

    [Theory]
    [MemberData(nameof(Configs))]
    public void Decode_step_logits_equal_the_full_forward_at_every_position(string name)
    {
        using LlamaModel model = RandomModel(name);
        int v = model.Config.VocabSize;
        int[] tokens = RandomTokens(19, v, 11);
        float[] expected = FullLogits(model, tokens);
        using var generator = new Generator(model, tokens.Length);
        var logits = new float[v];
        for (int t = 0; t < tokens.Length; t++)
        {
            generator.Step(tokens[t], logits);
            Compare.Close(logits, expected.AsSpan(t * v, v), Tolerance, $"{name} position {t}");
        }

        Assert.Equal(tokens.Length, generator.Cache.Length);
        Assert.Equal(2L * model.Config.NumHiddenLayers * tokens.Length * model.Config.KeyValueDim * sizeof(float), generator.Cache.Bytes);
    }

    [Theory]
    [MemberData(nameof(Configs))]
    public void Batched_prefill_fills_the_cache_as_steps_do_and_decoding_goes_on_from_it(string name)
        => CheckBatchedPrefill(name, earlier: 0, prompt: 37, blockRows: 512);

    /// <summary>A chat's next turn: 5 positions already cached (stepped), then 30 prompt tokens batched in blocks of 7
    /// (4 full blocks and a partial one); Mistral's window (5) makes blocks see only part of the cache.</summary>
    [Theory]
    [MemberData(nameof(Configs))]
    public void Batched_prefill_after_earlier_positions_and_across_blocks_equals_steps(string name)
        => CheckBatchedPrefill(name, earlier: 5, prompt: 30, blockRows: 7);

    /// <summary>Prefills <paramref name="earlier"/> tokens (fewer than BatchedPrefillMinTokens: stepped), then
    /// <paramref name="prompt"/> batched in blocks of <paramref name="blockRows"/>, then decodes 4: the cache equals the
    /// one-token steps' keys and values, the prompt's last logits and every decoded position equal the full forward.</summary>
    private static void CheckBatchedPrefill(string name, int earlier, int prompt, int blockRows)
    {
        Assert.True(earlier < Generator.BatchedPrefillMinTokens && prompt >= Generator.BatchedPrefillMinTokens);
        using LlamaModel model = RandomModel(name);
        LlamaConfig cfg = model.Config;
        int v = cfg.VocabSize;
        int filled = earlier + prompt;
        int[] tokens = RandomTokens(filled + 4, v, 12);
        float[] expected = FullLogits(model, tokens);

        using var batched = new Generator(model, tokens.Length) { PrefillBlockRows = blockRows };
        using var stepped = new Generator(model, tokens.Length);
        var logits = new float[v];
        var reference = new float[v];
        if (earlier > 0)
        {
            batched.Prefill(tokens.AsSpan(0, earlier), logits);
        }

        batched.Prefill(tokens.AsSpan(earlier, prompt), logits);
        foreach (int token in tokens.AsSpan(0, filled))
        {
            stepped.Step(token, reference);
        }

        Assert.Equal(filled, batched.Cache.Length);
        Compare.Close(logits, expected.AsSpan((filled - 1) * v, v), Tolerance, $"{name} prefill logits");
        long rows = (long)filled * batched.Cache.Width;
        for (int layer = 0; layer < cfg.NumHiddenLayers; layer++)
        {
            Compare.Close(new ReadOnlySpan<float>(batched.Cache.Keys(layer), (int)rows), new ReadOnlySpan<float>(stepped.Cache.Keys(layer), (int)rows), Tolerance, $"{name} layer {layer} keys");
            Compare.Close(new ReadOnlySpan<float>(batched.Cache.Values(layer), (int)rows), new ReadOnlySpan<float>(stepped.Cache.Values(layer), (int)rows), Tolerance, $"{name} layer {layer} values");
        }

        for (int t = filled; t < tokens.Length; t++)
        {
            batched.Step(tokens[t], logits);
            Compare.Close(logits, expected.AsSpan(t * v, v), Tolerance, $"{name} position {t} after a batched prefill");
        }
    }

    [Fact]
    public void Batched_prefill_reports_each_block()
    {
        using LlamaModel model = RandomModel("tiny");
        int v = model.Config.VocabSize;
        var logits = new float[v];
        var reports = new List<(int Done, int Total)>();
        using var generator = new Generator(model, 40) { PrefillBlockRows = 7, PrefillProgress = (done, total) => reports.Add((done, total)) };
        generator.Prefill(RandomTokens(5, v, 19), logits); // stepped: no reports
        generator.Prefill(RandomTokens(30, v, 20), logits);
        Assert.Equal([(7, 30), (14, 30), (21, 30), (28, 30), (30, 30)], reports);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(20)] // after earlier positions: they stay cached
    public void Batched_prefill_refuses_what_steps_refuse(int cached)
    {
        using LlamaModel model = RandomModel("tiny");
        int v = model.Config.VocabSize;
        var logits = new float[v];
        using var generator = new Generator(model, cached + 20);
        if (cached > 0)
        {
            generator.Prefill(RandomTokens(cached, v, 16), logits);
        }

        int[] tooLong = RandomTokens(21, v, 13);
        Assert.Throws<InvalidOperationException>(() => generator.Prefill(tooLong, logits));
        int[] badToken = RandomTokens(20, v, 14);
        badToken[7] = v;
        badToken[19] = -1;
        Assert.Throws<ArgumentOutOfRangeException>(() => generator.Prefill(badToken, logits));
        Assert.Equal(cached, generator.Cache.Length);
    }

    [Theory]
    [InlineData("tiny")]
    [InlineData("mistral_window")]
    public void Greedy_generation_equals_iterated_argmax_of_full_forward_passes(string name)
    {
        using LlamaModel model = RandomModel(name);
        int v = model.Config.VocabSize;
        int[] prompt = RandomTokens(4, v, 3);
        const int NewTokens = 12;
        using var generator = new Generator(model, prompt.Length + NewTokens);
        int[] generated = generator.Generate(prompt, NewTokens, new Sampler(new SamplerOptions())).ToArray();

        var sequence = prompt.ToList();
        for (int i = 0; i < NewTokens; i++)
        {
            float[] logits = FullLogits(model, sequence.ToArray());
            sequence.Add(Sampler.ArgMax(logits.AsSpan((sequence.Count - 1) * v, v)));
        }

        Assert.Equal(sequence.Skip(prompt.Length), generated);
        Assert.True(generated.Distinct().Count() > 1, "a degenerate test: one token repeated");
    }

    [Fact]
    public void Sampling_is_reproducible_and_top_k_1_is_greedy()
    {
        using LlamaModel model = RandomModel("tiny");
        int[] prompt = [1, 2, 3];
        using var generator = new Generator(model, 32);
        var options = new SamplerOptions { Temperature = 1.5f, TopK = 50, TopP = 0.9f, Seed = 42 };
        int[] a = generator.Generate(prompt, 20, new Sampler(options)).ToArray();
        int[] b = generator.Generate(prompt, 20, new Sampler(options)).ToArray();
        Assert.Equal(a, b);
        int[] c = generator.Generate(prompt, 20, new Sampler(options with { Seed = 43 })).ToArray();
        Assert.NotEqual(a, c);

        int[] greedy = generator.Generate(prompt, 20, new Sampler(new SamplerOptions())).ToArray();
        int[] topK1 = generator.Generate(prompt, 20, new Sampler(new SamplerOptions { Temperature = 2f, TopK = 1, Seed = 5 })).ToArray();
        Assert.Equal(greedy, topK1);
        int[] tinyP = generator.Generate(prompt, 20, new Sampler(new SamplerOptions { Temperature = 1f, TopP = 1e-6f, Seed = 9 })).ToArray();
        Assert.Equal(greedy, tinyP);
    }

    [Fact]
    public void Top_k_and_top_p_keep_the_hugging_face_sets()
    {
        // probabilities 0.5, 0.3, 0.15, 0.05 at T = 1
        float[] logits = [MathF.Log(0.15f), MathF.Log(0.5f), MathF.Log(0.05f), MathF.Log(0.3f)];
        HashSet<int> Seen(SamplerOptions o)
        {
            var sampler = new Sampler(o);
            return Enumerable.Range(0, 2000).Select(_ => sampler.Sample(logits)).ToHashSet();
        }

        Assert.Equal([1, 3], Seen(new SamplerOptions { Temperature = 1, TopK = 2 }).Order());
        Assert.Equal([1, 3], Seen(new SamplerOptions { Temperature = 1, TopP = 0.79f }).Order());     // 0.5 + 0.3 ≥ 0.79
        Assert.Equal([0, 1, 3], Seen(new SamplerOptions { Temperature = 1, TopP = 0.81f }).Order());
        Assert.Equal([0, 1, 2, 3], Seen(new SamplerOptions { Temperature = 1 }).Order());
        Assert.Equal([1], Seen(new SamplerOptions()).Order());
        Assert.Throws<ArgumentOutOfRangeException>(() => new Sampler(new SamplerOptions { TopP = 0 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => new Sampler(new SamplerOptions { Temperature = -1 }));
    }
}
