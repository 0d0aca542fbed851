// Tests that launch `mpirun`: skipped, with the reason, where Open MPI's mpirun is not on PATH, so that `dotnet test`
// passes on a machine without MPI; .ci/run installs Open MPI so that CI runs them.
using System.Diagnostics;

namespace MiniSeq.Tests.Distributed;

internal static class OpenMpi
{
    private static readonly Lazy<string?> s_skipReason = new(FindSkipReason);

    /// <summary>Why mpirun tests cannot run here, or null when Open MPI's mpirun is on PATH.</summary>
    public static string? SkipReason => s_skipReason.Value;

    private static string? FindSkipReason()
    {
        string? mpirun = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
            .Select(dir => Path.Combine(dir, "mpirun")).FirstOrDefault(File.Exists);
        if (mpirun is null)
        {
            return "mpirun is not installed (apt-get install openmpi-bin libopenmpi-dev; .ci/run installs it)";
        }

        try
        {
            using var process = Process.Start(new ProcessStartInfo(mpirun, "--version") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false })!;
            string output = process.StandardOutput.ReadToEnd() + process.StandardError.ReadToEnd();
            process.WaitForExit();
            return output.Contains("Open MPI", StringComparison.Ordinal) ? null : $"{mpirun} is not Open MPI's ({output.Split('\n')[0].Trim()})";
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            return $"{mpirun} does not run: {e.Message}";
        }
    }
}

/// <summary>A fact that needs Open MPI's mpirun.</summary>
internal sealed class OpenMpiFactAttribute : FactAttribute
{
    public OpenMpiFactAttribute() => Skip = OpenMpi.SkipReason;
}

/// <summary>A theory that needs Open MPI's mpirun.</summary>
internal sealed class OpenMpiTheoryAttribute : TheoryAttribute
{
    public OpenMpiTheoryAttribute() => Skip = OpenMpi.SkipReason;
}
