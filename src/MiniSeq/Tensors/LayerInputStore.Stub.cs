namespace MiniSeq.Tensors;

public enum ActivationDType { Float32, BFloat16 }
public sealed unsafe class LayerInputStore : IDisposable
{
    public static LayerInputStore InMemory(int layers, long rows, int width, ActivationDType dtype, MemoryLedger ledger) => throw new NotImplementedException();
    public static LayerInputStore OnDisk(string directory, int layers, long rows, int width, ActivationDType dtype, int maxChunkRows, MemoryLedger ledger) => throw new NotImplementedException();
    public static long BytesFor(int layers, long rows, int width, ActivationDType dtype) => layers * rows * width * (dtype == ActivationDType.BFloat16 ? 2 : 4);
    public static long StagingBytes(int maxChunkRows, int width, ActivationDType dtype) => 0;
    public void Write(int layer, long firstRow, int rows, float* source) { }
    public void Read(int layer, long firstRow, int rows, float* destination) { }
    public void Prefetch(int layer, long firstRow, int rows) { }
    public void Flush() { }
    public void Dispose() { }
}
