// The storage behind DocumentCorpus: per input file, int64 document offsets, int32 tokens and an optional byte mask,
// each either in native memory (tokenized now, or widened from uint16) or inside a read-only memory-mapped file (token
// caches, uint32 shards), so that neither the GC heap nor a 2^31-element array limit ever holds a corpus.
// Deliberately not: growing or changing a part after it is built.
using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;

namespace MiniSeq.Training.Data;

/// <summary>A growable array of unmanaged values in native memory, with a 64-bit count.</summary>
internal sealed unsafe class NativeList<T> : IDisposable
    where T : unmanaged
{
    private T* _items;
    private long _capacity;

    public NativeList(long capacity = 0)
    {
        if (capacity > 0)
        {
            Reserve(capacity);
        }
    }

    /// <summary>Values held.</summary>
    public long Count { get; private set; }

    /// <summary>The first value (null while nothing was ever reserved).</summary>
    public T* Pointer => _items;

    public void Add(T value)
    {
        if (Count == _capacity)
        {
            Reserve(Count + 1);
        }

        _items[Count++] = value;
    }

    public void AddRange(ReadOnlySpan<T> values)
    {
        Reserve(Count + values.Length);
        values.CopyTo(new Span<T>(_items + Count, values.Length));
        Count += values.Length;
    }

    /// <summary>Appends <paramref name="count"/> copies of <paramref name="value"/>.</summary>
    public void AddRepeated(T value, long count)
    {
        Reserve(Count + count);
        for (long done = 0; done < count;)
        {
            int chunk = (int)Math.Min(count - done, 1 << 30);
            new Span<T>(_items + Count + done, chunk).Fill(value);
            done += chunk;
        }

        Count += count;
    }

    /// <summary>Makes room for at least <paramref name="capacity"/> values (growing by doubling).</summary>
    public void Reserve(long capacity)
    {
        if (capacity <= _capacity)
        {
            return;
        }

        long grown = Math.Max(capacity, Math.Max(1024, _capacity * 2));
        _items = (T*)NativeMemory.Realloc(_items, checked((nuint)grown * (nuint)sizeof(T)));
        _capacity = grown;
    }

    /// <summary>Hands the memory to the caller (who frees it with <see cref="NativeMemory.Free"/>); the list is empty after.</summary>
    public T* Detach()
    {
        T* items = _items;
        _items = null;
        _capacity = 0;
        Count = 0;
        return items;
    }

    public void Dispose()
    {
        NativeMemory.Free(_items);
        _items = null;
        _capacity = 0;
        Count = 0;
    }
}

/// <summary>A whole file mapped read-only.</summary>
internal sealed unsafe class MappedFile : IDisposable
{
    private readonly MemoryMappedFile? _file;
    private readonly MemoryMappedViewAccessor? _view;
    private byte* _pointer;

    private MappedFile(MemoryMappedFile? file, MemoryMappedViewAccessor? view, byte* pointer, long length)
    {
        _file = file;
        _view = view;
        _pointer = pointer;
        Length = length;
    }

    /// <summary>The file's size when it was mapped.</summary>
    public long Length { get; }

    /// <summary>Its first byte (null for an empty file).</summary>
    public byte* Pointer => _pointer;

    /// <summary>Maps <paramref name="path"/> (an empty file maps to nothing, with <see cref="Length"/> 0).</summary>
    public static MappedFile Open(string path)
    {
        var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete, bufferSize: 1);
        long length = stream.Length;
        if (length == 0)
        {
            stream.Dispose();
            return new MappedFile(null, null, null, 0);
        }

        MemoryMappedFile? file = null;
        MemoryMappedViewAccessor? view = null;
        try
        {
            file = MemoryMappedFile.CreateFromFile(stream, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: false);
            view = file.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            byte* pointer = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref pointer);
            return new MappedFile(file, view, pointer + view.PointerOffset, length);
        }
        catch
        {
            view?.Dispose();
            if (file is null)
            {
                stream.Dispose();
            }

            file?.Dispose();
            throw;
        }
    }

    public void Dispose()
    {
        if (_pointer != null && _view is not null)
        {
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
        }

        _pointer = null;
        _view?.Dispose();
        _file?.Dispose();
    }
}

/// <summary>The documents of one input file: <c>offsets</c> (D + 1 int64, offsets[0] = 0, offsets[D] = N), <c>tokens</c>
/// (N int32) and optionally <c>mask</c> (N bytes, 1 = trainable), with whatever owns that memory.</summary>
internal sealed unsafe class CorpusPart : IDisposable
{
    private long* _offsets;
    private int* _tokens;
    private byte* _mask;
    private readonly List<IntPtr> _native = [];
    private MappedFile? _mapping;

    private CorpusPart(long documentCount, long tokenCount)
    {
        DocumentCount = documentCount;
        TokenCount = tokenCount;
    }

    public long DocumentCount { get; }

    public long TokenCount { get; }

    public bool HasMask => _mask != null;

    /// <summary>The D + 1 offsets (for writing a cache).</summary>
    public long* Offsets => _offsets;

    /// <summary>The N tokens.</summary>
    public int* Tokens => _tokens;

    /// <summary>The N mask bytes, or null.</summary>
    public byte* MaskPointer => _mask;

    /// <summary>Takes over the memory of the lists (they are empty after).</summary>
    public static CorpusPart FromLists(NativeList<long> offsets, NativeList<int> tokens, NativeList<byte>? mask)
    {
        if (offsets.Count == 0)
        {
            offsets.Add(0);
        }

        long documents = offsets.Count - 1, count = tokens.Count;
        long* o = offsets.Detach();
        int* t = tokens.Detach();
        byte* m = mask is null ? null : mask.Detach();
        return Create(documents, count, o, t, m, mapping: null, [(IntPtr)o, (IntPtr)t, (IntPtr)m]);
    }

    /// <summary>A part over memory it now owns: <paramref name="mapping"/> (may be null) and the native blocks
    /// <paramref name="owned"/> (freed with <see cref="NativeMemory.Free"/>; null entries ignored).</summary>
    public static CorpusPart Create(long documentCount, long tokenCount, long* offsets, int* tokens, byte* mask, MappedFile? mapping, ReadOnlySpan<IntPtr> owned)
    {
        var part = new CorpusPart(documentCount, tokenCount)
        {
            _offsets = offsets,
            _tokens = tokens,
            _mask = mask,
            _mapping = mapping,
        };
        foreach (IntPtr pointer in owned)
        {
            if (pointer != IntPtr.Zero)
            {
                part._native.Add(pointer);
            }
        }

        return part;
    }

    /// <summary>[start, end) of document <paramref name="local"/>.</summary>
    public (long Start, long End) Range(long local)
    {
        if ((ulong)local >= (ulong)DocumentCount)
        {
            throw new ArgumentOutOfRangeException(nameof(local));
        }

        return (_offsets[local], _offsets[local + 1]);
    }

    public ReadOnlySpan<int> Document(long local)
    {
        (long start, long end) = Range(local);
        return new ReadOnlySpan<int>(_tokens + start, checked((int)(end - start)));
    }

    /// <summary>The document's mask, or empty when the part has none (every token trainable).</summary>
    public ReadOnlySpan<byte> Mask(long local)
    {
        if (_mask == null)
        {
            return default;
        }

        (long start, long end) = Range(local);
        return new ReadOnlySpan<byte>(_mask + start, checked((int)(end - start)));
    }

    public void Dispose()
    {
        foreach (IntPtr pointer in _native)
        {
            NativeMemory.Free((void*)pointer);
        }

        _native.Clear();
        _mapping?.Dispose();
        _mapping = null;
        _offsets = null;
        _tokens = null;
        _mask = null;
    }
}
