// Picks the next token from a row of logits as Hugging Face's generate does: greedy (argmax) at temperature 0;
// otherwise logits / temperature, then top-k (keep the k largest, ties with the k-th included), then top-p (keep the
// smallest set of most probable tokens whose cumulative probability reaches p), then one draw from the renormalised
// distribution with a seeded DeterministicRandom, so the same seed gives the same tokens.
using MiniSeq.Model;

namespace MiniSeq.Generation;

/// <summary>Sampling settings: temperature 0 is greedy; top-k 0 and top-p 1 disable those filters.</summary>
public sealed record SamplerOptions
{
    /// <summary>Softmax temperature; 0 picks the argmax.</summary>
    public float Temperature { get; init; }

    /// <summary>Keep only the k most probable tokens (0 = all).</summary>
    public int TopK { get; init; }

    /// <summary>Keep the smallest set of most probable tokens whose cumulative probability is at least p (1 = all).</summary>
    public float TopP { get; init; } = 1f;

    /// <summary>Seed of the draws.</summary>
    public ulong Seed { get; init; }

    /// <summary>Throws on a value out of range.</summary>
    public void Validate()
    {
        if (!(Temperature >= 0) || float.IsInfinity(Temperature))
        {
            throw new ArgumentOutOfRangeException(nameof(Temperature), $"temperature must be a finite number ≥ 0, got {Temperature}");
        }

        if (TopK < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(TopK), $"top-k must be ≥ 0, got {TopK}");
        }

        if (!(TopP > 0 && TopP <= 1))
        {
            throw new ArgumentOutOfRangeException(nameof(TopP), $"top-p must be in (0, 1], got {TopP}");
        }
    }
}

/// <summary>Draws tokens from logits under <see cref="SamplerOptions"/>.</summary>
public sealed class Sampler
{
    private readonly DeterministicRandom _random;
    private int[] _order = [];
    private double[] _probabilities = [];

    /// <summary>A sampler whose draws start from <see cref="SamplerOptions.Seed"/>.</summary>
    public Sampler(SamplerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        Options = options;
        _random = new DeterministicRandom(options.Seed);
    }

    /// <summary>The settings.</summary>
    public SamplerOptions Options { get; }

    /// <summary>The index of the largest logit (the first one on ties, as torch.argmax).</summary>
    public static int ArgMax(ReadOnlySpan<float> logits)
    {
        int best = 0;
        for (int i = 1; i < logits.Length; i++)
        {
            if (logits[i] > logits[best])
            {
                best = i;
            }
        }

        return best;
    }

    /// <summary>The next token.</summary>
    public int Sample(ReadOnlySpan<float> logits)
    {
        if (logits.IsEmpty)
        {
            throw new ArgumentException("No logits to sample from.", nameof(logits));
        }

        if (Options.Temperature == 0)
        {
            return ArgMax(logits);
        }

        int v = logits.Length;
        if (_order.Length != v)
        {
            _order = new int[v];
            _probabilities = new double[v];
        }

        // Most probable first; ties in index order (a stable order, the same on every run).
        for (int i = 0; i < v; i++)
        {
            _order[i] = i;
        }

        float[] values = logits.ToArray();
        Array.Sort(_order, (a, b) => values[a] != values[b] ? values[b].CompareTo(values[a]) : a.CompareTo(b));

        // top-k: keep the k largest logits and every logit equal to the k-th.
        int kept = v;
        if (Options.TopK > 0 && Options.TopK < v)
        {
            float kth = values[_order[Options.TopK - 1]];
            kept = Options.TopK;
            while (kept < v && values[_order[kept]] == kth)
            {
                kept++;
            }
        }

        // softmax(logits / T) over the kept tokens, in double.
        double max = values[_order[0]] / (double)Options.Temperature, sum = 0;
        for (int i = 0; i < kept; i++)
        {
            double p = Math.Exp((values[_order[i]] / (double)Options.Temperature) - max);
            _probabilities[i] = p;
            sum += p;
        }

        // top-p: the smallest prefix whose cumulative probability reaches p (at least one token).
        if (Options.TopP < 1)
        {
            double cumulative = 0;
            for (int i = 0; i < kept; i++)
            {
                cumulative += _probabilities[i] / sum;
                if (cumulative >= Options.TopP)
                {
                    kept = i + 1;
                    break;
                }
            }

            sum = 0;
            for (int i = 0; i < kept; i++)
            {
                sum += _probabilities[i];
            }
        }

        double u = _random.NextDouble() * sum, acc = 0;
        for (int i = 0; i < kept; i++)
        {
            acc += _probabilities[i];
            if (u < acc)
            {
                return _order[i];
            }
        }

        return _order[kept - 1];
    }
}
