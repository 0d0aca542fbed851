// Where activation checkpointing keeps the decoder layers' inputs h_l (rows × width floats each) between forward and
// backward: in memory (one NativeBuffer, category Activations) or offloaded to one file on disk (category Disk), as
// fp32 or bf16. Forward writes chunk by chunk; backward reads chunk by chunk (forward order or reverse).
//
// The disk file is created in the given directory and unlinked at once, before anything is written: it lives only as
// long as its open handle, so nothing is left behind however the process ends (kill -9 included). Its size is checked
// against the free space first, and reserved (fallocate) when the file system supports it. Writes are write-behind:
// each chunk is converted into one of two staging buffers and written asynchronously; the write is only waited for
// when that buffer is needed again, or on Flush/Read/Prefetch. Prefetch starts an asynchronous read of a chunk into a
// staging buffer so that the Read of exactly that chunk only waits for it. Both staging buffers (chunk sized, native,
// category Scratch) are shared by writes and reads: Prefetch(next) then Read(current) keeps both in use.
//
// Deliberately not: thread-safe (one thread calls it; only the I/O runs in the background); durable (the file is
// scratch; nothing is fsynced); compressed.
using System.Buffers;
using Microsoft.Win32.SafeHandles;
using MiniSeq.Kernels;

namespace MiniSeq.Tensors;

/// <summary>How stored activations are kept.</summary>
public enum ActivationDType
{
    /// <summary>IEEE fp32 (4 bytes, exact).</summary>
    Float32,

    /// <summary>bfloat16 (2 bytes; round to nearest even, as <see cref="BFloat16.FromFloat(float*, ushort*, long)"/>).</summary>
    BFloat16,
}

/// <summary>
/// The inputs of <see cref="Layers"/> decoder layers, <see cref="Rows"/> × <see cref="Width"/> floats each, kept in
/// memory or in an unlinked file on disk, as fp32 or bf16. Called from one thread.
/// </summary>
public sealed unsafe class LayerInputStore : IDisposable
{
    /// <summary>Staging buffers of an on-disk store (double buffering).</summary>
    public const int StagingBuffers = 2;

    /// <summary>Largest staging buffer; larger chunks are written and read in pieces of at most this size.</summary>
    public const int MaxStagingBytes = 1 << 30;

    private readonly MemoryLedger _ledger;
    private readonly int _elementBytes;
    private readonly NativeBuffer? _memory;
    private readonly SafeFileHandle? _file;
    private readonly OffloadIoThread? _io;
    private readonly string? _directory;
    private readonly bool _fixedStaging;
    private readonly Slot[] _slots = [new(), new()];
    private long _slotRows;
    private long _sequence;
    private bool _disposed;

    private LayerInputStore(int layers, long rows, int width, ActivationDType dtype, MemoryLedger ledger, bool fixedStaging)
    {
        Layers = layers;
        Rows = rows;
        Width = width;
        DType = dtype;
        _ledger = ledger;
        _elementBytes = ElementBytes(dtype);
        _fixedStaging = fixedStaging;
        BytesPerLayer = checked(rows * width * _elementBytes);
        TotalBytes = BytesFor(layers, rows, width, dtype);
    }

    private LayerInputStore(int layers, long rows, int width, ActivationDType dtype, MemoryLedger ledger, NativeBuffer memory)
        : this(layers, rows, width, dtype, ledger, fixedStaging: false) => _memory = memory;

    private LayerInputStore(int layers, long rows, int width, ActivationDType dtype, MemoryLedger ledger, SafeFileHandle file, string directory, int maxChunkRows)
        : this(layers, rows, width, dtype, ledger, fixedStaging: maxChunkRows > 0)
    {
        _file = file;
        _io = new OffloadIoThread();
        _directory = directory;
        ledger.Add(MemoryCategory.Disk, TotalBytes);
        if (maxChunkRows > 0)
        {
            AllocateStaging(SlotRows(maxChunkRows, width, dtype));
        }
    }

    /// <summary>Number of layers stored.</summary>
    public int Layers { get; }

    /// <summary>Rows per layer.</summary>
    public long Rows { get; }

    /// <summary>Floats per row.</summary>
    public int Width { get; }

    /// <summary>How the values are kept.</summary>
    public ActivationDType DType { get; }

    /// <summary>Whether the values live in a file (else in memory).</summary>
    public bool IsOnDisk => _file is not null;

    /// <summary>Bytes of one layer (Rows · Width · element size).</summary>
    public long BytesPerLayer { get; }

    /// <summary>Bytes of the whole store in memory or on disk: <see cref="BytesFor"/>.</summary>
    public long TotalBytes { get; }

    /// <summary>Rows each staging buffer holds now (0 in memory, or before a lazily sized store's first chunk).</summary>
    public long StagingRows => _slotRows;

    /// <summary>Bytes per element of <paramref name="dtype"/>.</summary>
    public static int ElementBytes(ActivationDType dtype) => dtype switch
    {
        ActivationDType.Float32 => sizeof(float),
        ActivationDType.BFloat16 => sizeof(ushort),
        _ => throw new ArgumentOutOfRangeException(nameof(dtype)),
    };

    /// <summary>
    /// Bytes a store of <paramref name="layers"/> × <paramref name="rows"/> × <paramref name="width"/> holds (in memory,
    /// category Activations, or on disk, category Disk): layers·rows·width·element size, rounded up to whole floats.
    /// </summary>
    public static long BytesFor(int layers, long rows, int width, ActivationDType dtype)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(layers);
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfNegative(width);
        return RoundToFloats(checked(layers * rows * width * ElementBytes(dtype)));
    }

    /// <summary>
    /// Bytes of the staging buffers (category Scratch) an on-disk store created with <paramref name="maxChunkRows"/>
    /// allocates: two buffers of min(maxChunkRows, what fits in <see cref="MaxStagingBytes"/>) rows.
    /// </summary>
    public static long StagingBytes(int maxChunkRows, int width, ActivationDType dtype)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(maxChunkRows);
        ArgumentOutOfRangeException.ThrowIfNegative(width);
        return StagingBuffers * RoundToFloats(SlotRows(maxChunkRows, width, dtype) * width * ElementBytes(dtype));
    }

    /// <summary>A store in memory: one NativeBuffer of <see cref="BytesFor"/> bytes, category Activations.</summary>
    public static LayerInputStore InMemory(int layers, long rows, int width, ActivationDType dtype, MemoryLedger ledger)
    {
        ArgumentNullException.ThrowIfNull(ledger);
        long bytes = BytesFor(layers, rows, width, dtype);
        var memory = new NativeBuffer(bytes / sizeof(float), MemoryCategory.Activations, ledger, "layer inputs");
        return new LayerInputStore(layers, rows, width, dtype, ledger, memory);
    }

    /// <summary>
    /// A store in one file in <paramref name="directory"/> (which must exist), unlinked as soon as it is created, of
    /// <see cref="BytesFor"/> bytes (category Disk), after checking the free space. With <paramref name="maxChunkRows"/>
    /// &gt; 0 the staging buffers (<see cref="StagingBytes"/>, category Scratch) are allocated now and larger chunks go
    /// through them in pieces; with 0 they are allocated for, and grown to, the largest chunk seen.
    /// </summary>
    /// <exception cref="DirectoryNotFoundException">The directory does not exist.</exception>
    /// <exception cref="IOException">Not enough free space, or the file could not be created.</exception>
    public static LayerInputStore OnDisk(string directory, int layers, long rows, int width, ActivationDType dtype, int maxChunkRows, MemoryLedger ledger)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        ArgumentNullException.ThrowIfNull(ledger);
        ArgumentOutOfRangeException.ThrowIfNegative(maxChunkRows);
        long bytes = BytesFor(layers, rows, width, dtype);
        string full = Path.GetFullPath(directory);
        if (!Directory.Exists(full))
        {
            throw new DirectoryNotFoundException($"The directory for offloading layer inputs, {full}, does not exist. Create it or choose another.");
        }

        long free = FreeBytes(full);
        if (bytes > free)
        {
            throw new IOException($"Offloading layer inputs needs {ByteSize.Format(bytes)} on {full}; {ByteSize.Format(free)} free.");
        }

        SafeFileHandle file = CreateUnlinked(full, bytes);
        try
        {
            return new LayerInputStore(layers, rows, width, dtype, ledger, file, full, maxChunkRows);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>Bytes available to this user on the file system holding <paramref name="directory"/>.</summary>
    public static long FreeBytes(string directory) => new DriveInfo(Path.GetFullPath(directory)).AvailableFreeSpace;

    /// <summary>
    /// Stores rows [firstRow, firstRow + rows) of layer <paramref name="layer"/> from <paramref name="source"/>
    /// (rows × Width floats), converted to <see cref="DType"/>. On disk the write runs in the background; the source
    /// may be reused as soon as this returns.
    /// </summary>
    /// <exception cref="IOException">An earlier background write, or this one, failed (for example: disk full).</exception>
    public void Write(int layer, long firstRow, int rows, float* source)
    {
        CheckRange(layer, firstRow, rows);
        if (rows == 0)
        {
            return;
        }

        if (_memory is not null)
        {
            long element = ElementIndex(layer, firstRow);
            long count = (long)rows * Width;
            if (DType == ActivationDType.Float32)
            {
                Buffer.MemoryCopy(source, _memory.Pointer + element, count * sizeof(float), count * sizeof(float));
            }
            else
            {
                BFloat16.FromFloat(source, (ushort*)_memory.Pointer + element, count);
            }

            return;
        }

        DropPrefetches(ElementIndex(layer, firstRow) * _elementBytes, (long)rows * Width * _elementBytes);
        long piece = EnsureStaging(rows);
        for (long r = 0; r < rows; r += piece)
        {
            int n = (int)Math.Min(piece, rows - r);
            long offset = ElementIndex(layer, firstRow + r) * _elementBytes;
            int length = n * Width * _elementBytes;
            Slot slot = Acquire();
            float* from = source + (r * Width);
            if (DType == ActivationDType.Float32)
            {
                Buffer.MemoryCopy(from, slot.Buffer!.Pointer, length, length);
            }
            else
            {
                BFloat16.FromFloat(from, (ushort*)slot.Buffer!.Pointer, (long)n * Width);
            }

            slot.Start(SlotState.Writing, offset, length, ++_sequence, WriteAsync(slot.Memory!.Memory[..length], offset));
        }
    }

    /// <summary>
    /// Reads rows [firstRow, firstRow + rows) of layer <paramref name="layer"/> into <paramref name="destination"/>
    /// (rows × Width floats). Sees every earlier Write. If the same range was prefetched, only waits for that read.
    /// </summary>
    public void Read(int layer, long firstRow, int rows, float* destination)
    {
        CheckRange(layer, firstRow, rows);
        if (rows == 0)
        {
            return;
        }

        long count = (long)rows * Width;
        if (_memory is not null)
        {
            long element = ElementIndex(layer, firstRow);
            if (DType == ActivationDType.Float32)
            {
                Buffer.MemoryCopy(_memory.Pointer + element, destination, count * sizeof(float), count * sizeof(float));
            }
            else
            {
                BFloat16.ToFloat((ushort*)_memory.Pointer + element, destination, count);
            }

            return;
        }

        Flush();
        long offset = ElementIndex(layer, firstRow) * _elementBytes;
        long length = count * _elementBytes;
        if (FindPrefetch(offset, length) is Slot hit)
        {
            try
            {
                hit.Pending!.GetAwaiter().GetResult();
                Unstage(hit.Buffer!, destination, count);
            }
            finally
            {
                hit.Clear();
            }

            return;
        }

        if (DType == ActivationDType.Float32)
        {
            ReadAt(offset, (byte*)destination, length);
            return;
        }

        long piece = EnsureStaging(rows);
        for (long r = 0; r < rows; r += piece)
        {
            int n = (int)Math.Min(piece, rows - r);
            Slot slot = Acquire();
            ReadAt(ElementIndex(layer, firstRow + r) * _elementBytes, (byte*)slot.Buffer!.Pointer, (long)n * Width * _elementBytes);
            Unstage(slot.Buffer!, destination + (r * Width), (long)n * Width);
        }
    }

    /// <summary>
    /// Starts reading rows [firstRow, firstRow + rows) of layer <paramref name="layer"/> in the background so that a
    /// following <see cref="Read"/> of exactly that range only waits for it. A no-op in memory, and for a range larger
    /// than a staging buffer of a store with a fixed chunk size. Each prefetch holds one of the two staging buffers
    /// until it is read; a third one (or a write) reuses the oldest.
    /// </summary>
    public void Prefetch(int layer, long firstRow, int rows)
    {
        CheckRange(layer, firstRow, rows);
        if (_memory is not null || rows == 0)
        {
            return;
        }

        long offset = ElementIndex(layer, firstRow) * _elementBytes;
        long length = (long)rows * Width * _elementBytes;
        if (FindPrefetch(offset, length) is not null || EnsureStaging(rows) < rows)
        {
            return;
        }

        Flush();
        Slot slot = Acquire();
        slot.Start(SlotState.Prefetching, offset, (int)length, ++_sequence, ReadAsync(slot.Memory!.Memory[..(int)length], offset));
    }

    /// <summary>Waits for every background write (and rethrows its failure). In memory: nothing to do.</summary>
    public void Flush()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        foreach (Slot slot in _slots)
        {
            if (slot.State == SlotState.Writing)
            {
                Retire(slot);
            }
        }
    }

    /// <summary>Waits for background I/O (ignoring its failures), closes the file and frees the buffers.</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        foreach (Slot slot in _slots)
        {
            try
            {
                slot.Pending?.GetAwaiter().GetResult();
            }
            catch (Exception)
            {
                // The data is being discarded; a failed background write or read no longer matters.
            }

            slot.Clear();
            slot.Free();
        }

        _io?.Dispose();
        if (_file is not null)
        {
            _file.Dispose();
            _ledger.Add(MemoryCategory.Disk, -TotalBytes);
        }

        _memory?.Dispose();
    }

    private static long RoundToFloats(long bytes) => checked((bytes + sizeof(float) - 1) / sizeof(float) * sizeof(float));

    // Rows of one staging buffer for chunks of maxChunkRows: capped so that one buffer stays within MaxStagingBytes.
    private static long SlotRows(long maxChunkRows, int width, ActivationDType dtype)
    {
        long rowBytes = (long)width * ElementBytes(dtype);
        return rowBytes == 0 ? maxChunkRows : Math.Min(maxChunkRows, Math.Max(1, MaxStagingBytes / rowBytes));
    }

    // Creates the file (CreateNew, so a name clash fails instead of sharing a file), reserves its bytes, and unlinks it
    // at once: from then on only the handle keeps it, and the kernel frees it when the handle closes or the process dies.
    // The name's randomness comes from Guid, not RandomNumberGenerator: that one maps OpenSSL (≈ 5 MiB resident).
    private static SafeFileHandle CreateUnlinked(string directory, long bytes)
    {
        string path = Path.Combine(directory, $".miniseq-offload-{Environment.ProcessId}-{Guid.NewGuid():N}.tmp");
        SafeFileHandle file;
        try
        {
            file = File.OpenHandle(path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete, FileOptions.None, preallocationSize: bytes);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IOException($"Could not create the file for offloading layer inputs ({ByteSize.Format(bytes)}) in {directory}: {e.Message}", e);
        }

        try
        {
            File.Delete(path);
            if (RandomAccess.GetLength(file) < bytes)
            {
                RandomAccess.SetLength(file, bytes);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            file.Dispose();
            File.Delete(path);
            throw new IOException($"Could not set up the file for offloading layer inputs ({ByteSize.Format(bytes)}) in {directory}: {e.Message}", e);
        }

        return file;
    }

    private void CheckRange(int layer, long firstRow, int rows)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if ((uint)layer >= (uint)Layers)
        {
            throw new ArgumentOutOfRangeException(nameof(layer), $"Layer {layer} is outside the {Layers} layers stored.");
        }

        if (firstRow < 0 || rows < 0 || firstRow + rows > Rows)
        {
            throw new ArgumentOutOfRangeException(nameof(firstRow), $"Rows [{firstRow}, {firstRow + rows}) are outside the {Rows} rows of a layer.");
        }
    }

    private long ElementIndex(int layer, long row) => ((layer * Rows) + row) * Width;

    // Rows per staging piece for a chunk of `rows`: grows the buffers of a lazily sized store, else the fixed size.
    private long EnsureStaging(long rows)
    {
        long wanted = SlotRows(rows, Width, DType);
        if (_slotRows >= wanted || (_fixedStaging && _slotRows > 0))
        {
            return _slotRows;
        }

        foreach (Slot slot in _slots)
        {
            Retire(slot);
            slot.Free();
        }

        AllocateStaging(wanted);
        return _slotRows;
    }

    private void AllocateStaging(long slotRows)
    {
        long bytes = RoundToFloats(slotRows * Width * _elementBytes);
        foreach (Slot slot in _slots)
        {
            slot.Allocate(bytes, _ledger);
        }

        _slotRows = slotRows;
    }

    // The slot to use next: an idle one, else the oldest write (waited for), else the oldest prefetch (dropped).
    private Slot Acquire()
    {
        Slot best = _slots[0];
        foreach (Slot slot in _slots)
        {
            if (slot.State < best.State || (slot.State == best.State && slot.Sequence < best.Sequence))
            {
                best = slot;
            }
        }

        Retire(best);
        return best;
    }

    // Waits for a slot's I/O and frees it: a failed write is rethrown, a dropped prefetch's failure is ignored (a Read
    // of that range reads again and reports it).
    private static void Retire(Slot slot)
    {
        try
        {
            if (slot.State == SlotState.Writing)
            {
                slot.Pending!.GetAwaiter().GetResult();
            }
            else if (slot.State == SlotState.Prefetching)
            {
                try
                {
                    slot.Pending!.GetAwaiter().GetResult();
                }
                catch (IOException)
                {
                }
            }
        }
        finally
        {
            slot.Clear();
        }
    }

    private Slot? FindPrefetch(long offset, long length)
    {
        foreach (Slot slot in _slots)
        {
            if (slot.State == SlotState.Prefetching && slot.Offset == offset && slot.Length == length)
            {
                return slot;
            }
        }

        return null;
    }

    // A write makes prefetched copies of the bytes it overwrites stale.
    private void DropPrefetches(long offset, long length)
    {
        foreach (Slot slot in _slots)
        {
            if (slot.State == SlotState.Prefetching && slot.Offset < offset + length && offset < slot.Offset + slot.Length)
            {
                Retire(slot);
            }
        }
    }

    private void Unstage(NativeBuffer staging, float* destination, long count)
    {
        if (DType == ActivationDType.Float32)
        {
            Buffer.MemoryCopy(staging.Pointer, destination, count * sizeof(float), count * sizeof(float));
        }
        else
        {
            BFloat16.ToFloat((ushort*)staging.Pointer, destination, count);
        }
    }

    private Task WriteAsync(ReadOnlyMemory<byte> data, long offset) => _io!.Write(_file!, data, offset, WriteError);

    private Task ReadAsync(Memory<byte> data, long offset) => _io!.Read(_file!, data, offset, ReadError);

    // Synchronous read of `length` bytes at `offset` into `destination`, in pieces of at most MaxStagingBytes.
    private void ReadAt(long offset, byte* destination, long length)
    {
        try
        {
            for (long done = 0; done < length;)
            {
                int want = (int)Math.Min(MaxStagingBytes, length - done);
                int n = RandomAccess.Read(_file!, new Span<byte>(destination + done, want), offset + done);
                done += n > 0 ? n : throw new EndOfStreamException("the file ended early");
            }
        }
        catch (IOException e)
        {
            throw ReadError(length, offset, e);
        }
    }

    private IOException WriteError(long bytes, long offset, IOException inner)
        => new($"Writing {ByteSize.Format(bytes)} of offloaded layer inputs (at offset {offset} of {ByteSize.Format(TotalBytes)}) to {_directory} failed: {inner.Message}", inner);

    private IOException ReadError(long bytes, long offset, IOException inner)
        => new($"Reading {ByteSize.Format(bytes)} of offloaded layer inputs (at offset {offset} of {ByteSize.Format(TotalBytes)}) from {_directory} failed: {inner.Message}", inner);

    // Ordered by how readily Acquire reuses a slot.
    private enum SlotState
    {
        Idle,
        Writing,
        Prefetching,
    }

    // One staging buffer and the background I/O on it.
    private sealed class Slot
    {
        public NativeBuffer? Buffer;
        public StagingMemory? Memory;
        public Task? Pending;
        public SlotState State;
        public long Offset;
        public long Length;
        public long Sequence;

        public void Allocate(long bytes, MemoryLedger ledger)
        {
            Buffer = new NativeBuffer(bytes / sizeof(float), MemoryCategory.Scratch, ledger, "layer-input staging");
            Memory = new StagingMemory(Buffer, checked((int)bytes));
        }

        public void Start(SlotState state, long offset, int length, long sequence, Task pending)
        {
            State = state;
            Offset = offset;
            Length = length;
            Sequence = sequence;
            Pending = pending;
        }

        public void Clear()
        {
            State = SlotState.Idle;
            Pending = null;
        }

        public void Free()
        {
            Buffer?.Dispose();
            Buffer = null;
            Memory = null;
        }
    }

    // A NativeBuffer's bytes as Memory<byte> for RandomAccess; holds the buffer so it outlives any I/O on it.
    private sealed class StagingMemory(NativeBuffer buffer, int length) : MemoryManager<byte>
    {
        public override Span<byte> GetSpan() => new(buffer.Pointer, length);

        public override MemoryHandle Pin(int elementIndex = 0) => new((byte*)buffer.Pointer + elementIndex);

        public override void Unpin()
        {
        }

        protected override void Dispose(bool disposing)
        {
        }
    }
}

// The background file I/O of LayerInputStore: one dedicated thread doing plain positional reads and writes in the order
// they were asked for. Not the thread pool: async file I/O there spins up several workers (their stacks, the code they
// touch) — measured ≈ 7 MiB of resident memory the planner cannot see, at the memory frontier where every MiB counts.
internal sealed class OffloadIoThread : IDisposable
{
    private readonly Queue<(Action Work, TaskCompletionSource Done)> _queue = new();
    private readonly Thread _thread;
    private bool _closed;

    public OffloadIoThread()
    {
        _thread = new Thread(Loop, maxStackSize: 256 * 1024) { IsBackground = true, Name = "MiniSeq offload I/O" };
        _thread.Start();
    }

    public Task Write(SafeFileHandle file, ReadOnlyMemory<byte> data, long offset, Func<long, long, IOException, IOException> error)
        => Enqueue(() =>
        {
            try
            {
                RandomAccess.Write(file, data.Span, offset);
            }
            catch (IOException e)
            {
                throw error(data.Length, offset, e);
            }
        });

    public Task Read(SafeFileHandle file, Memory<byte> data, long offset, Func<long, long, IOException, IOException> error)
        => Enqueue(() =>
        {
            try
            {
                for (int done = 0; done < data.Length;)
                {
                    int n = RandomAccess.Read(file, data.Span[done..], offset + done);
                    done += n > 0 ? n : throw new EndOfStreamException("the file ended early");
                }
            }
            catch (IOException e)
            {
                throw error(data.Length, offset, e);
            }
        });

    /// <summary>Finishes the queued work and ends the thread.</summary>
    public void Dispose()
    {
        lock (_queue)
        {
            _closed = true;
            Monitor.Pulse(_queue);
        }

        _thread.Join();
    }

    private Task Enqueue(Action work)
    {
        var done = new TaskCompletionSource();
        lock (_queue)
        {
            ObjectDisposedException.ThrowIf(_closed, this);
            _queue.Enqueue((work, done));
            Monitor.Pulse(_queue);
        }

        return done.Task;
    }

    private void Loop()
    {
        while (true)
        {
            (Action Work, TaskCompletionSource Done) item;
            lock (_queue)
            {
                while (_queue.Count == 0 && !_closed)
                {
                    Monitor.Wait(_queue);
                }

                if (_queue.Count == 0)
                {
                    return;
                }

                item = _queue.Dequeue();
            }

            try
            {
                item.Work();
                item.Done.SetResult();
            }
            catch (Exception e)
            {
                item.Done.SetException(e);
            }
        }
    }
}
