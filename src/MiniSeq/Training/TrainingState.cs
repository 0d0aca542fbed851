// Everything a run needs to continue exactly where it stopped, enumerated and saved next to the model's weights:
// the optimizer's state tensors (optimizer.safetensors, PyTorch state names), and the scalars — step (which is also
// the schedule position), the optimizer's name, the data source's RNG state and cursor (trainer_state.json). The
// parameters themselves are the model directory. Written in the same atomic directory write as the weights.
using System.Text.Json;
using System.Text.Json.Serialization;
using MiniSeq.IO;
using MiniSeq.Model;

namespace MiniSeq.Training;

/// <summary>The scalars of a training run's state.</summary>
public sealed record TrainingState
{
    /// <summary>Optimizer steps taken (the learning-rate schedule position too).</summary>
    [JsonPropertyName("step")] public int Step { get; init; }

    /// <summary>The optimizer rule's name.</summary>
    [JsonPropertyName("optimizer")] public string Optimizer { get; init; } = "adamw";

    /// <summary>State of the data source's random generator (null when the source draws no random numbers).</summary>
    [JsonPropertyName("rng_state")] public ulong? RngState { get; init; }

    /// <summary>How many batches the data source has handed out.</summary>
    [JsonPropertyName("data_cursor")] public long DataCursor { get; init; }

    /// <summary>Steps the learning-rate schedule spans (<see cref="Trainer.ScheduleSteps"/>); null in older files.</summary>
    [JsonPropertyName("schedule_steps")] public int? ScheduleSteps { get; init; }

    /// <summary>What defines the run (e.g. <c>config_fnv1a64</c>, <c>data</c>, <c>batch</c>, <c>optimizer.lr</c>), as
    /// strings, so that a resume with other settings is refused naming the first difference; null if not recorded.</summary>
    [JsonPropertyName("run")] public SortedDictionary<string, string>? Run { get; init; }

    /// <summary>The first difference between the run this state was saved from and <paramref name="current"/>, as
    /// "KEY: SAVED here, CURRENT now", or null if they agree (keys missing on either side count as different).</summary>
    public string? DifferenceFrom(IReadOnlyDictionary<string, string> current)
    {
        ArgumentNullException.ThrowIfNull(current);
        IReadOnlyDictionary<string, string> saved = Run ?? new SortedDictionary<string, string>();
        foreach (string key in saved.Keys.Union(current.Keys).Order(StringComparer.Ordinal))
        {
            string? a = saved.GetValueOrDefault(key), b = current.GetValueOrDefault(key);
            if (!string.Equals(a, b, StringComparison.Ordinal))
            {
                return $"{key} is {a ?? "(not recorded)"} in the checkpoint but {b ?? "(not set)"} in this run";
            }
        }

        return null;
    }
}

/// <summary>Saves and loads the training state next to a model.</summary>
public static class TrainingCheckpoint
{
    /// <summary>Optimizer state tensors, named <c>TENSOR/STATE</c> (e.g. <c>model.norm.weight/exp_avg</c>).</summary>
    public static string TensorsFileName => ModelDirectory.TrainingStateFiles[0];

    /// <summary>The scalars (<see cref="TrainingState"/>) as JSON.</summary>
    public static string StateFileName => ModelDirectory.TrainingStateFiles[1];

    private static readonly JsonSerializerOptions s_json = new() { WriteIndented = true };

    /// <summary>Every tensor of the state beyond the parameters, by name.</summary>
    public static IEnumerable<(string Name, Tensors.TensorView View)> Tensors(Trainer trainer)
    {
        ArgumentNullException.ThrowIfNull(trainer);
        return trainer.Optimizer.State.Select(s => ($"{s.TensorName}/{s.StateName}", s.View));
    }

    /// <summary>Writes the state files into <paramref name="directory"/> (e.g. the temporary directory of an atomic save).</summary>
    public static void Write(string directory, Trainer trainer, TrainingState state)
    {
        ArgumentNullException.ThrowIfNull(trainer);
        ArgumentNullException.ThrowIfNull(state);
        var writer = new SafeTensorsWriter();
        writer.Metadata["format"] = "miniseq-optimizer";
        foreach ((string name, Tensors.TensorView view) in Tensors(trainer))
        {
            writer.Add(name, [checked((int)view.Length)], view);
        }

        writer.Write(Path.Combine(directory, TensorsFileName));
        File.WriteAllText(Path.Combine(directory, StateFileName), JsonSerializer.Serialize(state with { Step = trainer.StepCount, Optimizer = trainer.Optimizer.Options.Name }, s_json) + "\n");
    }

    /// <summary>Saves the model (its LoRA adapters alone, as a PEFT directory, when attached) and its training state in
    /// one atomic write (see <see cref="ModelDirectory.Save(LlamaModel, string, bool, Action{string})"/>).</summary>
    public static void SaveCheckpoint(LlamaModel model, Trainer trainer, TrainingState state, string directory, bool overwrite, string? baseModel = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (model.Adapters is { } adapters)
        {
            PeftAdapter.Save(adapters, directory, baseModel, overwrite, temp => Write(temp, trainer, state));
        }
        else
        {
            model.Save(directory, overwrite, temp => Write(temp, trainer, state));
        }
    }

    /// <summary>Reads the scalars of <paramref name="directory"/> (trainer_state.json) without loading anything.</summary>
    /// <exception cref="FileNotFoundException">The directory holds no training state.</exception>
    /// <exception cref="InvalidDataException">The state file is not valid.</exception>
    public static TrainingState ReadState(string directory)
    {
        string statePath = Path.Combine(directory, StateFileName), tensorsPath = Path.Combine(directory, TensorsFileName);
        if (!File.Exists(statePath) || !File.Exists(tensorsPath))
        {
            throw new FileNotFoundException($"{directory}: no training state ({StateFileName} and {TensorsFileName}); it holds a model only.", statePath);
        }

        try
        {
            return JsonSerializer.Deserialize<TrainingState>(File.ReadAllText(statePath)) ?? throw new InvalidDataException($"{statePath}: empty.");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{statePath}: not valid JSON ({e.Message}).", e);
        }
    }

    /// <summary>Loads the optimizer state and step of <paramref name="directory"/> into <paramref name="trainer"/> and returns the scalars.</summary>
    /// <exception cref="InvalidDataException">The files are missing, of another optimizer, or do not match the model,
    /// or the weights beside them are not stored as F32 (rounded weights would not continue the run exactly).</exception>
    public static TrainingState Read(string directory, Trainer trainer)
    {
        ArgumentNullException.ThrowIfNull(trainer);
        string statePath = Path.Combine(directory, StateFileName), tensorsPath = Path.Combine(directory, TensorsFileName);
        TrainingState state = ReadState(directory);
        // An adapter checkpoint holds no base weights (the base comes from --model); its adapters are always F32.
        string[] rounded = PeftAdapter.Exists(directory) ? [] : ModelDirectory.StoredDTypes(directory).Where(d => d != SafeTensorsDType.F32).Select(SafeTensors.DTypeName).Order(StringComparer.Ordinal).ToArray();
        if (rounded.Length > 0)
        {
            throw new InvalidDataException($"{directory}: the weights are stored as {string.Join("/", rounded)}, not F32; the training state "
                + "belongs to the exact fp32 weights, so resuming from these would not continue the run. Resume from a checkpoint MiniSeq wrote (always F32).");
        }

        if (!string.Equals(state.Optimizer, trainer.Optimizer.Options.Name, StringComparison.OrdinalIgnoreCase))
        {
            throw new InvalidDataException($"{statePath}: the state is of optimizer '{state.Optimizer}' but this run uses '{trainer.Optimizer.Options.Name}'.");
        }

        // Under ZeRO-1 each rank holds part of some tensors: it reads the whole tensor and keeps its part.
        using SafeTensorsReader reader = SafeTensorsReader.Open(tensorsPath);
        foreach (OptimizerStatePiece piece in trainer.Optimizer.LocalState)
        {
            string name = $"{piece.TensorName}/{piece.StateName}";
            if (!reader.TryGetTensor(name, out SafeTensorInfo info) || !info.HasShape([checked((int)piece.TensorLength)]))
            {
                throw new InvalidDataException($"{tensorsPath}: tensor '{name}' is missing or of another shape; the state belongs to another model or optimizer setting.");
            }

            if (piece.View.Length == piece.TensorLength)
            {
                reader.ReadFloat32(info, piece.View);
            }
            else
            {
                using var whole = new MiniSeq.Tensors.NativeBuffer(piece.TensorLength, MiniSeq.Tensors.MemoryCategory.Scratch, name: "optimizer state being loaded");
                reader.ReadFloat32(info, whole.View);
                whole.View.Slice(piece.Offset, piece.View.Length).CopyTo(piece.View);
            }
        }

        trainer.Optimizer.RestoreStepCount(state.Step);
        return state;
    }
}
