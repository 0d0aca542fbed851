// Applies an optimizer rule over the flat parameter/gradient arenas, tensor by tensor, with each tensor's group
// (weight decay or not, frozen or not). The rule's state buffers live in the OptimizerState category, one arena per
// buffer in the parameter layout, so a tensor's state is addressed by the same slot as its parameter.
using MiniSeq.Model;
using MiniSeq.Tensors;
using MiniSeq.Training.Optimizers;

namespace MiniSeq.Training;

/// <summary>One named state buffer of one parameter tensor (e.g. <c>model.norm.weight</c> / <c>exp_avg</c>).</summary>
public readonly record struct OptimizerStateTensor(string TensorName, string StateName, TensorView View);

/// <summary>The optimizer state for one model and its update.</summary>
public sealed unsafe class Optimizer : IDisposable
{
    private readonly TrainableTensors _trainable;
    private readonly IOptimizerRule _rule;
    private readonly IReadOnlyList<string> _stateNames;
    private readonly Arena[] _state;

    /// <summary>Allocates the state buffers the rule needs (AdamW and LAMB: two; Lion and SGD with momentum: one) for the
    /// model's trainable tensors (every parameter, or only the LoRA adapters when attached).</summary>
    public Optimizer(LlamaModel model, OptimizerOptions options)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(options);
        _trainable = model.Trainable;
        Options = options;
        _rule = options.Rule;
        _stateNames = _rule.StateNames(options);
        ArenaPlan plan = _trainable.PlanFor(MemoryCategory.OptimizerState);
        _state = _stateNames.Select(_ => new Arena(plan, model.Ledger)).ToArray();
    }

    /// <summary>Hyper-parameters.</summary>
    public OptimizerOptions Options { get; }

    /// <summary>Number of updates applied so far.</summary>
    public int StepCount { get; private set; }

    /// <summary>Every state buffer of every tensor, in layout order then state order (for saving and loading).</summary>
    public IEnumerable<OptimizerStateTensor> State
    {
        get
        {
            foreach (ParameterInfo t in _trainable.Tensors)
            {
                for (int s = 0; s < _state.Length; s++)
                {
                    yield return new OptimizerStateTensor(t.Name, _stateNames[s], _state[s][t.Slot]);
                }
            }
        }
    }

    /// <summary>Bytes the optimizer state needs for <paramref name="config"/> (only the adapters' with <paramref name="lora"/>).</summary>
    public static long StateBytes(LlamaConfig config, OptimizerOptions options, Model.Lora.LoraConfig? lora = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        var layout = new ParameterLayout(config);
        long trainable = lora is null ? layout.Plan.TotalBytes : new Model.Lora.LoraLayout(layout, lora).Plan.TotalBytes;
        return options.Rule.StateNames(options).Count * trainable;
    }

    /// <summary>Sets the step count (restoring a saved state: bias corrections depend on it).</summary>
    public void RestoreStepCount(int steps) => StepCount = steps >= 0 ? steps : throw new ArgumentOutOfRangeException(nameof(steps));

    /// <summary>Applies one update with learning rate <paramref name="learningRate"/>.</summary>
    public void Step(TensorView gradients, float learningRate)
    {
        StepCount++;
        Span<nint> state = stackalloc nint[_state.Length];
        foreach (ParameterInfo t in _trainable.Tensors)
        {
            if (Options.Groups.IsFrozen(t))
            {
                continue;
            }

            for (int s = 0; s < _state.Length; s++)
            {
                state[s] = (nint)_state[s][t.Slot].Pointer;
            }

            float wd = Options.Groups.Decays(t) ? Options.WeightDecay : 0f;
            _rule.Step(_trainable.Values[t.Slot].Pointer, gradients.Pointer + t.Slot.Offset, state, t.ElementCount, learningRate, wd, StepCount, Options);
        }
    }

    /// <summary>Frees the state.</summary>
    public void Dispose()
    {
        foreach (Arena a in _state)
        {
            a.Dispose();
        }
    }
}
