// A training run as a library object: a model, a trainer (optimizer, plan, arenas) and a batch source, stepped one
// optimizer step at a time or for a number of steps / a time limit, with its history and its resumable state. The
// CLI's `train` is a thin shell over it (progress display, metrics lines, saving).
using MiniSeq.Model;
using MiniSeq.Training.Data;

namespace MiniSeq.Training;

/// <summary>Trains a model on a batch source.</summary>
public sealed class TrainingRun : IDisposable
{
    private readonly List<StepResult> _history = [];

    /// <summary>Allocates the trainer for the source's batch shape.</summary>
    public TrainingRun(LlamaModel model, TrainerOptions options, IBatchSource source)
    {
        Model = model ?? throw new ArgumentNullException(nameof(model));
        Source = source ?? throw new ArgumentNullException(nameof(source));
        Trainer = new Trainer(model, options, source.BatchSize, source.SeqLen);
    }

    /// <summary>The model being trained.</summary>
    public LlamaModel Model { get; }

    /// <summary>Where batches come from.</summary>
    public IBatchSource Source { get; }

    /// <summary>Optimizer, plan and gradient arenas.</summary>
    public Trainer Trainer { get; }

    /// <summary>Every step taken by this object, in order.</summary>
    public IReadOnlyList<StepResult> History => _history;

    /// <summary>The run's scalars now (step, data position, RNG).</summary>
    public TrainingState State => new()
    {
        Step = Trainer.StepCount,
        Optimizer = Trainer.Optimizer.Options.Name,
        RngState = Source.RngState,
        DataCursor = Source.Cursor,
        ScheduleSteps = Trainer.ScheduleSteps,
        Run = Identity is null ? null : new SortedDictionary<string, string>(Identity.ToDictionary(), StringComparer.Ordinal),
    };

    /// <summary>What defines this run (config hash, data, batch shape, optimizer options…), saved with every
    /// checkpoint so that a resume with other settings can be refused (see <see cref="TrainingState.DifferenceFrom"/>).</summary>
    public IReadOnlyDictionary<string, string>? Identity { get; set; }

    /// <summary>Where the base model came from (written as an adapter's <c>base_model_name_or_path</c>), or null.</summary>
    public string? BaseModel { get; set; }

    /// <summary>
    /// With a time limit, turns this process's elapsed time into the one every process acts on (data parallel: rank
    /// 0's, broadcast), so that all ranks stop after the same step and shorten the schedule alike. Called once per step
    /// of a time-limited <see cref="Run"/>; null: the local clock.
    /// </summary>
    public Func<TimeSpan, TimeSpan>? SynchronizeClock { get; set; }

    /// <summary>One optimizer step on the source's next batch.</summary>
    public StepResult Step()
    {
        StepResult r = Trainer.Step(Source.Next());
        _history.Add(r);
        return r;
    }

    /// <summary>
    /// Steps until <paramref name="steps"/> steps of the schedule are done, <paramref name="timeLimit"/> has passed,
    /// or <paramref name="afterStep"/> returns false. Returns the steps taken by this call. With
    /// <paramref name="fitScheduleToTimeLimit"/>, the learning-rate schedule is shortened as the run goes so that it
    /// ends at the last step that fits in the time limit (the run then depends on the machine's speed).
    /// <paramref name="stepProgress"/> hears where each step is between layers (see <see cref="Trainer.Progress"/>).
    /// </summary>
    public IReadOnlyList<StepResult> Run(int steps, TimeSpan? timeLimit = null, Func<StepResult, bool>? afterStep = null, bool fitScheduleToTimeLimit = false, Action<StepProgress>? stepProgress = null)
    {
        Action<StepProgress>? previous = Trainer.Progress;
        Trainer.Progress = stepProgress ?? previous;
        try
        {
            return RunSteps(steps, timeLimit, afterStep, fitScheduleToTimeLimit);
        }
        finally
        {
            Trainer.Progress = previous;
        }
    }

    private List<StepResult> RunSteps(int steps, TimeSpan? timeLimit, Func<StepResult, bool>? afterStep, bool fitScheduleToTimeLimit)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        int first = _history.Count, done = 0;
        while (Trainer.StepCount < steps)
        {
            if (timeLimit is TimeSpan limit)
            {
                TimeSpan elapsed = SynchronizeClock?.Invoke(clock.Elapsed) ?? clock.Elapsed;
                if (elapsed >= limit)
                {
                    break;
                }

                if (fitScheduleToTimeLimit)
                {
                    Trainer.ScheduleSteps = StepsWithin(steps, Trainer.StepCount, done, elapsed.TotalSeconds, limit.TotalSeconds);
                }
            }

            StepResult r = Step();
            done++;
            if (afterStep is not null && !afterStep(r))
            {
                break;
            }
        }

        return _history.Skip(first).ToList();
    }

    /// <summary>
    /// The step count a time-limited run will reach: <paramref name="steps"/>, or fewer if the <paramref name="done"/>
    /// steps of this call, at their average pace, say that the rest does not fit in <paramref name="limitSeconds"/>.
    /// </summary>
    public static int StepsWithin(int steps, int stepCount, int done, double elapsedSeconds, double limitSeconds)
    {
        if (done < 5 || elapsedSeconds <= 0)
        {
            return steps;
        }

        double projected = stepCount + ((limitSeconds - elapsedSeconds) * done / elapsedSeconds);
        return (int)Math.Clamp(Math.Floor(projected), stepCount + 1, steps);
    }

    /// <summary>Saves weights (the adapters only, as a PEFT directory, in a LoRA run) and training state into <paramref name="directory"/> in one atomic write.</summary>
    public void SaveCheckpoint(string directory, bool overwrite) => TrainingCheckpoint.SaveCheckpoint(Model, Trainer, State, directory, overwrite, BaseModel);

    /// <summary>Loads the training state saved with the weights in <paramref name="directory"/> (the model must have
    /// been loaded from it) and moves the source to where it was.</summary>
    public TrainingState RestoreState(string directory)
    {
        TrainingState state = TrainingCheckpoint.Read(directory, Trainer);
        Source.Restore(state.DataCursor, state.RngState);
        if (state.ScheduleSteps is int scheduleSteps)
        {
            Trainer.ScheduleSteps = scheduleSteps;
        }

        return state;
    }

    /// <summary>Frees the trainer's memory (not the model).</summary>
    public void Dispose() => Trainer.Dispose();
}
