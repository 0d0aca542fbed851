// Periodic checkpoints of a training run: DIR/checkpoint-STEP directories, each a model directory with its training
// state (written atomically by TrainingCheckpoint.SaveCheckpoint), found again for a resume, pruned to the newest L,
// and the description of a run (config hash, data, batch, optimizer…) that a resume must match to be bit-identical.
using System.Globalization;
using MiniSeq.IO;
using MiniSeq.Model;
using MiniSeq.Training.Data;

namespace MiniSeq.Training;

/// <summary>The <c>checkpoint-STEP</c> directories under a save directory.</summary>
public static class Checkpoints
{
    private const string Prefix = "checkpoint-";

    /// <summary>The directory name of the checkpoint after <paramref name="step"/> steps.</summary>
    public static string Name(int step) => Prefix + step.ToString(CultureInfo.InvariantCulture);

    /// <summary>The complete checkpoints MiniSeq wrote under <paramref name="directory"/> (a <c>checkpoint-STEP</c>
    /// directory holding a trainer_state.json and weights), oldest first.</summary>
    public static IReadOnlyList<(int Step, string Path)> List(string directory)
    {
        if (!Directory.Exists(directory))
        {
            return [];
        }

        var found = new List<(int, string)>();
        foreach (string path in Directory.EnumerateDirectories(directory, Prefix + "*"))
        {
            string name = System.IO.Path.GetFileName(path);
            if (int.TryParse(name.AsSpan(Prefix.Length), NumberStyles.None, CultureInfo.InvariantCulture, out int step)
                && name == Name(step) && IsCheckpoint(path))
            {
                found.Add((step, path));
            }
        }

        return found.OrderBy(c => c.Item1).ToList();
    }

    /// <summary>Whether <paramref name="directory"/> is a model directory with its training state.</summary>
    public static bool IsCheckpoint(string directory)
        => File.Exists(System.IO.Path.Combine(directory, TrainingCheckpoint.StateFileName))
            && File.Exists(System.IO.Path.Combine(directory, TrainingCheckpoint.TensorsFileName))
            && (File.Exists(System.IO.Path.Combine(directory, ModelDirectory.ConfigFileName)) || PeftAdapter.Exists(directory));

    /// <summary>The directory to resume from: <paramref name="path"/> itself if it is a checkpoint, else its newest
    /// complete <c>checkpoint-*</c>.</summary>
    /// <exception cref="DirectoryNotFoundException">Neither.</exception>
    public static string Resolve(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!Directory.Exists(path))
        {
            throw new DirectoryNotFoundException($"--resume {path}: no such directory.");
        }

        // The newest of the checkpoints in it and (a completed run's final save) the directory itself.
        var all = List(path).ToList();
        if (IsCheckpoint(path))
        {
            all.Add((TrainingCheckpoint.ReadState(path).Step, path));
        }

        // A model without training state (a plain --save, or a --save-dtype bf16 export) cannot be resumed exactly.
        string modelOnly = File.Exists(System.IO.Path.Combine(path, ModelDirectory.ConfigFileName))
            ? " It holds a model without training state (a final export: --save without --save-every, or --save-dtype bf16); train from it with --model instead."
            : "";
        return all.Count > 0
            ? all.MaxBy(c => c.Step).Path
            : throw new DirectoryNotFoundException($"--resume {path}: neither a checkpoint (weights and {TrainingCheckpoint.StateFileName}) nor a directory with checkpoint-* in it.{modelOnly}");
    }

    /// <summary>Deletes all but the newest <paramref name="keep"/> checkpoints under <paramref name="directory"/>;
    /// only <c>checkpoint-STEP</c> directories MiniSeq wrote (see <see cref="List"/>) are ever deleted.</summary>
    public static void Prune(string directory, int keep)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(keep, 1);
        IReadOnlyList<(int Step, string Path)> all = List(directory);
        foreach ((int _, string path) in all.Take(Math.Max(0, all.Count - keep)))
        {
            // Only our own files are in it; delete them, then the (now empty) directory.
            foreach (string file in Directory.EnumerateFileSystemEntries(path))
            {
                if (File.Exists(file) && IsOwnedFile(System.IO.Path.GetFileName(file)))
                {
                    File.Delete(file);
                }
            }

            if (!Directory.EnumerateFileSystemEntries(path).Any())
            {
                Directory.Delete(path);
            }
        }
    }

    /// <summary>Whether <paramref name="directory"/> holds nothing but MiniSeq's own files, checkpoints and
    /// temporaries of atomic writes (so a resumed run may write into it).</summary>
    public static bool HoldsOnlyOwn(string directory)
    {
        if (!Directory.Exists(directory))
        {
            return true;
        }

        HashSet<string> checkpoints = List(directory).Select(c => c.Path).ToHashSet(StringComparer.Ordinal);
        foreach (string entry in Directory.EnumerateFileSystemEntries(directory))
        {
            string name = System.IO.Path.GetFileName(entry);
            bool own = File.Exists(entry)
                ? IsOwnedFile(name) || name is "tokenizer.json" or "tokenizer_config.json" // train copies these beside the model; never replaced
                : checkpoints.Contains(entry) || (name.StartsWith("." + Prefix, StringComparison.Ordinal) && (name.Contains(".tmp-", StringComparison.Ordinal) || name.Contains(".old-", StringComparison.Ordinal)));
            if (!own)
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>Files MiniSeq writes into a checkpoint: a model's, or an adapter's, and the training state.</summary>
    private static bool IsOwnedFile(string name) => ModelDirectory.IsOwnedFile(name) || PeftAdapter.IsOwnedFile(name);

    /// <summary>Removes temporaries of checkpoint writes under <paramref name="directory"/> left by killed processes.</summary>
    public static void RemoveStaleTemporaries(string directory)
    {
        if (!Directory.Exists(directory))
        {
            return;
        }

        foreach (string entry in Directory.EnumerateDirectories(directory, "." + Prefix + "*").ToArray())
        {
            string name = System.IO.Path.GetFileName(entry);
            int cut = Math.Max(name.LastIndexOf(".tmp-", StringComparison.Ordinal), name.LastIndexOf(".old-", StringComparison.Ordinal));
            if (cut > 1)
            {
                string target = name[1..cut];
                AtomicDirectory.RemoveStaleTemporaries(directory, target, System.IO.Path.Combine(directory, target));
            }
        }
    }

    /// <summary>FNV-1a 64 of a file's bytes, lower-case hex (<see cref="Fnv1a"/>): enough to tell a changed file.</summary>
    public static string FileHash(string path) => Fnv1a.Hex(Fnv1a.OfFile(path));

    /// <summary>FNV-1a 64 of a string's UTF-8 bytes, lower-case hex.</summary>
    public static string TextHash(string text) => Fnv1a.Hex(Fnv1a.OfText(text));

    /// <summary>What a resumed run must share with the saved one to continue bit-identically: the model config (hash),
    /// the data (<paramref name="data"/>), the batch shape, micro-batch, step count and every optimizer and loss option.</summary>
    public static SortedDictionary<string, string> Identity(LlamaConfig config, string data, IBatchSource source, OptimizerOptions optimizer, LossOptions loss, int microBatchRows, int steps)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(optimizer);
        ArgumentNullException.ThrowIfNull(loss);
        static string F(float x) => x.ToString("R", CultureInfo.InvariantCulture);
        return new SortedDictionary<string, string>(StringComparer.Ordinal)
        {
            ["config_fnv1a64"] = TextHash(config.ToJson()),
            ["data"] = data,
            ["batch"] = FormattableString.Invariant($"{source.BatchSize}x{source.SeqLen}"),
            ["micro_batch"] = microBatchRows.ToString(CultureInfo.InvariantCulture),
            ["steps"] = steps.ToString(CultureInfo.InvariantCulture),
            ["optimizer"] = optimizer.Name,
            ["optimizer.lr"] = F(optimizer.LearningRate),
            ["optimizer.min_lr"] = F(optimizer.MinLearningRate),
            ["optimizer.weight_decay"] = F(optimizer.WeightDecay),
            ["optimizer.beta1"] = F(optimizer.Beta1),
            ["optimizer.beta2"] = F(optimizer.Beta2),
            ["optimizer.eps"] = F(optimizer.Epsilon),
            ["optimizer.momentum"] = F(optimizer.Momentum),
            ["optimizer.dampening"] = F(optimizer.Dampening),
            ["optimizer.nesterov"] = optimizer.Nesterov ? "true" : "false",
            ["optimizer.no_decay"] = optimizer.Groups.DescribeNoDecay(),
            ["optimizer.grad_clip"] = F(optimizer.GradClip),
            ["optimizer.warmup"] = optimizer.WarmupSteps.ToString(CultureInfo.InvariantCulture),
            ["optimizer.schedule"] = optimizer.Schedule.ToString().ToLowerInvariant(),
            ["loss.label_smoothing"] = F(loss.CrossEntropy.LabelSmoothing),
            ["loss.z_loss"] = F(loss.CrossEntropy.ZLossWeight),
            ["loss.logit_softcap"] = F(loss.CrossEntropy.SoftCap),
            ["loss.lm_head_recompute"] = loss.LmHeadRecompute ? "true" : "false",
        };
    }
}
