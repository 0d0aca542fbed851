// A memory plan (named, typed slots with sizes, computed before anything is allocated) and the arena that backs it
// with one NativeBuffer. The planner sizes runs from the same plans the trainer allocates, so prediction = allocation.
// Slots carry an element type (fp32, bf16) and are placed by byte offset, 64-byte aligned, so one arena can hold
// fp32 and bf16 tensors side by side and the byte count stays exact.
namespace MiniSeq.Tensors;

/// <summary>Element types an arena slot can hold.</summary>
public enum ElementType
{
    /// <summary>IEEE fp32 (4 bytes).</summary>
    F32,

    /// <summary>bfloat16 (2 bytes): the top half of an fp32, converted by bit shifts.</summary>
    BF16,
}

/// <summary>Sizes of <see cref="ElementType"/>s.</summary>
public static class ElementTypes
{
    /// <summary>Bytes per element.</summary>
    public static int Size(ElementType type) => type switch
    {
        ElementType.F32 => 4,
        ElementType.BF16 => 2,
        _ => throw new ArgumentOutOfRangeException(nameof(type)),
    };
}

/// <summary>A named region of an arena: byte offset, length in elements, element type.</summary>
public readonly record struct ArenaSlot(string Name, long ByteOffset, long Length, ElementType Type = ElementType.F32)
{
    /// <summary>Offset in floats from the arena start (fp32 slots; every slot starts 64-byte aligned).</summary>
    public long Offset => ByteOffset / sizeof(float);

    /// <summary>Bytes the slot's elements occupy (without alignment padding).</summary>
    public long ByteLength => Length * ElementTypes.Size(Type);
}

/// <summary>Declares the slots of one arena in order, each 64-byte aligned; allocates nothing.</summary>
public sealed class ArenaPlan
{
    /// <summary>Alignment of every slot (a cache line, and a whole Vector512).</summary>
    public const int Alignment = 64;

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

    /// <summary>Total bytes including alignment padding (the high-water mark over all union alternatives).</summary>
    public long TotalBytes { get; private set; }

    /// <summary>Where the next slot goes (bytes).</summary>
    public long Cursor { get; private set; }

    /// <summary>Adds a slot of <paramref name="length"/> elements of <paramref name="type"/>, 64-byte aligned.</summary>
    public ArenaSlot Add(string name, long length, ElementType type = ElementType.F32)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        var slot = new ArenaSlot(name, Cursor, length, type);
        _slots.Add(slot);
        Cursor += (slot.ByteLength + Alignment - 1) & ~(long)(Alignment - 1);
        TotalBytes = Math.Max(TotalBytes, Cursor);
        return slot;
    }

    /// <summary>
    /// Moves the cursor to <paramref name="mark"/> (a previous <see cref="Cursor"/>) so that the next slots overlap
    /// earlier ones: slots of phases that are never alive at the same time share memory. The mark may lie past the
    /// cursor when the phase just planned was shorter than the slots before the mark. The total keeps the high-water
    /// mark.
    /// </summary>
    public void Rewind(long mark)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(mark);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(mark, TotalBytes);
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
        _buffer = new NativeBuffer(plan.TotalBytes / sizeof(float), plan.Category, ledger, plan.Name);
    }

    /// <summary>The plan this arena backs.</summary>
    public ArenaPlan Plan { get; }

    /// <summary>The whole arena.</summary>
    public TensorView All => _buffer.View;

    /// <summary>The fp32 view of one fp32 slot.</summary>
    public TensorView this[ArenaSlot slot] => slot.Type == ElementType.F32
        ? _buffer.Slice(slot.Offset, slot.Length)
        : throw new InvalidOperationException($"Slot '{slot.Name}' holds {slot.Type}, not F32; use Bf16(slot).");

    /// <summary>The bf16 elements (raw 16-bit patterns) of one bf16 slot.</summary>
    public unsafe ushort* Bf16(ArenaSlot slot) => slot.Type == ElementType.BF16
        ? (ushort*)((byte*)_buffer.Pointer + slot.ByteOffset)
        : throw new InvalidOperationException($"Slot '{slot.Name}' holds {slot.Type}, not BF16.");

    /// <summary>Frees the arena.</summary>
    public void Dispose() => _buffer.Dispose();
}
