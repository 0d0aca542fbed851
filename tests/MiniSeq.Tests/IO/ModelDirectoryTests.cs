// Hugging Face model directories: round trips (single file, sharded, tied, BF16 read and saved), missing/extra/misshaped
// tensors, and atomic saving under simulated failures.
using System.Text.Json;
using MiniSeq.IO;
using MiniSeq.Model;
using MiniSeq.Tensors;

namespace MiniSeq.Tests.IO;

public class ModelDirectoryTests
{
    private static readonly LlamaConfig s_untied = ModelPresets.Tiny;
    private static readonly LlamaConfig s_tied = ModelPresets.Tiny with { TieWordEmbeddings = true };

    private static Arena Filled(ParameterLayout layout, int seed)
    {
        var arena = new Arena(layout.Plan);
        Fill(layout, arena, seed);
        return arena;
    }

    private static void Fill(ParameterLayout layout, Arena arena, int seed)
    {
        var random = new Random(seed);
        foreach (ParameterInfo p in layout.Tensors)
        {
            Span<float> span = arena[p.Slot].Span;
            for (int i = 0; i < span.Length; i++)
            {
                span[i] = (float)(random.NextDouble() * 2 - 1);
            }
        }
    }

    private static void AssertSameParameters(ParameterLayout layout, Arena expected, Arena actual)
    {
        foreach (ParameterInfo p in layout.Tensors)
        {
            Assert.True(expected[p.Slot].Span.SequenceEqual(actual[p.Slot].Span), p.Name);
        }
    }

    /// <summary>Writes the layout's tensors with a writer, letting the caller add, drop or reshape some.</summary>
    private static void WriteWeights(string path, ParameterLayout layout, Arena arena, Func<ParameterInfo, int[]?> shapeOf,
        SafeTensorsDType dtype = SafeTensorsDType.F32, Action<SafeTensorsWriter>? extra = null)
    {
        var writer = new SafeTensorsWriter();
        foreach (ParameterInfo p in layout.Tensors)
        {
            if (shapeOf(p) is int[] shape)
            {
                writer.Add(p.Name, shape, arena[p.Slot], dtype);
            }
        }

        extra?.Invoke(writer);
        writer.Write(path);
    }

    private static string[] Siblings(TempDirectory dir) =>
        Directory.GetFileSystemEntries(dir.Path).Select(Path.GetFileName).Order(StringComparer.Ordinal).ToArray()!;

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Save_ThenRead_RoundTripsConfigAndWeights(bool tied)
    {
        using var dir = new TempDirectory();
        string model = dir.File("model");
        LlamaConfig config = tied ? s_tied : s_untied;
        var layout = new ParameterLayout(config);
        using var saved = new Arena(layout.Plan);
        using var loaded = new Arena(layout.Plan);
        Fill(layout, saved, seed: 20240601);

        ModelDirectory.Save(model, config, layout, saved.All);

        Assert.Equal(["config.json", "model.safetensors"], Directory.GetFiles(model).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        Assert.Equal(config, ModelDirectory.ReadConfig(model));
        var warnings = new List<string>();
        ModelDirectory.ReadWeights(model, layout, loaded.All, warnings.Add);
        Assert.Empty(warnings);
        AssertSameParameters(layout, saved, loaded);

        using SafeTensorsReader reader = SafeTensorsReader.Open(Path.Combine(model, "model.safetensors"));
        Assert.Equal("pt", reader.Metadata["format"]);
        Assert.Equal(!tied, reader.Contains(HfTensorNames.LmHead));
        Assert.Equal(layout.Tensors.Count, reader.Tensors.Count);
        Assert.All(reader.Tensors, t => Assert.Equal(SafeTensorsDType.F32, t.DType));
        Assert.Equal([256L, 64L], reader.GetTensor(HfTensorNames.Embedding).Shape);
    }

    [Fact]
    public void SaveSharded_SmallShards_WritesIndexAndRoundTrips()
    {
        using var dir = new TempDirectory();
        string model = dir.File("model");
        var layout = new ParameterLayout(s_untied);
        using var saved = new Arena(layout.Plan);
        using var loaded = new Arena(layout.Plan);
        Fill(layout, saved, seed: 7);

        ModelDirectory.SaveSharded(model, s_untied, layout, saved.All, maxShardBytes: 100_000);

        string[] shards = Directory.GetFiles(model, "model-*.safetensors").Select(Path.GetFileName).Order(StringComparer.Ordinal).ToArray()!;
        Assert.True(shards.Length > 2);
        Assert.Equal($"model-00001-of-{shards.Length:D5}.safetensors", shards[0]);
        Assert.True(File.Exists(Path.Combine(model, ModelDirectory.IndexFileName)));
        Assert.False(File.Exists(Path.Combine(model, ModelDirectory.WeightsFileName)));
        ModelDirectory.ReadWeights(model, layout, loaded.All);
        AssertSameParameters(layout, saved, loaded);
    }

    [Fact]
    public void SaveSharded_EverythingFits_WritesSingleFile()
    {
        using var dir = new TempDirectory();
        string model = dir.File("model");
        var layout = new ParameterLayout(s_tied);
        using var arena = new Arena(layout.Plan);
        ModelDirectory.SaveSharded(model, s_tied, layout, arena.All, maxShardBytes: 1L << 40);
        Assert.Equal(["config.json", "model.safetensors"], Directory.GetFiles(model).Select(Path.GetFileName).Order(StringComparer.Ordinal));
    }

    [Fact]
    public void ReadWeights_Bf16File_ConvertsToFloat()
    {
        using var dir = new TempDirectory();
        var layout = new ParameterLayout(s_tied);
        using var source = new Arena(layout.Plan);
        using var loaded = new Arena(layout.Plan);
        Fill(layout, source, seed: 3);
        WriteWeights(dir.File("model.safetensors"), layout, source, p => p.Shape, SafeTensorsDType.BF16);

        ModelDirectory.ReadWeights(dir.Path, layout, loaded.All);

        foreach (ParameterInfo p in layout.Tensors)
        {
            ReadOnlySpan<float> expected = source[p.Slot].Span, actual = loaded[p.Slot].Span;
            for (int i = 0; i < expected.Length; i++)
            {
                Assert.Equal(SafeTensors.BFloat16ToFloat(SafeTensors.FloatToBFloat16(expected[i])), actual[i]);
            }
        }
    }

    private static string TorchDtype(string model)
    {
        using JsonDocument config = JsonDocument.Parse(File.ReadAllText(Path.Combine(model, ModelDirectory.ConfigFileName)));
        return config.RootElement.GetProperty("torch_dtype").GetString()!;
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Save_Bf16_LoadsTheRoundedWeightsBitForBit(bool tied)
    {
        using var dir = new TempDirectory();
        string model = dir.File("model"), exact = dir.File("exact");
        LlamaConfig config = tied ? s_tied : s_untied;
        var layout = new ParameterLayout(config);
        using var saved = Filled(layout, seed: 11);
        using var loaded = new Arena(layout.Plan);
        Span<float> all = saved.All.Span;
        all[0] = -0f;
        all[1] = 1e-40f; // a denormal
        all[2] = BitConverter.UInt32BitsToSingle(0x3F808000); // a tie: rounds to even (1.0)
        all[3] = BitConverter.UInt32BitsToSingle(0x3F818000); // a tie: rounds to even (up)

        ModelDirectory.Save(model, config, layout, saved.All, dtype: SafeTensorsDType.BF16);
        ModelDirectory.Save(exact, config, layout, saved.All);

        Assert.Equal("bfloat16", TorchDtype(model));
        Assert.Equal("float32", TorchDtype(exact));
        Assert.Equal(config, ModelDirectory.ReadConfig(model));
        using (SafeTensorsReader reader = SafeTensorsReader.Open(Path.Combine(model, ModelDirectory.WeightsFileName)))
        {
            Assert.Equal("pt", reader.Metadata["format"]);
            Assert.All(reader.Tensors, t => Assert.Equal(SafeTensorsDType.BF16, t.DType));
            Assert.Equal(layout.ParameterCount * 2, reader.Tensors.Sum(t => t.ByteLength));
        }

        Assert.Equal([SafeTensorsDType.BF16], ModelDirectory.StoredDTypes(model));
        Assert.Equal([SafeTensorsDType.F32], ModelDirectory.StoredDTypes(exact));
        ModelDirectory.ReadWeights(model, layout, loaded.All);
        foreach (ParameterInfo p in layout.Tensors)
        {
            ReadOnlySpan<float> expected = saved[p.Slot].Span, actual = loaded[p.Slot].Span;
            for (int i = 0; i < expected.Length; i++)
            {
                uint want = BitConverter.SingleToUInt32Bits(SafeTensors.BFloat16ToFloat(SafeTensors.FloatToBFloat16(expected[i])));
                if (want != BitConverter.SingleToUInt32Bits(actual[i]))
                {
                    Assert.Fail($"{p.Name}[{i}]: saved {expected[i]:R}, loaded 0x{BitConverter.SingleToUInt32Bits(actual[i]):X8}, expected 0x{want:X8}");
                }
            }
        }

        Assert.Equal(0x80000000u, BitConverter.SingleToUInt32Bits(loaded.All.Span[0]));
        Assert.Equal(1f, loaded.All.Span[2]);
        Assert.Equal(BitConverter.UInt32BitsToSingle(0x3F820000), loaded.All.Span[3]);

        // Saving what was loaded again as BF16 gives the same bytes: the rounded values are exactly representable.
        ModelDirectory.Save(dir.File("again"), config, layout, loaded.All, dtype: SafeTensorsDType.BF16);
        Assert.Equal(File.ReadAllBytes(Path.Combine(model, ModelDirectory.WeightsFileName)), File.ReadAllBytes(Path.Combine(dir.File("again"), ModelDirectory.WeightsFileName)));
    }

    [Fact]
    public void SaveSharded_Bf16_ShardsByBf16BytesAndRoundTrips()
    {
        using var dir = new TempDirectory();
        string model = dir.File("model");
        var layout = new ParameterLayout(s_untied);
        using var saved = Filled(layout, seed: 12);
        using var loaded = new Arena(layout.Plan);

        ModelDirectory.SaveSharded(model, s_untied, layout, saved.All, maxShardBytes: 50_000, overwrite: false, SafeTensorsDType.BF16);

        using JsonDocument index = JsonDocument.Parse(File.ReadAllText(Path.Combine(model, ModelDirectory.IndexFileName)));
        Assert.Equal(layout.ParameterCount * 2, index.RootElement.GetProperty("metadata").GetProperty("total_size").GetInt64());
        string[] shards = Directory.GetFiles(model, "model-*.safetensors");
        Assert.True(shards.Length > 2);
        foreach (string shard in shards)
        {
            using SafeTensorsReader reader = SafeTensorsReader.Open(shard);
            Assert.All(reader.Tensors, t => Assert.Equal(SafeTensorsDType.BF16, t.DType));
            Assert.True(reader.Tensors.Count == 1 || reader.Tensors.Sum(t => t.ByteLength) <= 50_000);
        }

        Assert.Equal("bfloat16", TorchDtype(model));
        ModelDirectory.ReadWeights(model, layout, loaded.All);
        Span<float> expected = saved.All.Span, actual = loaded.All.Span;
        foreach (ParameterInfo p in layout.Tensors)
        {
            for (long i = p.Slot.Offset; i < p.Slot.Offset + p.Slot.Length; i++)
            {
                Assert.Equal(SafeTensors.BFloat16ToFloat(SafeTensors.FloatToBFloat16(expected[(int)i])), actual[(int)i]);
            }
        }
    }

    [Theory]
    [InlineData(SafeTensorsDType.F16)]
    [InlineData(SafeTensorsDType.F64)]
    [InlineData(SafeTensorsDType.I32)]
    public void Save_OtherDType_ThrowsArgumentAndWritesNothing(SafeTensorsDType dtype)
    {
        using var dir = new TempDirectory();
        var layout = new ParameterLayout(s_tied);
        using var arena = new Arena(layout.Plan);
        var e = Assert.Throws<ArgumentException>(() => ModelDirectory.Save(dir.File("model"), s_tied, layout, arena.All, dtype: dtype));
        Assert.Contains("F32 or BF16", e.Message, StringComparison.Ordinal);
        Assert.False(Directory.Exists(dir.File("model")));
    }

    [Fact]
    public void Save_TrainingStateWithBf16Weights_Refused()
    {
        using var dir = new TempDirectory();
        var layout = new ParameterLayout(s_tied);
        using var arena = new Arena(layout.Plan);
        var e = Assert.Throws<ArgumentException>(() => ModelDirectory.Save(dir.File("model"), s_tied, layout, arena.All, long.MaxValue,
            afterFileWritten: null, overwrite: false, writeExtra: _ => { }, dtype: SafeTensorsDType.BF16));
        Assert.Contains("F32", e.Message, StringComparison.Ordinal);
        Assert.False(Directory.Exists(dir.File("model")));
    }

    [Theory]
    [InlineData("bf16", SafeTensorsDType.BF16)]
    [InlineData(" BFloat16 ", SafeTensorsDType.BF16)]
    [InlineData("f32", SafeTensorsDType.F32)]
    [InlineData("FP32", SafeTensorsDType.F32)]
    [InlineData("float32", SafeTensorsDType.F32)]
    public void ParseSaveDType_KnownNames_Parsed(string text, SafeTensorsDType expected)
        => Assert.Equal(expected, ModelDirectory.ParseSaveDType(text));

    [Theory]
    [InlineData("f16")]
    [InlineData("")]
    [InlineData("bf16x")]
    public void ParseSaveDType_OtherText_ThrowsNamingOptionAndValue(string text)
    {
        var e = Assert.Throws<ArgumentException>(() => ModelDirectory.ParseSaveDType(text));
        Assert.Equal($"--save-dtype must be f32 or bf16 (got '{text}').", e.Message);
    }

    [Fact]
    public void ReadWeights_TiedWithExtraTensors_IgnoresLmHeadAndWarnsOthers()
    {
        using var dir = new TempDirectory();
        var layout = new ParameterLayout(s_tied);
        using var source = new Arena(layout.Plan);
        using var loaded = new Arena(layout.Plan);
        Fill(layout, source, seed: 11);
        float[] other = new float[256 * 64];
        float[] invFreq = new float[8];
        WriteWeights(dir.File("model.safetensors"), layout, source, p => p.Shape, extra: w =>
        {
            w.Add(HfTensorNames.LmHead, [256, 64], (ReadOnlyMemory<float>)other);
            w.Add("model.layers.0.self_attn.rotary_emb.inv_freq", [8], (ReadOnlyMemory<float>)invFreq);
        });

        var warnings = new List<string>();
        ModelDirectory.ReadWeights(dir.Path, layout, loaded.All, warnings.Add);

        string warning = Assert.Single(warnings);
        Assert.Contains("rotary_emb.inv_freq", warning, StringComparison.Ordinal);
        AssertSameParameters(layout, source, loaded);
    }

    [Fact]
    public void ReadWeights_MissingTensors_ThrowsListingFirstNames()
    {
        using var dir = new TempDirectory();
        var layout = new ParameterLayout(s_untied);
        using var arena = new Arena(layout.Plan);
        WriteWeights(dir.File("model.safetensors"), layout, arena, p => p.Name.StartsWith("model.layers.1.", StringComparison.Ordinal) ? null : p.Shape);

        var e = Assert.Throws<InvalidDataException>(() => ModelDirectory.ReadWeights(dir.Path, layout, arena.All));

        Assert.Contains(dir.File("model.safetensors"), e.Message, StringComparison.Ordinal);
        Assert.Contains("9 of 21 tensors are missing", e.Message, StringComparison.Ordinal);
        Assert.Contains("model.layers.1.input_layernorm.weight", e.Message, StringComparison.Ordinal);
        Assert.Contains("and 4 more", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ReadWeights_UntiedLayoutWithoutLmHead_SuggestsTying()
    {
        using var dir = new TempDirectory();
        var layout = new ParameterLayout(s_untied);
        using var arena = new Arena(layout.Plan);
        WriteWeights(dir.File("model.safetensors"), layout, arena, p => p.Name == HfTensorNames.LmHead ? null : p.Shape);

        var e = Assert.Throws<InvalidDataException>(() => ModelDirectory.ReadWeights(dir.Path, layout, arena.All));

        Assert.Contains(HfTensorNames.LmHead, e.Message, StringComparison.Ordinal);
        Assert.Contains("tie_word_embeddings", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ReadWeights_WrongShape_ThrowsNamingTensorAndShapes()
    {
        using var dir = new TempDirectory();
        var layout = new ParameterLayout(s_tied);
        using var arena = new Arena(layout.Plan);
        string q = HfTensorNames.QueryProjection(1);
        WriteWeights(dir.File("model.safetensors"), layout, arena, p => p.Name == q ? [32, 128] : p.Shape);

        var e = Assert.Throws<InvalidDataException>(() => ModelDirectory.ReadWeights(dir.Path, layout, arena.All));

        Assert.Contains(dir.File("model.safetensors"), e.Message, StringComparison.Ordinal);
        Assert.Contains($"'{q}'", e.Message, StringComparison.Ordinal);
        Assert.Contains("[32, 128]", e.Message, StringComparison.Ordinal);
        Assert.Contains("expected shape [64, 64] from config.json", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ReadWeights_IndexNamesMissingShard_ThrowsFileNotFound()
    {
        using var dir = new TempDirectory();
        var layout = new ParameterLayout(s_tied);
        using var arena = new Arena(layout.Plan);
        File.WriteAllText(dir.File(ModelDirectory.IndexFileName),
            $"{{\"metadata\":{{}},\"weight_map\":{{\"{HfTensorNames.Embedding}\":\"model-00001-of-00002.safetensors\"}}}}");

        var e = Assert.Throws<FileNotFoundException>(() => ModelDirectory.ReadWeights(dir.Path, layout, arena.All));
        Assert.Contains("model-00001-of-00002.safetensors", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("{\"weight_map\": [1, 2]}", "weight_map")]
    [InlineData("{\"weight_map\": {\"model.norm.weight\": \"../evil.safetensors\"}}", "model.norm.weight")]
    [InlineData("{\"weight_map\": {", "not valid JSON")]
    public void ReadWeights_MalformedIndex_ThrowsInvalidData(string index, string keyword)
    {
        using var dir = new TempDirectory();
        var layout = new ParameterLayout(s_tied);
        using var arena = new Arena(layout.Plan);
        File.WriteAllText(dir.File(ModelDirectory.IndexFileName), index);

        var e = Assert.Throws<InvalidDataException>(() => ModelDirectory.ReadWeights(dir.Path, layout, arena.All));
        Assert.Contains(ModelDirectory.IndexFileName, e.Message, StringComparison.Ordinal);
        Assert.Contains(keyword, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ReadWeights_NoWeightsFile_ThrowsFileNotFound()
    {
        using var dir = new TempDirectory();
        var layout = new ParameterLayout(s_tied);
        using var arena = new Arena(layout.Plan);
        var e = Assert.Throws<FileNotFoundException>(() => ModelDirectory.ReadWeights(dir.Path, layout, arena.All));
        Assert.Contains("model.safetensors", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Save_ExistingDirectory_WithoutOverwrite_RefusedAndUntouched()
    {
        using var dir = new TempDirectory();
        string model = dir.File("model");
        var layout = new ParameterLayout(s_tied);
        using Arena first = Filled(layout, seed: 1), second = Filled(layout, seed: 2);
        ModelDirectory.Save(model, s_tied, layout, first.All);
        byte[] before = File.ReadAllBytes(Path.Combine(model, "model.safetensors"));

        var e = Assert.Throws<OutputExistsException>(() => ModelDirectory.Save(model, s_tied, layout, second.All));

        Assert.Contains("--overwrite", e.Message, StringComparison.Ordinal);
        Assert.Equal(before, File.ReadAllBytes(Path.Combine(model, "model.safetensors")));
        Assert.Equal(["model"], Siblings(dir));
    }

    [Fact]
    public void Save_Overwrite_ReplacesOwnFilesKeepsEverythingElse()
    {
        using var dir = new TempDirectory();
        string model = dir.File("model");
        var layout = new ParameterLayout(s_tied);
        using Arena first = Filled(layout, seed: 1), second = Filled(layout, seed: 2), loaded = new Arena(layout.Plan);
        ModelDirectory.SaveSharded(model, s_tied, layout, first.All, maxShardBytes: 100_000);
        Assert.True(File.Exists(Path.Combine(model, "model.safetensors.index.json")));
        File.WriteAllText(Path.Combine(model, "tokenizer.json"), "{}");
        File.WriteAllText(Path.Combine(model, "notes.txt"), "mine");
        Directory.CreateDirectory(Path.Combine(model, "sub"));
        File.WriteAllText(Path.Combine(model, "sub", "x.bin"), "x");

        ModelDirectory.Save(model, s_tied, layout, second.All, overwrite: true);

        // One file now: the old shards and index (MiniSeq's own) are gone, the user's files are untouched.
        string[] names = Directory.GetFileSystemEntries(model).Select(Path.GetFileName).Order(StringComparer.Ordinal).ToArray()!;
        Assert.Equal(["config.json", "model.safetensors", "notes.txt", "sub", "tokenizer.json"], names);
        Assert.Equal("{}", File.ReadAllText(Path.Combine(model, "tokenizer.json")));
        Assert.Equal("mine", File.ReadAllText(Path.Combine(model, "notes.txt")));
        Assert.Equal("x", File.ReadAllText(Path.Combine(model, "sub", "x.bin")));
        ModelDirectory.ReadWeights(model, layout, loaded.All);
        AssertSameParameters(layout, second, loaded);
        Assert.Equal(["model"], Siblings(dir)); // no temporary or old siblings left
    }

    [Fact]
    public void Save_OwnFilesOnly_Overwrite_ReplacedAsAWhole()
    {
        using var dir = new TempDirectory();
        string model = dir.File("model");
        var layout = new ParameterLayout(s_tied);
        using Arena first = Filled(layout, seed: 1), second = Filled(layout, seed: 2), loaded = new Arena(layout.Plan);
        ModelDirectory.Save(model, s_tied, layout, first.All);

        ModelDirectory.Save(model, s_tied, layout, second.All, overwrite: true);

        ModelDirectory.ReadWeights(model, layout, loaded.All);
        AssertSameParameters(layout, second, loaded);
        Assert.Equal(["model"], Siblings(dir));
    }

    [Fact]
    public void Save_NonFiniteParameter_RefusedNamingTheTensor()
    {
        using var dir = new TempDirectory();
        var layout = new ParameterLayout(s_tied);
        using Arena arena = Filled(layout, seed: 3);
        layout.TryGet("model.norm.weight", out ParameterInfo norm);
        arena.All.Slice(norm.Slot.Offset, norm.Slot.Length).Span[1] = float.NaN;

        var e = Assert.Throws<InvalidDataException>(() => ModelDirectory.Save(dir.File("model"), s_tied, layout, arena.All));

        Assert.Contains("model.norm.weight", e.Message, StringComparison.Ordinal);
        Assert.Empty(Siblings(dir));
    }

    [Fact]
    public void Save_LeftoverTemporariesOfDeadWriters_Removed()
    {
        using var dir = new TempDirectory();
        string model = dir.File("model");
        int deadPid = DeadProcessId();
        Directory.CreateDirectory(dir.File($".model.tmp-{deadPid}-0123456789ab"));
        File.WriteAllText(Path.Combine(dir.File($".model.tmp-{deadPid}-0123456789ab"), "model.safetensors"), "half");
        Directory.CreateDirectory(dir.File(".model.tmp-0123456789ab")); // the older name, without a process id
        string live = dir.File($".model.tmp-{Environment.ProcessId}-feedfacefeed");
        Directory.CreateDirectory(live); // a writer still running (this process): kept
        var layout = new ParameterLayout(s_tied);
        using Arena arena = Filled(layout, seed: 4);

        ModelDirectory.Save(model, s_tied, layout, arena.All);

        Assert.Equal([".model.tmp-" + Environment.ProcessId + "-feedfacefeed", "model"], Siblings(dir));
    }

    [Fact]
    public void Save_KilledSwapLeftOnlyOldVersion_RestoredThenRefusedWithoutOverwrite()
    {
        using var dir = new TempDirectory();
        string model = dir.File("model");
        var layout = new ParameterLayout(s_tied);
        using Arena arena = Filled(layout, seed: 5);
        ModelDirectory.Save(model, s_tied, layout, arena.All);
        string old = dir.File($".model.old-{DeadProcessId()}-0123456789ab");
        Directory.Move(model, old); // as if killed between "rename aside" and "rename in"

        Assert.Throws<OutputExistsException>(() => ModelDirectory.Save(model, s_tied, layout, arena.All));

        Assert.Equal(["model"], Siblings(dir));
        Assert.True(File.Exists(Path.Combine(model, "model.safetensors")));
    }

    private static int DeadProcessId()
    {
        for (int pid = 4_000_000; ; pid--)
        {
            if (!Directory.Exists($"/proc/{pid}"))
            {
                return pid;
            }
        }
    }

    [Theory]
    [InlineData("config.json")]
    [InlineData("model.safetensors")]
    public void Save_FailureMidSave_LeavesExistingDirectoryUntouched(string failAfter)
    {
        using var dir = new TempDirectory();
        string model = dir.File("model");
        var layout = new ParameterLayout(s_tied);
        using Arena first = Filled(layout, seed: 1), second = Filled(layout, seed: 2);
        ModelDirectory.Save(model, s_tied, layout, first.All);
        byte[] weightsBefore = File.ReadAllBytes(Path.Combine(model, "model.safetensors"));
        string configBefore = File.ReadAllText(Path.Combine(model, "config.json"));

        Assert.Throws<IOException>(() => ModelDirectory.Save(model, s_tied with { RopeTheta = 500000 }, layout, second.All, long.MaxValue,
            path =>
            {
                if (Path.GetFileName(path) == failAfter)
                {
                    throw new IOException("simulated crash");
                }
            }, overwrite: true));

        Assert.Equal(weightsBefore, File.ReadAllBytes(Path.Combine(model, "model.safetensors")));
        Assert.Equal(configBefore, File.ReadAllText(Path.Combine(model, "config.json")));
        Assert.Equal(["model"], Siblings(dir));
    }

    [Fact]
    public void Save_FailureMidSave_LeavesNoTargetDirectory()
    {
        using var dir = new TempDirectory();
        string model = dir.File("model");
        var layout = new ParameterLayout(s_tied);
        using var arena = new Arena(layout.Plan);

        Assert.Throws<IOException>(() => ModelDirectory.Save(model, s_tied, layout, arena.All, 100_000,
            path =>
            {
                if (Path.GetFileName(path).StartsWith("model-00002-of-", StringComparison.Ordinal))
                {
                    throw new IOException("simulated crash");
                }
            }));

        Assert.Empty(Siblings(dir));
    }

    [Fact]
    public void Save_TargetIsAFile_ThrowsAndKeepsFile()
    {
        using var dir = new TempDirectory();
        string model = dir.File("model");
        File.WriteAllText(model, "not a directory");
        var layout = new ParameterLayout(s_tied);
        using var arena = new Arena(layout.Plan);

        var e = Assert.Throws<IOException>(() => ModelDirectory.Save(model, s_tied, layout, arena.All));

        Assert.Contains("exists as a file", e.Message, StringComparison.Ordinal);
        Assert.Equal("not a directory", File.ReadAllText(model));
        Assert.Equal(["model"], Siblings(dir));
    }

    [Fact]
    public void Save_ConfigDoesNotMatchLayout_ThrowsArgument()
    {
        using var dir = new TempDirectory();
        var layout = new ParameterLayout(s_tied);
        using var arena = new Arena(layout.Plan);
        Assert.Throws<ArgumentException>(() => ModelDirectory.Save(dir.File("model"), s_untied, layout, arena.All));
        Assert.Empty(Siblings(dir));
    }
}
