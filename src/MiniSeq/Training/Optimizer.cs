// Applies an optimizer rule over the flat parameter/gradient arenas, tensor by tensor, with each tensor's group
// (weight decay or not, frozen or not). The rule's state buffers live in the OptimizerState category, one arena per
// buffer in the parameter layout, so a tensor's state is addressed by the same slot as its parameter. With a shard
// (ZeRO-1) each state arena covers only the shard's range of the flat layout, and a step updates only the parts of the
// tensors inside it (element-wise rules only); a checkpoint then needs the state gathered first (GatherState).
using MiniSeq.Model;
using MiniSeq.Tensors;
using MiniSeq.Training.Optimizers;

namespace MiniSeq.Training;

/// <summary>One named state buffer of one parameter tensor (e.g. <c>model.norm.weight</c> / <c>exp_avg</c>).</summary>
public readonly record struct OptimizerStateTensor(string TensorName, string StateName, TensorView View);

/// <summary>The part of one state buffer of one tensor this process holds: elements [<see cref="Offset"/>,
/// <see cref="Offset"/> + View.Length) of a tensor of <see cref="TensorLength"/> elements (all of it without a shard).</summary>
public readonly record struct OptimizerStatePiece(string TensorName, string StateName, long Offset, long TensorLength, TensorView View);

/// <summary>The optimizer state for one model and its update.</summary>
public sealed unsafe class Optimizer : IDisposable
{
    private readonly TrainableTensors _trainable;
    private readonly IOptimizerRule _rule;
    private readonly IReadOnlyList<string> _stateNames;
    private readonly Arena[] _state;
    private readonly MemoryLedger _ledger;
    private Arena[]? _gathered;

    /// <summary>Allocates the state buffers the rule needs (AdamW and LAMB: two; Lion and SGD with momentum: one) for the
    /// model's trainable tensors (every parameter, or only the LoRA adapters when attached); with
    /// <paramref name="shard"/>, only for that range of the flat trainable layout (ZeRO-1).</summary>
    /// <exception cref="ArgumentException">A shard with a rule that is not element-wise (LAMB), or out of the layout.</exception>
    public Optimizer(LlamaModel model, OptimizerOptions options, OptimizerShard? shard = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(options);
        _trainable = model.Trainable;
        _ledger = model.Ledger;
        Options = options;
        _rule = options.Rule;
        _stateNames = _rule.StateNames(options);
        ArenaPlan plan = _trainable.PlanFor(MemoryCategory.OptimizerState);
        FlatLength = plan.TotalBytes / sizeof(float);
        if (shard is OptimizerShard s)
        {
            if (!_rule.IsElementwise)
            {
                throw new ArgumentException($"--zero 1 shards the optimizer state at arbitrary element boundaries, which needs an element-wise optimizer (adamw, sgd, lion); {_rule.Name}'s trust ratio needs whole-tensor norms. Use --zero 0.");
            }

            if (s.Start < 0 || s.End < s.Start || s.End > FlatLength)
            {
                throw new ArgumentOutOfRangeException(nameof(shard), $"shard [{s.Start}, {s.End}) is outside the {FlatLength} floats of the trainable layout.");
            }

            Shard = s;
            plan = new ArenaPlan("optimizer state (ZeRO-1 shard)", MemoryCategory.OptimizerState);
            plan.Add("shard", s.Length);
        }

        _state = _stateNames.Select(_ => new Arena(plan, model.Ledger)).ToArray();
    }

    /// <summary>Hyper-parameters.</summary>
    public OptimizerOptions Options { get; }

    /// <summary>Number of updates applied so far.</summary>
    public int StepCount { get; private set; }

    /// <summary>The range of the flat trainable layout this optimizer updates (ZeRO-1), or null for all of it.</summary>
    public OptimizerShard? Shard { get; }

    /// <summary>Floats of the flat trainable layout (gradients, values; alignment padding included).</summary>
    public long FlatLength { get; }

    /// <summary>Bytes of state this process holds (÷ the shard count under ZeRO-1).</summary>
    public long ResidentBytes => _state.Sum(a => a.Plan.TotalBytes);

    /// <summary>Every state buffer of every tensor, in layout order then state order (for saving). With a shard, only
    /// while <see cref="GatherState"/>'s result is alive, on the rank that received the whole state.</summary>
    /// <exception cref="InvalidOperationException">The state is sharded and not gathered here.</exception>
    public IEnumerable<OptimizerStateTensor> State
    {
        get
        {
            Arena[] arenas = Shard is null ? _state
                : _gathered ?? throw new InvalidOperationException("The optimizer state is sharded (ZeRO-1): gather it (Trainer.GatherOptimizerState, on every rank) before saving, and save on rank 0.");
            foreach (ParameterInfo t in _trainable.Tensors)
            {
                for (int s = 0; s < arenas.Length; s++)
                {
                    yield return new OptimizerStateTensor(t.Name, _stateNames[s], arenas[s].All.Slice(t.Slot.Offset, t.ElementCount));
                }
            }
        }
    }

    /// <summary>The state this process holds, tensor by tensor (whole tensors without a shard; for loading).</summary>
    public IEnumerable<OptimizerStatePiece> LocalState
    {
        get
        {
            foreach (ParameterInfo t in _trainable.Tensors)
            {
                (long start, long end) = Intersect(t);
                for (int s = 0; start < end && s < _state.Length; s++)
                {
                    yield return new OptimizerStatePiece(t.Name, _stateNames[s], start - t.Slot.Offset, t.ElementCount, StateView(s, start, end - start));
                }
            }
        }
    }

    /// <summary>Bytes the optimizer state needs for <paramref name="config"/> (only the adapters' with <paramref name="lora"/>);
    /// with <paramref name="zeroShards"/> P &gt; 1 (ZeRO-1), the most any rank holds: its range of
    /// <see cref="OptimizerShard.Stride"/> floats per state buffer, 64-byte aligned.</summary>
    public static long StateBytes(LlamaConfig config, OptimizerOptions options, Model.Lora.LoraConfig? lora = null, int zeroShards = 1)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(zeroShards);
        var layout = new ParameterLayout(config);
        long trainable = lora is null ? layout.Plan.TotalBytes : new Model.Lora.LoraLayout(layout, lora).Plan.TotalBytes;
        if (zeroShards > 1)
        {
            long shard = OptimizerShard.Of(trainable / sizeof(float), 0, zeroShards).Length * sizeof(float);
            trainable = (shard + ArenaPlan.Alignment - 1) / ArenaPlan.Alignment * ArenaPlan.Alignment;
        }

        return options.Rule.StateNames(options).Count * trainable;
    }

    /// <summary>Sets the step count (restoring a saved state: bias corrections depend on it).</summary>
    public void RestoreStepCount(int steps) => StepCount = steps >= 0 ? steps : throw new ArgumentOutOfRangeException(nameof(steps));

    /// <summary>Applies one update with learning rate <paramref name="learningRate"/> (with a shard: to the shard's
    /// range of the weights, from the same range of <paramref name="gradients"/>, the whole flat layout).</summary>
    public void Step(TensorView gradients, float learningRate)
    {
        StepCount++;
        Span<nint> state = stackalloc nint[_state.Length];
        foreach (ParameterInfo t in _trainable.Tensors)
        {
            (long start, long end) = Intersect(t);
            if (start >= end || Options.Groups.IsFrozen(t))
            {
                continue;
            }

            for (int s = 0; s < _state.Length; s++)
            {
                state[s] = (nint)StateView(s, start, end - start).Pointer;
            }

            float wd = Options.Groups.Decays(t) ? Options.WeightDecay : 0f;
            _rule.Step(_trainable.Values[t.Slot].Pointer + (start - t.Slot.Offset), gradients.Pointer + start, state, end - start, learningRate, wd, StepCount, Options);
        }
    }

    /// <summary>
    /// Collective under ZeRO-1 (every rank calls it): gathers every shard's state into whole-layout buffers on rank 0,
    /// which then enumerates <see cref="State"/> until the result is disposed. Without a shard: nothing, returns null.
    /// </summary>
    public IDisposable? GatherState(OptimizerSharding sharding)
    {
        ArgumentNullException.ThrowIfNull(sharding);
        if (Shard is null)
        {
            return null;
        }

        bool root = sharding.Rank == 0;
        Arena[] full = root ? _state.Select(_ => new Arena(_trainable.PlanFor(MemoryCategory.OptimizerState), _ledger)).ToArray() : [];
        for (int s = 0; s < _state.Length; s++)
        {
            sharding.GatherToRoot(_state[s].All, root ? full[s].All.Slice(0, FlatLength) : default);
        }

        _gathered = root ? full : null;
        return new Gathered(this, full);
    }

    /// <summary>Frees the state.</summary>
    public void Dispose()
    {
        foreach (Arena a in _state)
        {
            a.Dispose();
        }
    }

    private (long Start, long End) Intersect(ParameterInfo t)
    {
        long start = t.Slot.Offset, end = start + t.ElementCount;
        return Shard is OptimizerShard s ? (Math.Max(start, s.Start), Math.Min(end, s.End)) : (start, end);
    }

    private TensorView StateView(int state, long flatStart, long length)
        => _state[state].All.Slice(flatStart - (Shard?.Start ?? 0), length);

    private sealed class Gathered(Optimizer owner, Arena[] full) : IDisposable
    {
        public void Dispose()
        {
            owner._gathered = null;
            foreach (Arena a in full)
            {
                a.Dispose();
            }
        }
    }
}
