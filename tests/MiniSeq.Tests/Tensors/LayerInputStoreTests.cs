// LayerInputStore in memory and on disk, fp32 and bf16: chunked writes read back in reverse with prefetch (exact for
// fp32, the BFloat16 conversion for bf16), fixed staging smaller than a chunk (pieces), write-then-read coherence, a
// prefetch made stale by a write, the unlinked file (the directory stays empty while open and after Dispose), the
// missing-directory and not-enough-space errors (before anything is created or allocated), and the ledger: Disk holds
// the file bytes while open, staging is Scratch, and the totals exclude Disk.
using MiniSeq.Kernels;
using MiniSeq.Tensors;
using MiniSeq.Tests.IO;

namespace MiniSeq.Tests.Tensors;

public unsafe class LayerInputStoreTests
{
    private const int Layers = 3, Rows = 37, Width = 19, Chunk = 8;

    private static float[] RandomLayers(int seed)
    {
        var rng = new Random(seed);
        var data = new float[Layers * Rows * Width];
        for (int i = 0; i < data.Length; i++)
        {
            data[i] = (float)((rng.NextDouble() - 0.5) * Math.Pow(2, rng.Next(-20, 20)));
        }

        return data;
    }

    // What reading back must give: the values themselves (fp32) or their round trip through bf16.
    private static float[] Expected(float[] data, ActivationDType dtype)
    {
        if (dtype == ActivationDType.Float32)
        {
            return data;
        }

        var bits = new ushort[data.Length];
        var result = new float[data.Length];
        fixed (float* src = data, dst = result)
        fixed (ushort* b = bits)
        {
            BFloat16.FromFloat(src, b, data.Length);
            BFloat16.ToFloat(b, dst, data.Length);
        }

        return result;
    }

    private static void WriteAll(LayerInputStore store, float[] data, int chunk)
    {
        fixed (float* p = data)
        {
            for (int layer = 0; layer < Layers; layer++)
            {
                for (int row = 0; row < Rows; row += chunk)
                {
                    int n = Math.Min(chunk, Rows - row);
                    store.Write(layer, row, n, p + (((layer * Rows) + row) * Width));
                }
            }
        }
    }

    // Reads every chunk in reverse order (last layer, last chunk first), prefetching the next one before each Read.
    private static float[] ReadAllReversed(LayerInputStore store, int chunk)
    {
        var chunks = new List<(int Layer, int Row, int Count)>();
        for (int layer = Layers - 1; layer >= 0; layer--)
        {
            for (int row = (Rows - 1) / chunk * chunk; row >= 0; row -= chunk)
            {
                chunks.Add((layer, row, Math.Min(chunk, Rows - row)));
            }
        }

        var result = new float[Layers * Rows * Width];
        Array.Fill(result, float.NaN);
        fixed (float* p = result)
        {
            store.Prefetch(chunks[0].Layer, chunks[0].Row, chunks[0].Count);
            for (int i = 0; i < chunks.Count; i++)
            {
                if (i + 1 < chunks.Count)
                {
                    store.Prefetch(chunks[i + 1].Layer, chunks[i + 1].Row, chunks[i + 1].Count);
                }

                (int layer, int row, int count) = chunks[i];
                store.Read(layer, row, count, p + (((layer * Rows) + row) * Width));
            }
        }

        return result;
    }

    private static LayerInputStore Create(bool onDisk, string directory, ActivationDType dtype, int maxChunkRows, MemoryLedger ledger)
        => onDisk
            ? LayerInputStore.OnDisk(directory, Layers, Rows, Width, dtype, maxChunkRows, ledger)
            : LayerInputStore.InMemory(Layers, Rows, Width, dtype, ledger);

    private static void AssertBitsEqual(float[] expected, float[] actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            if (BitConverter.SingleToInt32Bits(expected[i]) != BitConverter.SingleToInt32Bits(actual[i]))
            {
                Assert.Fail($"element {i} (layer {i / (Rows * Width)}, row {i / Width % Rows}): expected {expected[i]}, got {actual[i]}");
            }
        }
    }

    public static TheoryData<bool, ActivationDType, int> Stores => new()
    {
        { false, ActivationDType.Float32, 0 },
        { false, ActivationDType.BFloat16, 0 },
        { true, ActivationDType.Float32, Chunk },   // staging sized up front
        { true, ActivationDType.BFloat16, Chunk },
        { true, ActivationDType.Float32, 0 },       // staging sized by the first chunk
        { true, ActivationDType.BFloat16, 0 },
        { true, ActivationDType.Float32, 5 },       // staging smaller than a chunk: pieces, prefetch skipped
        { true, ActivationDType.BFloat16, 5 },
    };

    [Theory]
    [MemberData(nameof(Stores))]
    public void ChunkedWrite_ReverseReadWithPrefetch_RoundTrips(bool onDisk, ActivationDType dtype, int maxChunkRows)
    {
        using var dir = new TempDirectory();
        float[] data = RandomLayers(7);
        var ledger = new MemoryLedger();
        using (LayerInputStore store = Create(onDisk, dir.Path, dtype, maxChunkRows, ledger))
        {
            Assert.Equal(onDisk, store.IsOnDisk);
            Assert.Equal(dtype, store.DType);
            WriteAll(store, data, Chunk);
            AssertBitsEqual(Expected(data, dtype), ReadAllReversed(store, Chunk));

            // A second pass overwrites everything; reads see only the new values.
            float[] again = RandomLayers(8);
            WriteAll(store, again, Chunk);
            store.Flush();
            AssertBitsEqual(Expected(again, dtype), ReadAllReversed(store, Chunk));
            Assert.Empty(Directory.EnumerateFileSystemEntries(dir.Path));
        }

        Assert.Empty(Directory.EnumerateFileSystemEntries(dir.Path));
        foreach (MemoryCategory c in MemoryLedger.Categories)
        {
            Assert.Equal(0, ledger.Current(c));
        }
    }

    [Theory]
    [MemberData(nameof(Stores))]
    public void WriteThenRead_SameRange_SeesTheWrite_AndAStalePrefetchIsDropped(bool onDisk, ActivationDType dtype, int maxChunkRows)
    {
        using var dir = new TempDirectory();
        float[] first = RandomLayers(1), second = RandomLayers(2);
        float[] expectedFirst = Expected(first, dtype), expectedSecond = Expected(second, dtype);
        var ledger = new MemoryLedger();
        using LayerInputStore store = Create(onDisk, dir.Path, dtype, maxChunkRows, ledger);
        var read = new float[Chunk * Width];
        fixed (float* a = first, b = second, r = read)
        {
            // Read straight after Write, no Flush: the pending write is waited for.
            store.Write(1, 3, Chunk, a + (((1 * Rows) + 3) * Width));
            store.Read(1, 3, Chunk, r);
            Assert.Equal(expectedFirst.AsSpan(((1 * Rows) + 3) * Width, Chunk * Width).ToArray(), read);

            // Prefetch, then overwrite part of the range: the prefetched copy is stale and must not be used.
            store.Prefetch(1, 3, Chunk);
            store.Write(1, 5, 2, b + (((1 * Rows) + 5) * Width));
            store.Read(1, 3, Chunk, r);
            float[] expected = expectedFirst.AsSpan(((1 * Rows) + 3) * Width, Chunk * Width).ToArray();
            expectedSecond.AsSpan(((1 * Rows) + 5) * Width, 2 * Width).CopyTo(expected.AsSpan(2 * Width));
            Assert.Equal(expected, read);
        }
    }

    [Theory]
    [InlineData(ActivationDType.Float32)]
    [InlineData(ActivationDType.BFloat16)]
    public void OnDisk_LazyStaging_GrowsToTheLargestChunk_WithWritesPending(ActivationDType dtype)
    {
        using var dir = new TempDirectory();
        float[] data = RandomLayers(5);
        var ledger = new MemoryLedger();
        using LayerInputStore store = LayerInputStore.OnDisk(dir.Path, Layers, Rows, Width, dtype, maxChunkRows: 0, ledger);
        Assert.Equal(0, ledger.Current(MemoryCategory.Scratch));
        var read = new float[Layers * Rows * Width];
        fixed (float* p = data, r = read)
        {
            // Chunks of 3, then 11 (growth while a write of 3 is pending), then the rest of each layer in one go.
            for (int layer = 0; layer < Layers; layer++)
            {
                float* at = p + (layer * Rows * Width);
                store.Write(layer, 0, 3, at);
                Assert.Equal(layer == 0 ? 3 : Rows - 14, store.StagingRows);
                store.Write(layer, 3, 11, at + (3 * Width));
                store.Write(layer, 14, Rows - 14, at + (14 * Width));
            }

            Assert.Equal(Rows - 14, store.StagingRows);
            Assert.Equal(LayerInputStore.StagingBytes(Rows - 14, Width, dtype), ledger.Current(MemoryCategory.Scratch));
            for (int layer = Layers - 1; layer >= 0; layer--)
            {
                store.Read(layer, 0, Rows, r + (layer * Rows * Width)); // larger than staging: bf16 goes through it in pieces
            }
        }

        AssertBitsEqual(Expected(data, dtype), read);
    }

    [Fact]
    public void OnDisk_FileIsUnlinkedAtCreation_DirectoryEmptyWhileOpenAndAfter()
    {
        using var dir = new TempDirectory();
        var ledger = new MemoryLedger();
        using (LayerInputStore store = LayerInputStore.OnDisk(dir.Path, Layers, Rows, Width, ActivationDType.BFloat16, Chunk, ledger))
        {
            Assert.Empty(Directory.EnumerateFileSystemEntries(dir.Path));
            WriteAll(store, RandomLayers(3), Chunk);
            store.Flush();
            Assert.Empty(Directory.EnumerateFileSystemEntries(dir.Path));
            if (OperatingSystem.IsLinux())
            {
                // The open handle still points at the file, which the kernel reports as deleted.
                string[] links = Directory.GetFiles("/proc/self/fd").Select(fd => new FileInfo(fd).LinkTarget ?? "").ToArray();
                Assert.Contains(links, l => l.StartsWith(Path.Combine(dir.Path, ".miniseq-offload-" + Environment.ProcessId + "-"), StringComparison.Ordinal) && l.EndsWith(".tmp (deleted)", StringComparison.Ordinal));
            }
        }

        Assert.Empty(Directory.EnumerateFileSystemEntries(dir.Path));
    }

    [Fact]
    public void OnDisk_MissingDirectory_ClearError()
    {
        using var dir = new TempDirectory();
        string missing = Path.Combine(dir.Path, "no-such-dir");
        var ledger = new MemoryLedger();
        var e = Assert.Throws<DirectoryNotFoundException>(() => LayerInputStore.OnDisk(missing, Layers, Rows, Width, ActivationDType.Float32, Chunk, ledger));
        Assert.Contains(missing, e.Message, StringComparison.Ordinal);
        Assert.Contains("does not exist", e.Message, StringComparison.Ordinal);
        Assert.False(Directory.Exists(missing));
        Assert.Equal(0, ledger.Current(MemoryCategory.Scratch));
    }

    [Fact]
    public void OnDisk_LargerThanFreeSpace_ClearErrorBeforeAnythingIsCreated()
    {
        using var dir = new TempDirectory();
        var ledger = new MemoryLedger();
        const long Huge = 1L << 50;
        var e = Assert.Throws<IOException>(() => LayerInputStore.OnDisk(dir.Path, 2, Huge, 1, ActivationDType.Float32, Chunk, ledger));
        Assert.Contains("Offloading layer inputs needs " + ByteSize.Format(LayerInputStore.BytesFor(2, Huge, 1, ActivationDType.Float32)), e.Message, StringComparison.Ordinal);
        Assert.Contains(dir.Path, e.Message, StringComparison.Ordinal);
        Assert.Contains(" free", e.Message, StringComparison.Ordinal);
        Assert.Empty(Directory.EnumerateFileSystemEntries(dir.Path));
        foreach (MemoryCategory c in MemoryLedger.Categories)
        {
            Assert.Equal(0, ledger.Peak(c));
        }
    }

    [Theory]
    [InlineData(ActivationDType.Float32)]
    [InlineData(ActivationDType.BFloat16)]
    public void Ledger_DiskHoldsFileBytes_StagingIsScratch_TotalsExcludeDisk(ActivationDType dtype)
    {
        using var dir = new TempDirectory();
        var ledger = new MemoryLedger();
        long fileBytes = LayerInputStore.BytesFor(Layers, Rows, Width, dtype);
        long staging = LayerInputStore.StagingBytes(Chunk, Width, dtype);
        Assert.Equal((Layers * Rows * Width * LayerInputStore.ElementBytes(dtype) + 3) / 4 * 4, fileBytes); // 3·37·19 = 2109 bf16 values: rounded to whole floats
        Assert.Equal(2 * Chunk * Width * LayerInputStore.ElementBytes(dtype), staging);
        using (LayerInputStore store = LayerInputStore.OnDisk(dir.Path, Layers, Rows, Width, dtype, Chunk, ledger))
        {
            Assert.Equal(fileBytes, store.TotalBytes);
            Assert.Equal(Rows * Width * LayerInputStore.ElementBytes(dtype), store.BytesPerLayer);
            Assert.Equal(fileBytes, ledger.Current(MemoryCategory.Disk));
            Assert.Equal(staging, ledger.Current(MemoryCategory.Scratch));
            Assert.Equal(0, ledger.Current(MemoryCategory.Activations));
            Assert.Equal(staging, ledger.CurrentTotal);
            WriteAll(store, RandomLayers(4), Chunk);
            _ = ReadAllReversed(store, Chunk);
            Assert.Equal(staging, ledger.Peak(MemoryCategory.Scratch)); // reads and writes stay within the staging
            Assert.Equal(staging, ledger.PeakTotal);
        }

        Assert.Equal(0, ledger.Current(MemoryCategory.Disk));
        Assert.Equal(0, ledger.Current(MemoryCategory.Scratch));
        Assert.Equal(0, ledger.CurrentTotal);
        Assert.Equal(fileBytes, ledger.Peak(MemoryCategory.Disk));
        Assert.Equal(staging, ledger.PeakTotal);

        using (LayerInputStore store = LayerInputStore.InMemory(Layers, Rows, Width, dtype, ledger))
        {
            Assert.Equal(fileBytes, ledger.Current(MemoryCategory.Activations));
            Assert.Equal(fileBytes, ledger.CurrentTotal);
            Assert.Equal(0, ledger.Current(MemoryCategory.Disk));
            Assert.False(store.IsOnDisk);
        }

        Assert.Equal(0, ledger.CurrentTotal);
    }

    [Fact]
    public void BytesFor_RoundsToWholeFloats_AndStagingIsCapped()
    {
        Assert.Equal(0, LayerInputStore.BytesFor(0, 10, 10, ActivationDType.BFloat16));
        Assert.Equal(4, LayerInputStore.BytesFor(1, 1, 1, ActivationDType.BFloat16));
        Assert.Equal(2L * 3 * 5 * 4, LayerInputStore.BytesFor(2, 3, 5, ActivationDType.Float32));
        Assert.Equal(0, LayerInputStore.StagingBytes(0, 64, ActivationDType.Float32));
        Assert.Equal(2 * 4, LayerInputStore.StagingBytes(1, 1, ActivationDType.BFloat16));
        Assert.Equal(2L * LayerInputStore.MaxStagingBytes, LayerInputStore.StagingBytes(int.MaxValue, 1024, ActivationDType.Float32));
    }

    [Fact]
    public void OutOfRange_AndDisposed_Throw()
    {
        var ledger = new MemoryLedger();
        LayerInputStore store = LayerInputStore.InMemory(Layers, Rows, Width, ActivationDType.Float32, ledger);
        var buffer = new float[(Rows + 1) * Width];
        fixed (float* p = buffer)
        {
            float* q = p;
            Assert.Throws<ArgumentOutOfRangeException>(() => store.Write(Layers, 0, 1, q));
            Assert.Throws<ArgumentOutOfRangeException>(() => store.Write(-1, 0, 1, q));
            Assert.Throws<ArgumentOutOfRangeException>(() => store.Read(0, Rows - 2, 3, q));
            Assert.Throws<ArgumentOutOfRangeException>(() => store.Prefetch(0, -1, 1));
            store.Dispose();
            store.Dispose();
            Assert.Throws<ObjectDisposedException>(() => store.Read(0, 0, 1, q));
        }

        Assert.Equal(0, ledger.CurrentTotal);
    }
}
