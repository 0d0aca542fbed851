// A Hugging Face model directory: config.json plus model.safetensors, or plus model.safetensors.index.json and the
// shards it names. Reads weights into the parameter arena by HF name with exact shape checks, and saves atomically,
// as F32 (exact, the default) or BF16 (rounded to nearest even, as Hugging Face checkpoints usually are). A save with
// training state (a checkpoint to resume from) is always F32: a resume must start from the exact weights.
// Deliberately not: tokenizer files, PyTorch .bin checkpoints, or saving as F16 (overflow past 65504).
using System.Text.Json;
using System.Text.Json.Nodes;
using MiniSeq.Diagnostics;
using MiniSeq.Model;
using MiniSeq.Tensors;

namespace MiniSeq.IO;

/// <summary>Reads and writes Hugging Face model directories (<c>config.json</c> + safetensors weights).</summary>
public static partial class ModelDirectory
{
    /// <summary>The config file name.</summary>
    public const string ConfigFileName = "config.json";

    /// <summary>The single-file weights name.</summary>
    public const string WeightsFileName = "model.safetensors";

    /// <summary>The shard index name (<c>weight_map</c>: tensor name → shard file).</summary>
    public const string IndexFileName = "model.safetensors.index.json";

    private const int MissingNamesShown = 5;

    /// <summary>Reads and validates <c>config.json</c> of <paramref name="directory"/>.</summary>
    /// <exception cref="DirectoryNotFoundException">The directory does not exist.</exception>
    /// <exception cref="FileNotFoundException">There is no config.json.</exception>
    /// <exception cref="InvalidDataException">config.json is malformed or not a valid Llama config.</exception>
    public static LlamaConfig ReadConfig(string directory)
    {
        RequireDirectory(directory);
        return LlamaConfig.Load(Path.Combine(directory, ConfigFileName));
    }

    /// <summary>Loads a Hugging Face model directory (config.json + model.safetensors or a sharded index) into a new model.</summary>
    /// <remarks>With <paramref name="bf16Projections"/> the projection weights are kept as bf16 (rounded to nearest even;
    /// exact when the file holds BF16): a frozen base for LoRA in half the memory.</remarks>
    public static LlamaModel Load(string directory, MemoryLedger? ledger = null, Action<string>? warn = null, bool bf16Projections = false)
    {
        LlamaConfig config = ReadConfig(directory);
        var model = new LlamaModel(config, ledger, bf16Projections);
        try
        {
            ReadWeights(directory, model.Layout, model.Parameters.All, warn);
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>Writes the model's config.json and model.safetensors (HF names; F32, or <paramref name="dtype"/>)
    /// atomically; see <see cref="Save(string, LlamaConfig, ParameterLayout, TensorView, bool, SafeTensorsDType)"/>.</summary>
    public static void Save(this LlamaModel model, string directory, bool overwrite = false, SafeTensorsDType dtype = SafeTensorsDType.F32)
    {
        ArgumentNullException.ThrowIfNull(model);
        Save(directory, model.Config, model.Layout, model.Parameters.All, long.MaxValue, afterFileWritten: null, overwrite, dtype: dtype);
    }

    /// <summary>Saves the model as <see cref="Save(LlamaModel, string, bool, SafeTensorsDType)"/> does (always F32: this
    /// is the checkpoint a run resumes from, exactly), and in the same atomic write the files <paramref name="writeExtra"/>
    /// puts into the directory it is given (names from <see cref="TrainingStateFiles"/>).</summary>
    public static void Save(this LlamaModel model, string directory, bool overwrite, Action<string> writeExtra)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(writeExtra);
        Save(directory, model.Config, model.Layout, model.Parameters.All, long.MaxValue, afterFileWritten: null, overwrite, writeExtra);
    }

    /// <summary>Files of the training state MiniSeq writes next to a model (so owned, replaceable with overwrite).</summary>
    public static IReadOnlyList<string> TrainingStateFiles { get; } = ["optimizer.safetensors", "trainer_state.json"];

    /// <summary>Reads every tensor of <paramref name="layout"/> from the directory's safetensors into <paramref name="parameters"/>.</summary>
    /// <param name="directory">A directory with <c>model.safetensors</c> or <c>model.safetensors.index.json</c> and its shards.</param>
    /// <param name="layout">Which tensors to read, their shapes and their slots.</param>
    /// <param name="parameters">The parameter arena (at least <c>layout.Plan.TotalBytes</c> bytes).</param>
    /// <param name="warn">Receives one message per RoPE buffer in the files (<c>….rotary_emb.inv_freq</c>), which is
    /// skipped. With tied embeddings a <c>lm_head.weight</c> is skipped silently. Any other tensor the layout does not
    /// use (a bias, a q/k norm) is an error: ignoring it would compute a different model.</param>
    /// <remarks>All headers are validated (presence and exact shape of every tensor) before any data is read. F32,
    /// BF16, F16 and F64 data are converted to float32.</remarks>
    /// <exception cref="FileNotFoundException">Neither weights file exists, or a shard named by the index is missing.</exception>
    /// <exception cref="InvalidDataException">A file is malformed, a tensor is missing, or a shape differs from what
    /// config.json implies.</exception>
    public static void ReadWeights(string directory, ParameterLayout layout, TensorView parameters, Action<string>? warn = null)
    {
        ArgumentNullException.ThrowIfNull(layout);
        RequireArena(layout, parameters);
        RequireDirectory(directory);

        Dictionary<string, string> fileOf = ResolveWeightFiles(directory, out string listing);
        var readers = new Dictionary<string, SafeTensorsReader>(StringComparer.Ordinal);
        try
        {
            SafeTensorsReader ReaderFor(string file)
            {
                if (!readers.TryGetValue(file, out SafeTensorsReader? reader))
                {
                    string path = Path.Combine(directory, file);
                    if (!File.Exists(path))
                    {
                        throw new FileNotFoundException(
                            $"{path}: shard named by {Path.Combine(directory, IndexFileName)} is missing. Copy or download every shard listed in the index.", path);
                    }

                    reader = SafeTensorsReader.Open(path);
                    readers.Add(file, reader);
                }

                return reader;
            }

            // Pass 1: every layout tensor present with the exact shape; nothing is read yet.
            var missing = new List<string>();
            var plan = new List<(ParameterInfo Parameter, SafeTensorsReader Reader, SafeTensorInfo Tensor)>(layout.Tensors.Count);
            foreach (ParameterInfo parameter in layout.Tensors)
            {
                if (!fileOf.TryGetValue(parameter.Name, out string? file))
                {
                    missing.Add(parameter.Name);
                    continue;
                }

                SafeTensorsReader reader = ReaderFor(file);
                if (!reader.TryGetTensor(parameter.Name, out SafeTensorInfo tensor))
                {
                    Throw.InvalidData(reader.Path,
                        $"tensor '{parameter.Name}' is missing although {IndexFileName} maps it to this shard",
                        "The index and the shards do not belong together; copy or download the checkpoint again.");
                }

                if (!tensor.HasShape(parameter.Shape))
                {
                    Throw.InvalidData(reader.Path,
                        $"tensor '{parameter.Name}' has shape {tensor.ShapeText} but config.json implies {parameter.ShapeText}",
                        $"Use the config.json that belongs to these weights (expected shape {parameter.ShapeText} from config.json: {Describe(layout.Config)}).");
                }

                if (!SafeTensors.IsConvertibleToFloat(tensor.DType))
                {
                    Throw.InvalidData(reader.Path,
                        $"tensor '{parameter.Name}' has dtype {SafeTensors.DTypeName(tensor.DType)}, which cannot be read as float32",
                        "Export the weights as F32, BF16 or F16 (quantised checkpoints are not supported).");
                }

                plan.Add((parameter, reader, tensor));
            }

            if (missing.Count > 0)
            {
                string shown = string.Join(", ", missing.Take(MissingNamesShown));
                string more = missing.Count > MissingNamesShown ? $" and {missing.Count - MissingNamesShown} more" : "";
                string hint = missing.Contains(HfTensorNames.LmHead) && missing.Count == 1
                    ? "The checkpoint has no separate LM head: set \"tie_word_embeddings\": true in config.json if the model shares its embedding matrix."
                    : "Check that the checkpoint is a Llama model matching config.json (num_hidden_layers, tie_word_embeddings).";
                Throw.InvalidData(listing, $"{missing.Count} of {layout.Tensors.Count} tensors are missing: {shown}{more}", hint);
            }

            var foreign = new List<string>();
            foreach (string name in fileOf.Keys.Order(StringComparer.Ordinal))
            {
                if (layout.TryGet(name, out _) || (name == HfTensorNames.LmHead && layout.Config.TieWordEmbeddings))
                {
                    continue;
                }

                if (name.EndsWith(".rotary_emb.inv_freq", StringComparison.Ordinal))
                {
                    // A buffer older checkpoints saved; RoPE is recomputed from rope_theta.
                    warn?.Invoke($"{Path.Combine(directory, fileOf[name])}: ignoring tensor '{name}', which a Llama model does not use.");
                    continue;
                }

                foreign.Add(name);
            }

            if (foreign.Count > 0)
            {
                // Biases, q/k norms, experts …: ignoring them would compute a different model without a word.
                string shown = string.Join(", ", foreign.Take(MissingNamesShown));
                string more = foreign.Count > MissingNamesShown ? $" and {foreign.Count - MissingNamesShown} more" : "";
                Throw.InvalidData(listing, $"{foreign.Count} tensors are not part of a Llama model: {shown}{more}",
                    "The checkpoint computes something MiniSeq does not implement (e.g. projection biases or q/k norms); it was not loaded.");
            }

            // Pass 2: read.
            foreach ((ParameterInfo parameter, SafeTensorsReader reader, SafeTensorInfo tensor) in plan)
            {
                if (parameter.Slot.Type == ElementType.BF16)
                {
                    ReadAsBf16(reader, tensor, parameter, parameters);
                    continue;
                }

                reader.ReadFloat32(tensor, parameters.Slice(parameter.Slot.Offset, parameter.Slot.Length));
            }
        }
        finally
        {
            foreach (SafeTensorsReader reader in readers.Values)
            {
                reader.Dispose();
            }
        }
    }

    /// <summary>Writes <c>config.json</c> and <c>model.safetensors</c> (Hugging Face names) atomically.</summary>
    /// <param name="directory">Created; or, with <paramref name="overwrite"/>, updated: MiniSeq's own files in it
    /// (<see cref="IsOwnedFile"/>) are replaced or removed, every other file is kept. A non-empty directory without
    /// <paramref name="overwrite"/> is refused (<see cref="OutputExistsException"/>).</param>
    /// <param name="config">Written as config.json; must describe the same tensors as <paramref name="layout"/>.</param>
    /// <param name="layout">Which tensors to write (the tied LM head is written once, as the embedding).</param>
    /// <param name="parameters">The parameter arena.</param>
    /// <param name="overwrite">Whether a non-empty directory may be updated.</param>
    /// <param name="dtype">How the weights are stored: <see cref="SafeTensorsDType.F32"/> (exact, the default) or
    /// <see cref="SafeTensorsDType.BF16"/> (each value rounded to nearest even, half the bytes; config.json then says
    /// <c>"torch_dtype": "bfloat16"</c>). Loading widens BF16 back to fp32, exactly the rounded values.</param>
    /// <remarks>The files are written into a temporary sibling directory, flushed to disk, and renamed into place
    /// (<see cref="AtomicDirectory"/>): a crash at any point leaves the previous files or the new ones, never a partial
    /// file. Parameters with NaN/Inf (or diverged) values are never saved: <see cref="InvalidDataException"/>.</remarks>
    /// <exception cref="ArgumentException"><paramref name="dtype"/> is neither F32 nor BF16.</exception>
    public static void Save(string directory, LlamaConfig config, ParameterLayout layout, TensorView parameters, bool overwrite = false, SafeTensorsDType dtype = SafeTensorsDType.F32)
        => Save(directory, config, layout, parameters, long.MaxValue, afterFileWritten: null, overwrite, dtype: dtype);

    /// <summary>The weight storage of a save option: <c>f32</c> (also <c>fp32</c>, <c>float32</c>) or <c>bf16</c> (also
    /// <c>bfloat16</c>), case-insensitive.</summary>
    /// <exception cref="ArgumentException">Anything else (the message names <paramref name="optionName"/> and the value).</exception>
    public static SafeTensorsDType ParseSaveDType(string value, string optionName = "--save-dtype")
    {
        ArgumentNullException.ThrowIfNull(value);
        return value.Trim().ToLowerInvariant() switch
        {
            "f32" or "fp32" or "float32" => SafeTensorsDType.F32,
            "bf16" or "bfloat16" => SafeTensorsDType.BF16,
            _ => throw new ArgumentException($"{optionName} must be f32 or bf16 (got '{value}')."),
        };
    }

    /// <summary>The dtypes of the weights stored in <paramref name="directory"/> (headers only; nothing is read).</summary>
    public static IReadOnlySet<SafeTensorsDType> StoredDTypes(string directory)
    {
        RequireDirectory(directory);
        var dtypes = new HashSet<SafeTensorsDType>();
        foreach (string file in ResolveWeightFiles(directory, out _).Values.Distinct(StringComparer.Ordinal))
        {
            string path = Path.Combine(directory, file);
            if (File.Exists(path))
            {
                using SafeTensorsReader reader = SafeTensorsReader.Open(path);
                dtypes.UnionWith(reader.Tensors.Select(t => t.DType));
            }
        }

        return dtypes;
    }

    /// <summary>Whether <paramref name="fileName"/> is one MiniSeq writes into a model directory (and so may replace
    /// or remove there with overwrite): config.json, model.safetensors, the shard index and its shards.</summary>
    public static bool IsOwnedFile(string fileName)
        => fileName is ConfigFileName or WeightsFileName or IndexFileName || ShardName().IsMatch(fileName) || TrainingStateFiles.Contains(fileName);

    /// <summary>Throws before any work if <paramref name="directory"/> cannot be saved to (see <see cref="AtomicDirectory.CheckWritable"/>).</summary>
    public static void CheckSaveTarget(string directory, bool overwrite) => AtomicDirectory.CheckWritable(directory, overwrite, IsOwnedFile);

    [System.Text.RegularExpressions.GeneratedRegex(@"^model-\d{5}-of-\d{5}\.safetensors$")]
    private static partial System.Text.RegularExpressions.Regex ShardName();

    /// <summary>Like <see cref="Save(string, LlamaConfig, ParameterLayout, TensorView, bool, SafeTensorsDType)"/> but splits the weights into
    /// shards of at most <paramref name="maxShardBytes"/> data bytes (a larger tensor gets a shard of its own):
    /// <c>model-00001-of-0000N.safetensors</c> and <c>model.safetensors.index.json</c>. When everything fits in one
    /// shard, writes <c>model.safetensors</c> and no index, as Transformers does.</summary>
    public static void SaveSharded(string directory, LlamaConfig config, ParameterLayout layout, TensorView parameters, long maxShardBytes, bool overwrite = false, SafeTensorsDType dtype = SafeTensorsDType.F32)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxShardBytes);
        Save(directory, config, layout, parameters, maxShardBytes, afterFileWritten: null, overwrite, dtype: dtype);
    }

    /// <summary>The save with a test hook called with each file's path after it is written (it may throw to
    /// simulate a crash mid-save).</summary>
    internal static void Save(string directory, LlamaConfig config, ParameterLayout layout, TensorView parameters,
        long maxShardBytes, Action<string>? afterFileWritten, bool overwrite = false, Action<string>? writeExtra = null,
        SafeTensorsDType dtype = SafeTensorsDType.F32)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(layout);
        if (layout.Bf16Projections)
        {
            throw new ArgumentException("The model's projections are held as bf16 (a frozen LoRA base): save the adapter, or load the base in fp32 to save a model.", nameof(layout));
        }

        string torchDtype = dtype switch
        {
            SafeTensorsDType.F32 => "float32",
            SafeTensorsDType.BF16 => "bfloat16",
            _ => throw new ArgumentException($"Models are saved as F32 or BF16, not {SafeTensors.DTypeName(dtype)}.", nameof(dtype)),
        };
        if (writeExtra is not null && dtype != SafeTensorsDType.F32)
        {
            throw new ArgumentException("Training state is saved only next to F32 weights: a resume from rounded weights would not continue the run exactly.", nameof(dtype));
        }
        RequireArena(layout, parameters);
        RequireSameTensors(config, layout);
        CheckSaveTarget(directory, overwrite);
        if (ParameterHealth.FindUnhealthy(layout, parameters) is UnhealthyTensor bad)
        {
            throw new InvalidDataException($"{directory}: not saved: tensor {bad} — a model with such weights is unusable (did training diverge?).");
        }

        // Greedy shards in storage order.
        var shards = new List<List<ParameterInfo>>();
        long shardBytes = 0;
        foreach (ParameterInfo parameter in layout.Tensors)
        {
            long bytes = parameter.ElementCount * SafeTensors.ElementSize(dtype);
            if (shards.Count == 0 || (shardBytes + bytes > maxShardBytes && shards[^1].Count > 0))
            {
                shards.Add([]);
                shardBytes = 0;
            }

            shards[^1].Add(parameter);
            shardBytes += bytes;
        }

        AtomicDirectory.Write(directory, temp =>
        {
            string configPath = Path.Combine(temp, ConfigFileName);
            File.WriteAllText(configPath, config.ToJson(torchDtype) + "\n");
            afterFileWritten?.Invoke(configPath);

            var weightMap = new SortedDictionary<string, string>(StringComparer.Ordinal);
            for (int s = 0; s < shards.Count; s++)
            {
                string file = shards.Count == 1 ? WeightsFileName : $"model-{s + 1:D5}-of-{shards.Count:D5}.safetensors";
                var writer = new SafeTensorsWriter();
                writer.Metadata["format"] = "pt";
                foreach (ParameterInfo parameter in shards[s])
                {
                    writer.Add(parameter.Name, parameter.Shape, parameters.Slice(parameter.Slot.Offset, parameter.Slot.Length), dtype);
                    weightMap[parameter.Name] = file;
                }

                string path = Path.Combine(temp, file);
                writer.Write(path);
                afterFileWritten?.Invoke(path);
            }

            if (shards.Count > 1)
            {
                var index = new JsonObject
                {
                    ["metadata"] = new JsonObject { ["total_size"] = layout.ParameterCount * SafeTensors.ElementSize(dtype) },
                    ["weight_map"] = new JsonObject(weightMap.Select(p => KeyValuePair.Create(p.Key, (JsonNode?)JsonValue.Create(p.Value)))),
                };
                string indexPath = Path.Combine(temp, IndexFileName);
                File.WriteAllText(indexPath, index.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
                afterFileWritten?.Invoke(indexPath);
            }

            writeExtra?.Invoke(temp);
        }, IsOwnedFile, overwrite);
    }

    /// <summary>Tensor name → file (relative to the directory); <paramref name="listing"/> is the file that lists them.</summary>
    private static Dictionary<string, string> ResolveWeightFiles(string directory, out string listing)
    {
        string single = Path.Combine(directory, WeightsFileName);
        string indexPath = Path.Combine(directory, IndexFileName);
        var fileOf = new Dictionary<string, string>(StringComparer.Ordinal);
        if (File.Exists(single))
        {
            listing = single;
            using SafeTensorsReader reader = SafeTensorsReader.Open(single);
            foreach (SafeTensorInfo tensor in reader.Tensors)
            {
                fileOf[tensor.Name] = WeightsFileName;
            }

            return fileOf;
        }

        if (!File.Exists(indexPath))
        {
            string hint = File.Exists(Path.Combine(directory, "pytorch_model.bin")) || File.Exists(Path.Combine(directory, "pytorch_model.bin.index.json"))
                ? "The directory holds a PyTorch .bin checkpoint: convert it with model.save_pretrained(dir, safe_serialization=True)."
                : "Pass a Hugging Face model directory, or create one with ModelDirectory.Save.";
            throw new FileNotFoundException($"{directory}: neither {WeightsFileName} nor {IndexFileName} exists. {hint}", single);
        }

        listing = indexPath;
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(File.ReadAllBytes(indexPath));
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{indexPath}: not valid JSON ({e.Message}). Re-create the index with save_pretrained.", e);
        }

        using (document)
        {
            JsonElement map = default;
            if (document.RootElement.ValueKind != JsonValueKind.Object
                || !document.RootElement.TryGetProperty("weight_map", out map)
                || map.ValueKind != JsonValueKind.Object)
            {
                Throw.InvalidData(indexPath, "has no \"weight_map\" object (tensor name → shard file)", "Re-create the index with save_pretrained.");
            }

            foreach (JsonProperty entry in map.EnumerateObject())
            {
                string? file = entry.Value.ValueKind == JsonValueKind.String ? entry.Value.GetString() : null;
                if (string.IsNullOrEmpty(file) || file != Path.GetFileName(file) || file is "." or "..")
                {
                    Throw.InvalidData(indexPath, $"weight_map entry for tensor '{entry.Name}' is {entry.Value.GetRawText()}, not a shard file name in this directory",
                        "Re-create the index with save_pretrained.");
                }

                fileOf[entry.Name] = file;
            }
        }

        return fileOf;
    }

    private static void RequireDirectory(string directory)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        if (!Directory.Exists(directory))
        {
            throw new DirectoryNotFoundException($"{directory}: model directory not found. Pass a directory with config.json and model.safetensors.");
        }
    }

    /// <summary>Reads one tensor as fp32 through a staging buffer and rounds it into its bf16 slot.</summary>
    private static unsafe void ReadAsBf16(SafeTensorsReader reader, SafeTensorInfo tensor, ParameterInfo parameter, TensorView parameters)
    {
        using var staging = new NativeBuffer(parameter.ElementCount, MemoryCategory.Scratch, null, "bf16 load staging");
        reader.ReadFloat32(tensor, staging.View);
        Kernels.BFloat16.FromFloat(staging.Pointer, (ushort*)((byte*)parameters.Pointer + parameter.Slot.ByteOffset), parameter.ElementCount);
    }

    private static void RequireArena(ParameterLayout layout, TensorView parameters)
    {
        if (parameters.Length * sizeof(float) < layout.Plan.TotalBytes)
        {
            throw new ArgumentException(
                $"The parameter view holds {parameters.Length} floats but the layout needs {layout.Plan.TotalBytes / sizeof(float)}; allocate it with new Arena(layout.Plan).",
                nameof(parameters));
        }
    }

    private static void RequireSameTensors(LlamaConfig config, ParameterLayout layout)
    {
        var expected = new ParameterLayout(config);
        bool same = expected.Tensors.Count == layout.Tensors.Count
            && expected.Tensors.Zip(layout.Tensors).All(p => p.First.Name == p.Second.Name && p.First.Shape.AsSpan().SequenceEqual(p.Second.Shape));
        if (!same)
        {
            throw new ArgumentException("The config to save describes different tensors than the parameter layout; build the layout from this config.", nameof(config));
        }
    }

    private static string Describe(LlamaConfig c)
        => $"hidden_size {c.HiddenSize}, intermediate_size {c.IntermediateSize}, num_attention_heads {c.NumAttentionHeads}, "
            + $"num_key_value_heads {c.NumKeyValueHeads}, head_dim {c.HeadDim}, vocab_size {c.VocabSize}";

    /// <summary>
    /// Copies tokenizer.json (and tokenizer_config.json beside it, if any) into <paramref name="directory"/>, each via a
    /// temporary and a rename, unless a file of that name is already there: a user's file is never replaced. Returns
    /// the paths that were kept.
    /// </summary>
    public static IReadOnlyList<string> CopyTokenizerFiles(string tokenizerPath, string directory)
    {
        (string file, string config) = Text.Tokenizer.Files(tokenizerPath);
        var kept = new List<string>();
        foreach ((string source, string name) in new[] { (file, "tokenizer.json"), (config, "tokenizer_config.json") })
        {
            string target = Path.Combine(directory, name);
            if (!File.Exists(source) || AtomicDirectory.SameDirectory(source, target))
            {
                continue;
            }

            if (File.Exists(target))
            {
                kept.Add(target);
                continue;
            }

            string temp = target + $".tmp-{Environment.ProcessId}";
            File.Copy(source, temp, overwrite: true);
            File.Move(temp, target);
        }

        return kept;
    }
}
