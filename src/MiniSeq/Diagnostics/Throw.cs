// Validation helpers used at public entry points; inner loops use Debug.Assert only.
using System.Diagnostics.CodeAnalysis;

namespace MiniSeq.Diagnostics;

/// <summary>Throw helpers with messages that name the problem and what to do.</summary>
public static class Throw
{
    /// <summary>Throws when a span is shorter than a kernel needs.</summary>
    public static void IfTooShort(int actual, long required, string name)
    {
        if (actual < required)
        {
            TooShort(actual, required, name);
        }
    }

    [DoesNotReturn]
    private static void TooShort(int actual, long required, string name)
        => throw new ArgumentException($"{name} has {actual} elements but at least {required} are required.", name);

    /// <summary>Throws <see cref="InvalidDataException"/> naming the file and the fix.</summary>
    [DoesNotReturn]
    public static void InvalidData(string path, string problem, string hint)
        => throw new InvalidDataException($"{path}: {problem}. {hint}");

    /// <summary>Throws <see cref="InvalidDataException"/> naming the file, the 1-based line and the fix.</summary>
    [DoesNotReturn]
    public static void InvalidLine(string path, long line, string problem, string hint)
        => throw new InvalidDataException($"{path} line {line}: {problem}. {hint}");
}
