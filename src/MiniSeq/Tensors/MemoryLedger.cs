// Accounts every native allocation to a category, with current and peak bytes per category and for the total.
// Deliberately not: an allocator. NativeBuffer reports to a ledger; the ledger only counts.
using System.Globalization;

namespace MiniSeq.Tensors;

/// <summary>What a block of memory is for.</summary>
public enum MemoryCategory
{
    /// <summary>Model weights.</summary>
    Parameters,

    /// <summary>Parameter gradients.</summary>
    Gradients,

    /// <summary>Optimizer moments.</summary>
    OptimizerState,

    /// <summary>Activations saved in forward for backward (including checkpointed layer inputs).</summary>
    Activations,

    /// <summary>Temporaries reused per layer or per chunk, and activation gradients.</summary>
    Scratch,
}

/// <summary>Thread-safe byte counters per <see cref="MemoryCategory"/>: current, peak, and peak of the sum.</summary>
public sealed class MemoryLedger
{
    /// <summary>All categories, in display order.</summary>
    public static readonly MemoryCategory[] Categories = Enum.GetValues<MemoryCategory>();

    private readonly long[] _current = new long[Categories.Length];
    private readonly long[] _peak = new long[Categories.Length];
    private long _total;
    private long _totalPeak;
    private readonly object _gate = new();

    /// <summary>Lower-case display name of a category ("optimizer state").</summary>
    public static string DisplayName(MemoryCategory category) => category switch
    {
        MemoryCategory.OptimizerState => "optimizer state",
        _ => category.ToString().ToLowerInvariant(),
    };

    /// <summary>A ledger shared by code that does not bring its own.</summary>
    public static MemoryLedger Shared { get; } = new();

    /// <summary>Bytes currently held in <paramref name="category"/>.</summary>
    public long Current(MemoryCategory category) => Volatile.Read(ref _current[(int)category]);

    /// <summary>Most bytes ever held at once in <paramref name="category"/> since the last <see cref="ResetPeaks"/>.</summary>
    public long Peak(MemoryCategory category) => Volatile.Read(ref _peak[(int)category]);

    /// <summary>Bytes currently held in all categories.</summary>
    public long CurrentTotal => Volatile.Read(ref _total);

    /// <summary>Most bytes ever held at once, all categories together.</summary>
    public long PeakTotal => Volatile.Read(ref _totalPeak);

    internal void Add(MemoryCategory category, long bytes)
    {
        lock (_gate)
        {
            int c = (int)category;
            _current[c] += bytes;
            _total += bytes;
            if (_current[c] > _peak[c])
            {
                _peak[c] = _current[c];
            }

            if (_total > _totalPeak)
            {
                _totalPeak = _total;
            }
        }
    }

    /// <summary>Sets every peak to the current value.</summary>
    public void ResetPeaks()
    {
        lock (_gate)
        {
            Array.Copy(_current, _peak, _current.Length);
            _totalPeak = _total;
        }
    }

    /// <summary>A copy of the counters.</summary>
    public MemoryReport Snapshot()
    {
        lock (_gate)
        {
            return new MemoryReport((long[])_current.Clone(), (long[])_peak.Clone(), _totalPeak, ProcessMemory.PeakRssBytes());
        }
    }
}

/// <summary>Peak bytes per category, the peak of their sum, and the process peak resident set.</summary>
public sealed record MemoryReport(long[] CurrentBytes, long[] PeakBytes, long PeakTotalBytes, long ProcessPeakRssBytes)
{
    /// <summary>Peak bytes of one category.</summary>
    public long PeakOf(MemoryCategory category) => PeakBytes[(int)category];

    /// <summary>One line: peak per category, tracked total and process peak RSS.</summary>
    public override string ToString()
    {
        var parts = MemoryLedger.Categories.Select(c => $"{MemoryLedger.DisplayName(c)} {ByteSize.Format(PeakOf(c))}");
        return string.Join(", ", parts) + $"; tracked peak {ByteSize.Format(PeakTotalBytes)}; process peak RSS {ByteSize.Format(ProcessPeakRssBytes)}";
    }
}

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

/// <summary>Parses and formats byte sizes such as <c>1GiB</c>, <c>512MiB</c>, <c>1.5G</c>.</summary>
public static class ByteSize
{
    /// <summary>Formats bytes with a binary unit (B, KiB, MiB, GiB).</summary>
    public static string Format(long bytes)
    {
        string[] units = ["B", "KiB", "MiB", "GiB", "TiB"];
        double value = bytes;
        int unit = 0;
        while (Math.Abs(value) >= 1024 && unit < units.Length - 1)
        {
            value /= 1024;
            unit++;
        }

        return unit == 0 ? $"{bytes} B" : value.ToString(value >= 100 ? "F0" : "F1", CultureInfo.InvariantCulture) + " " + units[unit];
    }

    /// <summary>Parses "1GiB", "1 GB", "300MiB", "4096" (bytes). Decimal units (KB/MB/GB) are powers of 1000.</summary>
    public static long Parse(string text)
    {
        if (!TryParse(text, out long bytes))
        {
            throw new FormatException($"'{text}' is not a size; write for example 1GiB, 512MiB, 2GB or a byte count.");
        }

        return bytes;
    }

    /// <summary>Tries to parse a size; see <see cref="Parse"/>.</summary>
    public static bool TryParse(string text, out long bytes)
    {
        bytes = 0;
        string s = text.Trim();
        int split = 0;
        while (split < s.Length && (char.IsDigit(s[split]) || s[split] == '.'))
        {
            split++;
        }

        if (split == 0 || !double.TryParse(s.AsSpan(0, split), NumberStyles.Float, CultureInfo.InvariantCulture, out double number))
        {
            return false;
        }

        double scale = s[split..].Trim().ToUpperInvariant() switch
        {
            "" or "B" => 1,
            "K" or "KIB" => 1024d,
            "M" or "MIB" => 1024d * 1024,
            "G" or "GIB" => 1024d * 1024 * 1024,
            "T" or "TIB" => 1024d * 1024 * 1024 * 1024,
            "KB" => 1e3,
            "MB" => 1e6,
            "GB" => 1e9,
            "TB" => 1e12,
            _ => double.NaN,
        };
        if (double.IsNaN(scale) || number < 0)
        {
            return false;
        }

        bytes = (long)Math.Round(number * scale);
        return true;
    }
}
