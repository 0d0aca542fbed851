// LoRA against PyTorch (golden files of tests/reference/make_lora_golden.py: float64 reference of the model with
// effective weights W + (α/r)·B·A, base frozen): the loss, every adapter gradient under every memory policy, three
// AdamW steps on the adapters; and the engine's own promises: a frozen base gets no gradient memory and never changes,
// PEFT's zero-B start is the base model exactly, save/load round trips bit for bit, merge equals the adapted model.
using System.Text.Json;
using MiniSeq.IO;
using MiniSeq.Model;
using MiniSeq.Model.Lora;
using MiniSeq.Tensors;
using MiniSeq.Tests.Helpers;
using MiniSeq.Training;

namespace MiniSeq.Tests.Model;

public class LoraTests
{
    private const double Tolerance = 1e-5;

    private static string LoraRoot => Path.Combine(AppContext.BaseDirectory, "TestData", "lora");

    private static string GoldenRoot => Path.Combine(AppContext.BaseDirectory, "TestData", "golden");

    public static TheoryData<string, string> CasesAndPolicies
    {
        get
        {
            var data = new TheoryData<string, string>();
            foreach (string c in Directory.GetDirectories(LoraRoot).Select(Path.GetFileName).Order()!)
            {
                foreach (string p in new[] { "vanilla", "mst+checkpoint", "mst3+checkpoint", "chunked5", "chunked5+offload" })
                {
                    data.Add(c, p);
                }
            }

            return data;
        }
    }

    public static TheoryData<string> Cases => new(Directory.GetDirectories(LoraRoot).Select(Path.GetFileName).Order()!);

    private static MemoryPolicy PolicyFor(string name, LlamaConfig config, long rows) => name switch
    {
        "vanilla" => MemoryPolicy.Vanilla,
        "mst+checkpoint" => MemoryPolicy.MiniSequence(config, rows, checkpoint: true),
        "mst3+checkpoint" => new MemoryPolicy { MlpChunks = 3, LmHeadChunks = 3, Checkpoint = true },
        "chunked5" => MemoryPolicy.Chunked(config, rows, chunk: 5),
        "chunked5+offload" => MemoryPolicy.Chunked(config, rows, chunk: 5) with { OffloadDirectory = Path.GetTempPath() },
        _ => throw new ArgumentException(name),
    };

    private sealed record LoraCase(LlamaModel Model, LoraAdapters Adapters, TokenBatch Batch, SafeTensorsReader Expected, string Directory) : IDisposable
    {
        public static LoraCase Load(string name)
        {
            string dir = Path.Combine(LoraRoot, name);
            using JsonDocument info = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "case.json")));
            string baseDir = Path.Combine(GoldenRoot, info.RootElement.GetProperty("base").GetString()!);
            LlamaModel model = ModelDirectory.Load(baseDir);
            LoraAdapters adapters = PeftAdapter.Load(dir, model);
            return new LoraCase(model, adapters, TokenBatch.Load(Path.Combine(baseDir, "tokens.json")), SafeTensorsReader.Open(Path.Combine(dir, "expected.safetensors")), dir);
        }

        public void Dispose()
        {
            Expected.Dispose();
            Model.Dispose();
        }
    }

    [Theory]
    [MemberData(nameof(CasesAndPolicies))]
    public void LossAndAdapterGradients_MatchPyTorch(string caseName, string policyName)
    {
        using LoraCase c = LoraCase.Load(caseName);
        var options = new TrainerOptions { Policy = PolicyFor(policyName, c.Model.Config, (long)c.Batch.BatchSize * c.Batch.SeqLen) };
        using var trainer = new Trainer(c.Model, options, c.Batch.BatchSize, c.Batch.SeqLen);
        (double loss, _) = trainer.ComputeGradients(c.Batch);
        Compare.Close(loss, c.Expected.ReadFloat32("loss")[0], Tolerance, $"{caseName} loss");
        Assert.NotEmpty(c.Adapters.Layout.Tensors);
        foreach (ParameterInfo p in c.Adapters.Layout.Tensors)
        {
            Compare.Close(trainer.Gradient(p.Name).Span, c.Expected.ReadFloat32("grad." + p.Name), Tolerance, $"{caseName} grad {p.Name}");
        }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void ThreeAdamWSteps_MatchPyTorch_AndLeaveTheBaseUntouched(string caseName)
    {
        using LoraCase c = LoraCase.Load(caseName);
        float[] before = c.Model.Parameters.All.Span.ToArray();
        var optimizer = new OptimizerOptions { LearningRate = 1e-2f, Beta1 = 0.9f, Beta2 = 0.95f, Epsilon = 1e-8f, WeightDecay = 0.1f };
        using var trainer = new Trainer(c.Model, new TrainerOptions { Optimizer = optimizer, TotalSteps = 3 }, c.Batch.BatchSize, c.Batch.SeqLen);
        float[] losses = c.Expected.ReadFloat32("losses");
        for (int s = 0; s < 3; s++)
        {
            StepResult r = trainer.Step(c.Batch);
            Compare.Close(r.Loss, losses[s], Tolerance, $"{caseName} loss at step {s + 1}");
        }

        // fp32 against a float64 reference after three Adam steps: Adam normalises the gradient, so tiny gradients'
        // rounding noise shows in the update (as in GoldenTests); 1e-4 by norm.
        foreach (ParameterInfo p in c.Adapters.Layout.Tensors)
        {
            Compare.Close(c.Adapters.Weights[p.Slot].Span, c.Expected.ReadFloat32("step3." + p.Name), 1e-4, $"{caseName} {p.Name} after 3 steps");
        }

        Assert.True(before.AsSpan().SequenceEqual(c.Model.Parameters.All.Span), "the frozen base changed");
    }

    [Fact]
    public void FrozenBase_HasNoGradientMemory_AndOptimizerStateOnlyForAdapters()
    {
        using var model = new LlamaModel(ModelPresets.Tiny);
        model.InitializeRandom(3);
        LoraAdapters adapters = model.AttachAdapters(new LoraConfig { Rank = 4, Targets = LoraConfig.ParseTargets("all") });
        long adapterBytes = adapters.Layout.Plan.TotalBytes;
        using var trainer = new Trainer(model, new TrainerOptions(), 1, 16);
        Assert.Equal(adapterBytes, model.Ledger.Current(MemoryCategory.Gradients));
        Assert.Equal(2 * adapterBytes, model.Ledger.Current(MemoryCategory.OptimizerState));
        Assert.Equal(2 * adapterBytes, Optimizer.StateBytes(model.Config, new OptimizerOptions(), adapters.Config));
        Assert.True(adapterBytes * 4 < model.Layout.Plan.TotalBytes, "rank-4 adapters should be a small fraction of the model");
    }

    [Fact]
    public void PeftInitialisation_StartsFromTheBaseModelExactly()
    {
        LlamaConfig config = ModelPresets.Tiny;
        var batch = TokenBatch.FromInputIds(2, 16, Enumerable.Range(0, 32).Select(i => (i * 7) % config.VocabSize).ToArray());
        using var plain = new LlamaModel(config);
        plain.InitializeRandom(11);
        double baseLoss = Evaluator.Evaluate(plain, batch).Loss;
        LoraAdapters adapters = plain.AttachAdapters(new LoraConfig { Rank = 8, Alpha = 16, Targets = LoraConfig.ParseTargets("all,lm_head") });
        adapters.InitializePeft(5);
        Assert.Equal(baseLoss, Evaluator.Evaluate(plain, batch).Loss);
        foreach (LoraPair pair in adapters.Layout.Pairs)
        {
            float bound = 1f / MathF.Sqrt(pair.InFeatures);
            Assert.All(adapters.Weights[pair.A].Span.ToArray(), a => Assert.InRange(a, -bound, bound));
            Assert.All(adapters.Weights[pair.B].Span.ToArray(), b => Assert.Equal(0f, b));
        }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Merge_EqualsTheAdaptedModel(string caseName)
    {
        using LoraCase c = LoraCase.Load(caseName);
        if (c.Model.Config.TieWordEmbeddings && c.Adapters.Config.Targets.HasFlag(LoraTargets.LmHead))
        {
            Assert.Throws<InvalidOperationException>(c.Model.MergeAdapters);
            return;
        }

        double adapted = Evaluator.Evaluate(c.Model, c.Batch).Loss;
        c.Model.MergeAdapters();
        Assert.Null(c.Model.Adapters);
        Compare.Close(Evaluator.Evaluate(c.Model, c.Batch).Loss, adapted, 1e-6, $"{caseName} merged loss");
        Compare.Close(adapted, c.Expected.ReadFloat32("loss")[0], Tolerance, $"{caseName} adapted loss");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void PeftDirectory_RoundTripsBitForBit(string caseName)
    {
        using LoraCase c = LoraCase.Load(caseName);
        string dir = Path.Combine(Path.GetTempPath(), "miniseq-lora-" + Guid.NewGuid().ToString("N"));
        try
        {
            PeftAdapter.Save(c.Adapters, dir, "base");
            LoraConfig read = PeftAdapter.ReadConfig(dir);
            Assert.Equal(c.Adapters.Config, read);
            using LlamaModel other = ModelDirectory.Load(Path.Combine(GoldenRoot, JsonDocument.Parse(File.ReadAllText(Path.Combine(c.Directory, "case.json"))).RootElement.GetProperty("base").GetString()!));
            LoraAdapters loaded = PeftAdapter.Load(dir, other);
            Assert.True(c.Adapters.Weights.All.Span.SequenceEqual(loaded.Weights.All.Span));
            using JsonDocument config = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, PeftAdapter.ConfigFileName)));
            Assert.Equal("LORA", config.RootElement.GetProperty("peft_type").GetString());
            Assert.Equal(read.Rank, config.RootElement.GetProperty("r").GetInt32());
        }
        finally
        {
            if (Directory.Exists(dir))
            {
                Directory.Delete(dir, recursive: true);
            }
        }
    }

    [Theory]
    [InlineData("\"use_dora\": true", "use_dora")]
    [InlineData("\"use_rslora\": true", "use_rslora")]
    [InlineData("\"peft_type\": \"IA3\"", "peft_type")]
    [InlineData("\"target_modules\": [\"q_proj\", \"embed_tokens\"]", "embed_tokens")]
    public void UnsupportedAdapters_AreRefusedNamingTheField(string field, string named)
    {
        string dir = Path.Combine(Path.GetTempPath(), "miniseq-lora-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            string baseFields = "\"r\": 4, \"lora_alpha\": 8, \"target_modules\": [\"q_proj\"]";
            string json = field.StartsWith("\"peft_type\"", StringComparison.Ordinal) ? $"{{{field}, {baseFields}}}"
                : field.StartsWith("\"target_modules\"", StringComparison.Ordinal) ? $"{{\"peft_type\": \"LORA\", \"r\": 4, {field}}}"
                : $"{{\"peft_type\": \"LORA\", {baseFields}, {field}}}";
            File.WriteAllText(Path.Combine(dir, PeftAdapter.ConfigFileName), json);
            var e = Assert.Throws<InvalidDataException>(() => PeftAdapter.ReadConfig(dir));
            Assert.Contains(named, e.Message, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}

/// <summary>LoRA dropout: the Linear op against a scalar reference with the same masks, every memory policy on the same
/// masks, no dropout outside training.</summary>
public unsafe class LoraDropoutTests
{
    [Theory]
    [InlineData(1, 7, 5, 3, 0.3f)]
    [InlineData(130, 24, 40, 4, 0.1f)]
    [InlineData(65, 33, 17, 2, 0.5f)]
    public void LinearWithDropout_MatchesScalarReference(int rows, int inF, int outF, int rank, float p)
    {
        var rng = new Random(rows + inF);
        float[] Rand(int n) => Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() - 0.5)).ToArray();
        float[] x = Rand(rows * inF), w = Rand(outF * inF), a = Rand(rank * inF), b = Rand(outF * rank), dy = Rand(rows * outF);
        float[] y = new float[rows * outF], dx = new float[rows * inF], dA = new float[rank * inF], dB = new float[outF * rank];
        float[] scratch = new float[2 * rows * rank], block = new float[MiniSeq.Kernels.LoraDropout.BlockRows * inF];
        const ulong seed = 77;
        const long firstRow = 1000;
        const float scale = 1.5f;
        fixed (float* px = x, pw = w, pa = a, pb = b, pdy = dy, py = y, pdx = dx, pdA = dA, pdB = dB, ps = scratch, pblock = block)
        {
            var linear = new MiniSeq.Kernels.LinearWeights(pw, inF, outF) { Adapter = new MiniSeq.Kernels.LinearAdapter(pa, pb, rank, scale, ps, pdA, pdB) { Dropout = p, DropoutSeed = seed, DropoutBuffer = pblock } };
            MiniSeq.Kernels.Linear.Forward(px, rows, linear, py, firstRow: firstRow);
            MiniSeq.Kernels.Linear.Backward(pdy, px, rows, linear, pdx, firstRow: firstRow);
        }

        // Reference in double: xd = x ∘ mask; y = x·Wᵀ + s·(xd·Aᵀ)·Bᵀ; dB = s·dyᵀ·t; u = s·dy·B; dA = uᵀ·xd; dx = dy·W + (u·A) ∘ mask.
        double Mask(int r, int c) => MiniSeq.Kernels.LoraDropout.Factor(seed, firstRow + r, c, p);
        var t = new double[rows, rank];
        var u = new double[rows, rank];
        for (int r = 0; r < rows; r++)
        {
            for (int k = 0; k < rank; k++)
            {
                for (int c = 0; c < inF; c++)
                {
                    t[r, k] += x[(r * inF) + c] * Mask(r, c) * a[(k * inF) + c];
                }

                for (int o = 0; o < outF; o++)
                {
                    u[r, k] += scale * dy[(r * outF) + o] * b[(o * rank) + k];
                }
            }
        }

        double[] yRef = new double[rows * outF], dxRef = new double[rows * inF], dARef = new double[rank * inF], dBRef = new double[outF * rank];
        for (int r = 0; r < rows; r++)
        {
            for (int o = 0; o < outF; o++)
            {
                double sum = 0;
                for (int c = 0; c < inF; c++)
                {
                    sum += x[(r * inF) + c] * w[(o * inF) + c];
                }

                for (int k = 0; k < rank; k++)
                {
                    sum += scale * t[r, k] * b[(o * rank) + k];
                    dBRef[(o * rank) + k] += scale * dy[(r * outF) + o] * t[r, k];
                }

                yRef[(r * outF) + o] = sum;
            }

            for (int c = 0; c < inF; c++)
            {
                double sum = 0, adapter = 0;
                for (int o = 0; o < outF; o++)
                {
                    sum += dy[(r * outF) + o] * w[(o * inF) + c];
                }

                for (int k = 0; k < rank; k++)
                {
                    adapter += u[r, k] * a[(k * inF) + c];
                    dARef[(k * inF) + c] += u[r, k] * x[(r * inF) + c] * Mask(r, c);
                }

                dxRef[(r * inF) + c] = sum + (adapter * Mask(r, c));
            }
        }

        static float[] F(double[] d) => d.Select(v => (float)v).ToArray();
        Compare.Close(y, F(yRef), 1e-5, "y");
        Compare.Close(dx, F(dxRef), 1e-5, "dx");
        Compare.Close(dA, F(dARef), 1e-5, "dA");
        Compare.Close(dB, F(dBRef), 1e-5, "dB");
        int dropped = 0;
        for (int r = 0; r < rows; r++)
        {
            for (int c = 0; c < inF; c++)
            {
                dropped += Mask(r, c) == 0 ? 1 : 0;
            }
        }

        Assert.InRange(dropped / (double)(rows * inF), p - 0.15, p + 0.15);
    }

    [Fact]
    public void EveryMemoryPolicy_TrainsOnTheSameMasks_AndEvaluationDropsNothing()
    {
        LlamaConfig config = ModelPresets.Tiny;
        var batch = TokenBatch.FromInputIds(2, 24, Enumerable.Range(0, 48).Select(i => ((i * 37) + 5) % config.VocabSize).ToArray());
        var lora = new LoraConfig { Rank = 4, Alpha = 8, Dropout = 0.25f, Targets = LoraConfig.ParseTargets("all,lm_head") };
        float[]? reference = null;
        double referenceLoss = 0;
        foreach (MemoryPolicy policy in new[] { MemoryPolicy.Vanilla, MemoryPolicy.MiniSequence(config, 48, checkpoint: true), new MemoryPolicy { MlpChunks = 3, LmHeadChunks = 5, Checkpoint = true }, new MemoryPolicy { Checkpoint = true, KeepAttention = true }, MemoryPolicy.Chunked(config, 48, chunk: 7) })
        {
            using var model = new LlamaModel(config);
            model.InitializeRandom(2);
            LoraAdapters adapters = model.AttachAdapters(lora);
            adapters.InitializePeft(3);
            new DeterministicRandom(4).FillNormal(adapters.Weights[adapters.Layout.Pairs[0].B].Span, 0.05f); // a non-zero B everywhere
            foreach (LoraPair pair in adapters.Layout.Pairs)
            {
                new DeterministicRandom((ulong)pair.B.ByteOffset).FillNormal(adapters.Weights[pair.B].Span, 0.05f);
            }

            using var trainer = new Trainer(model, new TrainerOptions { Policy = policy, Seed = 9 }, batch.BatchSize, batch.SeqLen);
            (double loss, _) = trainer.ComputeGradients(batch);
            float[] gradients = trainer.Gradients.Span.ToArray();
            if (reference is null)
            {
                reference = gradients;
                referenceLoss = loss;

                // Dropout changes the training loss; evaluation (no dropout) equals the merged model.
                double evaluated = Evaluator.Evaluate(model, batch).Loss;
                Assert.NotEqual(evaluated, loss);
                model.MergeAdapters();
                Compare.Close(Evaluator.Evaluate(model, batch).Loss, evaluated, 1e-6, "merged vs adapted evaluation");
                continue;
            }

            Compare.Close(loss, referenceLoss, 1e-6, $"{policy.Describe()} loss");
            Compare.Close(gradients, reference, 1e-5, $"{policy.Describe()} adapter gradients");
        }
    }
}

/// <summary>A frozen base with bf16 projection weights: the same numbers as an fp32 base holding the rounded weights,
/// bit for bit (the GEMM widens bf16 exactly while packing), in half the projection memory.</summary>
public unsafe class LoraBf16BaseTests
{
    private static string Root => Path.Combine(AppContext.BaseDirectory, "TestData");

    public static TheoryData<string, string> CasesAndPolicies
    {
        get
        {
            var data = new TheoryData<string, string>();
            foreach (string c in Directory.GetDirectories(Path.Combine(Root, "lora")).Select(Path.GetFileName).Order()!)
            {
                data.Add(c, "vanilla");
                data.Add(c, "mst+checkpoint");
                data.Add(c, "chunked5");
            }

            return data;
        }
    }

    [Theory]
    [MemberData(nameof(CasesAndPolicies))]
    public void Bf16Base_EqualsFp32BaseWithRoundedWeights_BitForBit(string caseName, string policyName)
    {
        string dir = Path.Combine(Root, "lora", caseName);
        using JsonDocument info = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "case.json")));
        string baseDir = Path.Combine(Root, "golden", info.RootElement.GetProperty("base").GetString()!);
        TokenBatch batch = TokenBatch.Load(Path.Combine(baseDir, "tokens.json"));

        using LlamaModel rounded = ModelDirectory.Load(baseDir);
        foreach (ParameterInfo p in rounded.Layout.Tensors.Where(t => t.Kind == ParameterKind.Projection))
        {
            Span<float> w = rounded.Parameters[p.Slot].Span;
            for (int i = 0; i < w.Length; i++)
            {
                w[i] = SafeTensors.BFloat16ToFloat(SafeTensors.FloatToBFloat16(w[i]));
            }
        }

        using LlamaModel bf16 = ModelDirectory.Load(baseDir, bf16Projections: true);
        PeftAdapter.Load(dir, rounded);
        PeftAdapter.Load(dir, bf16);
        long rows = (long)batch.BatchSize * batch.SeqLen;
        MemoryPolicy policy = policyName switch
        {
            "vanilla" => MemoryPolicy.Vanilla,
            "mst+checkpoint" => MemoryPolicy.MiniSequence(rounded.Config, rows, checkpoint: true),
            _ => MemoryPolicy.Chunked(rounded.Config, rows, chunk: 5),
        };
        using var a = new Trainer(rounded, new TrainerOptions { Policy = policy }, batch.BatchSize, batch.SeqLen);
        using var b = new Trainer(bf16, new TrainerOptions { Policy = policy }, batch.BatchSize, batch.SeqLen);
        (double lossA, _) = a.ComputeGradients(batch);
        (double lossB, _) = b.ComputeGradients(batch);
        Assert.Equal(lossA, lossB);
        Assert.True(a.Gradients.Span.SequenceEqual(b.Gradients.Span), "adapter gradients differ");

        long projections = rounded.Layout.Tensors.Where(t => t.Kind == ParameterKind.Projection).Sum(t => t.ElementCount);
        Assert.True(rounded.Layout.Plan.TotalBytes - bf16.Layout.Plan.TotalBytes >= (2 * projections) - (64L * rounded.Layout.Tensors.Count),
            "bf16 projections should halve their memory");
    }

    [Fact]
    public void Bf16Base_IsFrozen_CannotBeTrainedSavedMergedOrGenerated()
    {
        using var model = new LlamaModel(ModelPresets.Tiny, bf16Projections: true);
        model.InitializeRandom(1);
        Assert.Throws<InvalidOperationException>(() => new Trainer(model, new TrainerOptions(), 1, 8));
        string dir = Path.Combine(Path.GetTempPath(), "miniseq-bf16-" + Guid.NewGuid().ToString("N"));
        Assert.Throws<ArgumentException>(() => model.Save(dir));
        Assert.False(Directory.Exists(dir));
        Assert.Throws<InvalidOperationException>(() => new MiniSeq.Generation.Generator(model, 8));
        model.AttachAdapters(new LoraConfig { Rank = 2 }).InitializePeft(1);
        Assert.Throws<InvalidOperationException>(model.MergeAdapters);
        using var trainer = new Trainer(model, new TrainerOptions(), 1, 8);
        var batch = TokenBatch.FromInputIds(1, 8, [1, 2, 3, 4, 5, 6, 7, 8]);
        Assert.True(double.IsFinite(trainer.Step(batch).Loss));
    }
}
