// The one place optimizer names are looked up: the CLI, the planner and the training state all ask here.
namespace MiniSeq.Training.Optimizers;

/// <summary>Every optimizer rule by name.</summary>
public static class OptimizerRegistry
{
    private static readonly IOptimizerRule[] s_rules = [new AdamWRule(), new SgdRule(), new LionRule(), new LambRule()];

    /// <summary>The names, in the order help texts list them.</summary>
    public static IReadOnlyList<string> Names { get; } = s_rules.Select(r => r.Name).ToArray();

    /// <summary>The rule called <paramref name="name"/> (case-insensitive).</summary>
    /// <exception cref="ArgumentException">No such optimizer.</exception>
    public static IOptimizerRule Get(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return Find(name) ?? throw new ArgumentException($"--optimizer must be one of {string.Join(", ", Names)} (got '{name}').");
    }

    /// <summary>The rule called <paramref name="name"/> (case-insensitive), or null.</summary>
    public static IOptimizerRule? Find(string? name)
        => name is null ? null : s_rules.FirstOrDefault(r => string.Equals(r.Name, name.Trim(), StringComparison.OrdinalIgnoreCase));
}
