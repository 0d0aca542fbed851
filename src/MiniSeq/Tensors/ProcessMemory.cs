// The process's resident set (current and peak) from the operating system, for the planner and the reports.
using System.Globalization;

namespace MiniSeq.Tensors;

/// <summary>Reads process memory figures from the operating system.</summary>
public static class ProcessMemory
{
    /// <summary>Peak resident set size (VmHWM) in bytes; falls back to the current working set off Linux.</summary>
    public static long PeakRssBytes() => ReadStatusKilobytes("VmHWM:") is long kb ? kb * 1024 : Environment.WorkingSet;

    /// <summary>Current resident set size (VmRSS) in bytes.</summary>
    public static long CurrentRssBytes() => ReadStatusKilobytes("VmRSS:") is long kb ? kb * 1024 : Environment.WorkingSet;

    /// <summary>Resets the kernel's peak-RSS counter to the current RSS (Linux: write 5 to /proc/self/clear_refs).</summary>
    public static bool TryResetPeak()
    {
        try
        {
            File.WriteAllText("/proc/self/clear_refs", "5");
            return true;
        }
        catch (IOException)
        {
            return false;
        }
        catch (UnauthorizedAccessException)
        {
            return false;
        }
    }

    private static long? ReadStatusKilobytes(string key)
    {
        try
        {
            foreach (string line in File.ReadLines("/proc/self/status"))
            {
                if (line.StartsWith(key, StringComparison.Ordinal))
                {
                    string digits = new(line.AsSpan(key.Length).Trim().ToString().TakeWhile(char.IsDigit).ToArray());
                    return long.Parse(digits, CultureInfo.InvariantCulture);
                }
            }
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }

        return null;
    }
}
