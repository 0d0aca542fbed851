// Accounts every native allocation to a category, with current and peak bytes per category and for the total.
// Disk (files such as offloaded layer inputs) is counted per category but kept out of the total and its peak: the
// total is resident memory, and disk bytes are not.
// Deliberately not: an allocator. NativeBuffer reports to a ledger; the ledger only counts.

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

    /// <summary>Bytes in files on disk (offloaded layer inputs); not resident memory, so not in the ledger's totals.</summary>
    Disk,
}

/// <summary>
/// Thread-safe byte counters per <see cref="MemoryCategory"/>: current, peak, and peak of the sum of the memory
/// categories (every category but <see cref="MemoryCategory.Disk"/>).
/// </summary>
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

    /// <summary>Whether a category is resident memory and so counts towards <see cref="CurrentTotal"/> (all but Disk).</summary>
    public static bool IsMemory(MemoryCategory category) => category != MemoryCategory.Disk;

    /// <summary>Bytes of memory currently held in all categories (<see cref="MemoryCategory.Disk"/> excluded).</summary>
    public long CurrentTotal => Volatile.Read(ref _total);

    /// <summary>Most bytes of memory ever held at once, all categories together (<see cref="MemoryCategory.Disk"/> excluded).</summary>
    public long PeakTotal => Volatile.Read(ref _totalPeak);

    internal void Add(MemoryCategory category, long bytes)
    {
        lock (_gate)
        {
            int c = (int)category;
            _current[c] += bytes;
            if (IsMemory(category))
            {
                _total += bytes;
            }

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

/// <summary>Peak bytes per category, the peak of their sum (Disk excluded), and the process peak resident set.</summary>
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
