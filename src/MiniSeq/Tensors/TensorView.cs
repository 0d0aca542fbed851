// A non-owning view of fp32 elements in native memory: pointer and length, sliced without copying.
using System.Runtime.InteropServices;

namespace MiniSeq.Tensors;

/// <summary>A non-owning view of floats in a <see cref="NativeBuffer"/>.</summary>
public readonly unsafe struct TensorView
{
    /// <summary>Creates a view.</summary>
    public TensorView(float* pointer, long length)
    {
        Pointer = pointer;
        Length = length;
    }

    /// <summary>First element.</summary>
    public float* Pointer { get; }

    /// <summary>Number of floats.</summary>
    public long Length { get; }

    /// <summary>True for the default (empty) view.</summary>
    public bool IsEmpty => Length == 0;

    /// <summary>The view as a span (throws above 2^31 - 1 elements: chunk such data).</summary>
    public Span<float> Span => new(Pointer, checked((int)Length));

    /// <summary>A sub-view.</summary>
    public TensorView Slice(long offset, long length)
    {
        if (offset < 0 || length < 0 || offset + length > Length)
        {
            throw new ArgumentOutOfRangeException(nameof(offset), $"Slice [{offset}, {offset + length}) is outside a view of {Length} floats.");
        }

        return new TensorView(Pointer + offset, length);
    }

    /// <summary>Sets every element to zero.</summary>
    public void Clear() => NativeMemory.Clear(Pointer, (nuint)(Length * sizeof(float)));

    /// <summary>Copies this view into <paramref name="destination"/> (same length).</summary>
    public void CopyTo(TensorView destination)
    {
        if (destination.Length != Length)
        {
            throw new ArgumentException($"Copy of {Length} floats into a view of {destination.Length}.", nameof(destination));
        }

        Buffer.MemoryCopy(Pointer, destination.Pointer, destination.Length * sizeof(float), Length * sizeof(float));
    }
}
