// LoRA adapters as Hugging Face PEFT saves them: a directory with adapter_config.json (LoraConfig's fields) and
// adapter_model.safetensors (base_model.model.<module>.lora_A.weight / lora_B.weight), so that an adapter trained here
// loads with PeftModel.from_pretrained and one trained with PEFT loads here. Only plain LoRA is read: rsLoRA, DoRA,
// fan_in_fan_out, bias training, modules_to_save and per-layer patterns are refused with the field named.
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using MiniSeq.Model;
using MiniSeq.Model.Lora;

namespace MiniSeq.IO;

/// <summary>Reads and writes PEFT LoRA adapter directories.</summary>
public static class PeftAdapter
{
    /// <summary>The adapter's configuration file.</summary>
    public const string ConfigFileName = "adapter_config.json";

    /// <summary>The adapter's weights.</summary>
    public const string WeightsFileName = "adapter_model.safetensors";

    /// <summary>Files MiniSeq writes into an adapter directory (and so may replace with overwrite).</summary>
    public static bool IsOwnedFile(string fileName) => fileName is ConfigFileName or WeightsFileName || ModelDirectory.TrainingStateFiles.Contains(fileName);

    /// <summary>Whether <paramref name="directory"/> holds an adapter (its config file).</summary>
    public static bool Exists(string directory) => File.Exists(Path.Combine(directory, ConfigFileName));

    /// <summary>Reads the LoRA configuration of an adapter directory.</summary>
    /// <exception cref="InvalidDataException">Not a LoRA adapter, or a LoRA variant MiniSeq does not compute.</exception>
    public static LoraConfig ReadConfig(string directory)
    {
        string path = Path.Combine(directory, ConfigFileName);
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"{directory}: no {ConfigFileName}; pass a PEFT adapter directory (one saved by miniseq train --lora-rank or PeftModel.save_pretrained).", path);
        }

        JsonNode root = JsonNode.Parse(File.ReadAllText(path)) ?? throw new InvalidDataException($"{path}: empty JSON.");
        string? type = root["peft_type"]?.GetValue<string>();
        if (!string.Equals(type, "LORA", StringComparison.OrdinalIgnoreCase))
        {
            throw new InvalidDataException($"{path}: peft_type is {type ?? "missing"}; only LORA adapters are supported.");
        }

        Refuse(root, path, "use_rslora", n => n.GetValueKind() == JsonValueKind.True, "rsLoRA scaling");
        Refuse(root, path, "use_dora", n => n.GetValueKind() == JsonValueKind.True, "DoRA");
        Refuse(root, path, "fan_in_fan_out", n => n.GetValueKind() == JsonValueKind.True, "fan_in_fan_out (Conv1D weights)");
        Refuse(root, path, "bias", n => n.GetValueKind() == JsonValueKind.String && n.GetValue<string>() != "none", "trained biases");
        Refuse(root, path, "modules_to_save", n => n.GetValueKind() == JsonValueKind.Array && n.AsArray().Count > 0, "modules_to_save");
        Refuse(root, path, "layers_to_transform", n => n.GetValueKind() != JsonValueKind.Null, "layers_to_transform");
        Refuse(root, path, "rank_pattern", n => n.GetValueKind() == JsonValueKind.Object && n.AsObject().Count > 0, "rank_pattern");
        Refuse(root, path, "alpha_pattern", n => n.GetValueKind() == JsonValueKind.Object && n.AsObject().Count > 0, "alpha_pattern");
        JsonNode targets = root["target_modules"] ?? throw new InvalidDataException($"{path}: no target_modules.");
        IEnumerable<string> modules = targets.GetValueKind() == JsonValueKind.String
            ? [targets.GetValue<string>()]
            : targets.AsArray().Select(t => t!.GetValue<string>());
        try
        {
            var config = new LoraConfig
            {
                Rank = root["r"]?.GetValue<int>() ?? 8,
                Alpha = (float)(root["lora_alpha"]?.GetValue<double>() ?? 8),
                Dropout = (float)(root["lora_dropout"]?.GetValue<double>() ?? 0),
                Targets = LoraConfig.FromModules(modules),
            };
            config.Validate();
            return config;
        }
        catch (ArgumentException e)
        {
            throw new InvalidDataException($"{path}: {e.Message}", e);
        }
    }

    /// <summary>Attaches the adapters in <paramref name="directory"/> to <paramref name="model"/> and reads their weights.</summary>
    /// <exception cref="InvalidDataException">A tensor is missing, has another shape, or is not an adapter of this
    /// configuration (nothing is attached then).</exception>
    public static LoraAdapters Load(string directory, LlamaModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        LoraConfig config = ReadConfig(directory);
        string path = Path.Combine(directory, WeightsFileName);
        using SafeTensorsReader reader = SafeTensorsReader.Open(path);
        var layout = new LoraLayout(model.Layout, config);
        var byName = new Dictionary<string, SafeTensorInfo>(StringComparer.Ordinal);
        foreach (SafeTensorInfo tensor in reader.Tensors)
        {
            string name = Canonical(tensor.Name);
            if (!layout.TryGet(name, out _))
            {
                throw new InvalidDataException($"{path}: tensor {tensor.Name} is not an adapter of r={config.Rank} on {string.Join(", ", config.TargetModules)} for this model.");
            }

            byName[name] = tensor;
        }

        foreach (ParameterInfo info in layout.Tensors)
        {
            SafeTensorInfo tensor = byName.GetValueOrDefault(info.Name)
                ?? throw new InvalidDataException($"{path}: tensor {info.Name} is missing.");
            if (!tensor.Shape.Select(d => (long)d).SequenceEqual(info.Shape.Select(d => (long)d)))
            {
                throw new InvalidDataException($"{path}: tensor {tensor.Name} has shape [{string.Join(", ", tensor.Shape)}], expected {info.ShapeText}.");
            }
        }

        LoraAdapters adapters = model.AttachAdapters(config);
        foreach (ParameterInfo info in adapters.Layout.Tensors)
        {
            reader.ReadFloat32(byName[info.Name], adapters.Weights[info.Slot]);
        }

        if (ParameterHealth.FindUnhealthy(adapters.Layout.Tensors, adapters.Weights.All) is UnhealthyTensor bad)
        {
            throw new InvalidDataException($"{path}: tensor {bad}: the adapter is unusable.");
        }

        return adapters;
    }

    /// <summary>Checks before long work that <paramref name="directory"/> can receive an adapter.</summary>
    public static void CheckSaveTarget(string directory, bool overwrite) => AtomicDirectory.CheckWritable(directory, overwrite, IsOwnedFile);

    /// <summary>Writes <paramref name="adapters"/> as a PEFT adapter directory (atomically; files MiniSeq does not own
    /// are never touched), plus whatever <paramref name="writeExtra"/> adds (the training state).</summary>
    public static void Save(LoraAdapters adapters, string directory, string? baseModel, bool overwrite = false, Action<string>? writeExtra = null)
    {
        ArgumentNullException.ThrowIfNull(adapters);
        if (ParameterHealth.FindUnhealthy(adapters.Layout.Tensors, adapters.Weights.All) is UnhealthyTensor bad)
        {
            throw new InvalidDataException($"{directory}: not saved: tensor {bad} — the adapter is unusable (did training diverge?).");
        }

        LoraConfig lora = adapters.Config;
        var config = new JsonObject
        {
            ["peft_type"] = "LORA",
            ["task_type"] = "CAUSAL_LM",
            ["base_model_name_or_path"] = baseModel,
            ["r"] = lora.Rank,
            ["lora_alpha"] = lora.Alpha,
            ["lora_dropout"] = lora.Dropout,
            ["target_modules"] = new JsonArray(lora.TargetModules.Select(m => (JsonNode?)JsonValue.Create(m)).ToArray()),
            ["bias"] = "none",
            ["fan_in_fan_out"] = false,
            ["use_rslora"] = false,
            ["use_dora"] = false,
            ["init_lora_weights"] = true,
            ["inference_mode"] = true,
            ["modules_to_save"] = null,
            ["revision"] = null,
        };
        AtomicDirectory.Write(directory, temp =>
        {
            var writer = new SafeTensorsWriter();
            writer.Metadata["format"] = "pt";
            foreach (ParameterInfo info in adapters.Layout.Tensors)
            {
                writer.Add(info.Name, info.Shape, adapters.Weights[info.Slot]);
            }

            writer.Write(Path.Combine(temp, WeightsFileName));
            File.WriteAllText(Path.Combine(temp, ConfigFileName), config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
            writeExtra?.Invoke(temp);
        }, IsOwnedFile, overwrite);
    }

    /// <summary>PEFT keeps the adapter name in memory (<c>lora_A.default.weight</c>) and drops it when saving; accept both.</summary>
    private static string Canonical(string name) => name.Replace(".lora_A.default.", ".lora_A.", StringComparison.Ordinal).Replace(".lora_B.default.", ".lora_B.", StringComparison.Ordinal);

    private static void Refuse(JsonNode root, string path, string field, Func<JsonNode, bool> unsupported, string what)
    {
        if (root[field] is JsonNode node && unsupported(node))
        {
            throw new InvalidDataException(string.Create(CultureInfo.InvariantCulture, $"{path}: {field} = {node.ToJsonString()}: {what} is not supported; MiniSeq computes plain LoRA."));
        }
    }
}
