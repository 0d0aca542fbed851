// Applies optimizer updates over the flat parameter/gradient arenas, tensor by tensor (weight decay only on
// matrices and embeddings, as the Hugging Face Trainer does). Moments live in the OptimizerState category.
using MiniSeq.Kernels;
using MiniSeq.Model;
using MiniSeq.Tensors;

namespace MiniSeq.Training;

/// <summary>AdamW or SGD state for one model.</summary>
public sealed unsafe class Optimizer : IDisposable
{
    private readonly LlamaModel _model;
    private readonly Arena? _first;
    private readonly Arena? _second;

    /// <summary>Allocates the optimizer state the rule needs (AdamW: m and v; SGD with momentum: one buffer).</summary>
    public Optimizer(LlamaModel model, OptimizerOptions options)
    {
        _model = model;
        Options = options;
        var plan = new ParameterLayout(model.Config, MemoryCategory.OptimizerState).Plan;
        if (options.Kind == OptimizerKind.AdamW || options.Momentum > 0)
        {
            _first = new Arena(plan, model.Ledger);
        }

        if (options.Kind == OptimizerKind.AdamW)
        {
            _second = new Arena(plan, model.Ledger);
        }
    }

    /// <summary>Hyper-parameters.</summary>
    public OptimizerOptions Options { get; }

    /// <summary>Number of updates applied so far.</summary>
    public int StepCount { get; private set; }

    /// <summary>Bytes the optimizer state needs for <paramref name="config"/>.</summary>
    public static long StateBytes(LlamaConfig config, OptimizerOptions options)
    {
        long one = new ParameterLayout(config).Plan.TotalBytes;
        return options.Kind == OptimizerKind.AdamW ? 2 * one : options.Momentum > 0 ? one : 0;
    }

    /// <summary>Applies one update with learning rate <paramref name="learningRate"/>.</summary>
    public void Step(TensorView gradients, float learningRate)
    {
        StepCount++;
        foreach (ParameterInfo t in _model.Layout.Tensors)
        {
            float* p = _model.Parameters[t.Slot].Pointer;
            float* g = gradients.Pointer + t.Slot.Offset;
            float wd = t.IsMatrix ? Options.WeightDecay : 0f;
            if (Options.Kind == OptimizerKind.AdamW)
            {
                OptimizerKernels.AdamW(p, g, _first![t.Slot].Pointer, _second![t.Slot].Pointer, t.ElementCount,
                    learningRate, Options.Beta1, Options.Beta2, Options.Epsilon, wd, StepCount);
            }
            else
            {
                float* momentum = _first is null ? null : _first[t.Slot].Pointer;
                OptimizerKernels.Sgd(p, g, momentum, t.ElementCount, learningRate, Options.Momentum, wd, StepCount);
            }
        }
    }

    /// <summary>Frees the state.</summary>
    public void Dispose()
    {
        _first?.Dispose();
        _second?.Dispose();
    }
}
