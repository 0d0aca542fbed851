// A memory plan (named slots with sizes, computed before anything is allocated) and the arena that backs it with
// one NativeBuffer. The planner sizes runs from the same plans the trainer allocates, so prediction = allocation.
namespace MiniSeq.Tensors;

/// <summary>A named region of an arena: offset and length in floats.</summary>
public readonly record struct ArenaSlot(string Name, long Offset, long Length);

/// <summary>Declares the slots of one arena in order, each 64-byte aligned; allocates nothing.</summary>
public sealed class ArenaPlan
{
    private readonly List<ArenaSlot> _slots = [];

    /// <summary>Creates an empty plan for memory of <paramref name="category"/>.</summary>
    public ArenaPlan(string name, MemoryCategory category)
    {
        Name = name;
        Category = category;
    }

    /// <summary>The arena's name (for messages).</summary>
    public string Name { get; }

    /// <summary>What the arena's bytes are accounted to.</summary>
    public MemoryCategory Category { get; }

    /// <summary>The slots in declaration order.</summary>
    public IReadOnlyList<ArenaSlot> Slots => _slots;

    /// <summary>Total floats including alignment padding (the high-water mark over all union alternatives).</summary>
    public long TotalFloats { get; private set; }

    /// <summary>Where the next slot goes.</summary>
    public long Cursor { get; private set; }

    /// <summary>Total bytes including alignment padding.</summary>
    public long TotalBytes => TotalFloats * sizeof(float);

    /// <summary>Adds a slot of <paramref name="length"/> floats, aligned to 16 floats (64 bytes).</summary>
    public ArenaSlot Add(string name, long length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        var slot = new ArenaSlot(name, Cursor, length);
        _slots.Add(slot);
        Cursor += (length + 15) & ~15L;
        TotalFloats = Math.Max(TotalFloats, Cursor);
        return slot;
    }

    /// <summary>
    /// Moves the cursor back to <paramref name="mark"/> (a previous <see cref="Cursor"/>) so that the next slots
    /// overlap earlier ones: slots of phases that are never alive at the same time share memory. The total keeps the
    /// high-water mark.
    /// </summary>
    public void Rewind(long mark)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan(mark, Cursor);
        Cursor = mark;
    }
}

/// <summary>One native allocation carved into the slots of an <see cref="ArenaPlan"/>.</summary>
public sealed class Arena : IDisposable
{
    private readonly NativeBuffer _buffer;

    /// <summary>Allocates the plan's total (zeroed) and accounts it to the plan's category.</summary>
    public Arena(ArenaPlan plan, MemoryLedger? ledger = null)
    {
        Plan = plan;
        _buffer = new NativeBuffer(plan.TotalFloats, plan.Category, ledger, plan.Name);
    }

    /// <summary>The plan this arena backs.</summary>
    public ArenaPlan Plan { get; }

    /// <summary>The whole arena.</summary>
    public TensorView All => _buffer.View;

    /// <summary>The view of one slot.</summary>
    public TensorView this[ArenaSlot slot] => _buffer.Slice(slot.Offset, slot.Length);

    /// <summary>Frees the arena.</summary>
    public void Dispose() => _buffer.Dispose();
}
