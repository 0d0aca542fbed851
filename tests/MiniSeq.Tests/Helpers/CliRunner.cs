// Runs the built `miniseq` executable as a child process, the way a user does.
using System.Diagnostics;

namespace MiniSeq.Tests.Helpers;

internal sealed record CliResult(int ExitCode, string Stdout, string Stderr);

internal static class CliRunner
{
    public static string CliDll
    {
        get
        {
            // artifacts/bin/MiniSeq.Tests/<config>/ → artifacts/bin/MiniSeq.Cli/<config>/miniseq.dll
            string configDir = Path.GetFileName(Path.TrimEndingDirectorySeparator(AppContext.BaseDirectory));
            string path = Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "..", "..", "MiniSeq.Cli", configDir, "miniseq.dll"));
            return File.Exists(path) ? path : throw new FileNotFoundException($"Build the CLI first: {path} not found.");
        }
    }

    public static CliResult Run(params string[] args) => Start(null, new Dictionary<string, string>(), args);

    /// <summary>Runs in <paramref name="workingDirectory"/> (null: the test's own), as a user typing in that folder.</summary>
    public static CliResult RunIn(string? workingDirectory, params string[] args) => Start(workingDirectory, new Dictionary<string, string>(), args);

    /// <summary>Runs with extra environment variables set for the child process.</summary>
    public static CliResult RunWith(IReadOnlyDictionary<string, string> environment, params string[] args) => Start(null, environment, args);

    /// <summary>Starts the executable without waiting (so that a test can kill it); its output is drained and dropped.</summary>
    public static Process StartBackground(params string[] args) => StartBackground(null, args);

    /// <summary>Starts the executable without waiting; its output (stdout and stderr lines) goes to
    /// <paramref name="output"/> (locked while appended), or is dropped when null.</summary>
    /// <remarks>Started through <c>env --default-signal=INT</c>: a test run launched as a background job of a
    /// non-interactive shell ignores SIGINT (POSIX), the child would inherit that and keep it ignored, and a SIGINT test
    /// would then exercise nothing.</remarks>
    public static Process StartBackground(System.Text.StringBuilder? output, params string[] args) => StartBackground("env", ["--default-signal=INT", "dotnet", CliDll, .. args], output);

    /// <summary>Starts <c>mpirun</c> over <paramref name="ranks"/> ranks of the executable (as <see cref="RunUnderMpirun"/>)
    /// without waiting; the output of every rank goes to <paramref name="output"/>.</summary>
    public static Process StartBackgroundUnderMpirun(System.Text.StringBuilder? output, int ranks, params string[] args)
        => StartBackground("mpirun", [.. MpirunArguments(ranks), CliDll, .. args], output);

    private static string[] MpirunArguments(int ranks)
        => ["-np", ranks.ToString(System.Globalization.CultureInfo.InvariantCulture), "--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "dotnet"];

    private static Process StartBackground(string program, string[] args, System.Text.StringBuilder? output)
    {
        var psi = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string a in args)
        {
            psi.ArgumentList.Add(a);
        }

        psi.Environment["MINISEQ_THREADS"] = "1";
        var process = Process.Start(psi)!;
        void Append(object sender, DataReceivedEventArgs e)
        {
            if (output is not null && e.Data is not null)
            {
                lock (output)
                {
                    output.AppendLine(e.Data);
                }
            }
        }

        process.OutputDataReceived += Append;
        process.ErrorDataReceived += Append;
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return process;
    }

    /// <summary>
    /// Runs <c>mpirun -np <paramref name="ranks"/> dotnet miniseq.dll ARGS</c> (root allowed, oversubscribed, unbound:
    /// any number of ranks on any machine), each rank with one kernel thread.
    /// </summary>
    public static CliResult RunUnderMpirun(int ranks, params string[] args)
        => Start(null, new Dictionary<string, string>(), [.. MpirunArguments(ranks), CliDll, .. args], program: "mpirun");

    private static CliResult Start(string? workingDirectory, IReadOnlyDictionary<string, string> environment, string[] args, string? program = null)
    {
        var psi = new ProcessStartInfo(program ?? "dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        if (workingDirectory is not null)
        {
            psi.WorkingDirectory = workingDirectory;
        }

        if (program is null)
        {
            psi.ArgumentList.Add(CliDll);
        }

        foreach (string a in args)
        {
            psi.ArgumentList.Add(a);
        }

        psi.Environment["MINISEQ_THREADS"] = "1";
        foreach ((string name, string value) in environment)
        {
            psi.Environment[name] = value;
        }
        using var process = Process.Start(psi)!;
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromMinutes(3)))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException((program ?? "miniseq") + " " + string.Join(' ', args));
        }

        return new CliResult(process.ExitCode, stdout.Result, stderr.Result);
    }
}

/// <summary>A temporary directory deleted on dispose.</summary>
internal sealed class TempDir : IDisposable
{
    public TempDir() => Directory.CreateDirectory(Path);

    public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "miniseq-test-" + Guid.NewGuid().ToString("N"));

    public string this[string name] => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
