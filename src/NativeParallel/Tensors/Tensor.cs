using System.Runtime.InteropServices;
using NativeParallel.Devices;

namespace NativeParallel.Tensors;

/// <summary>
/// A strided view of device memory: dtype, shape, strides (in elements) and an element offset into a
/// <see cref="DeviceBuffer"/>. Views share the buffer; only the tensor made by <see cref="Empty"/> (or the host
/// constructors) owns it and frees it on <see cref="Dispose"/>. Kernels take contiguous tensors.
/// </summary>
public sealed class Tensor : IDisposable
{
    private readonly bool _ownsStorage;

    private Tensor(DeviceBuffer storage, DType dtype, int[] shape, long[] strides, long offset, bool ownsStorage)
    {
        Storage = storage;
        DType = dtype;
        Shape = shape;
        Strides = strides;
        Offset = offset;
        _ownsStorage = ownsStorage;
    }

    /// <summary>The memory the tensor views.</summary>
    public DeviceBuffer Storage { get; }

    /// <summary>The device holding the memory.</summary>
    public IDevice Device => Storage.Device;

    /// <summary>Element type.</summary>
    public DType DType { get; }

    /// <summary>Extent of each dimension.</summary>
    public int[] Shape { get; }

    /// <summary>Distance in elements between neighbours along each dimension.</summary>
    public long[] Strides { get; }

    /// <summary>Offset in elements of the first element from the start of <see cref="Storage"/>.</summary>
    public long Offset { get; }

    /// <summary>Number of dimensions.</summary>
    public int Rank => Shape.Length;

    /// <summary>Number of elements.</summary>
    public long Count => CountOf(Shape);

    /// <summary>Bytes covered by the elements (contiguous tensors).</summary>
    public long Bytes => Count * DType.SizeOf();

    /// <summary>Address of the first element.</summary>
    public ulong Pointer => Storage.Pointer + (ulong)(Offset * DType.SizeOf());

    /// <summary>True when the elements are laid out densely in row-major order.</summary>
    public bool IsContiguous
    {
        get
        {
            if (Count == 0) return true;
            long expected = 1;
            for (int d = Rank - 1; d >= 0; d--)
            {
                if (Shape[d] != 1 && Strides[d] != expected) return false;
                expected *= Shape[d];
            }
            return true;
        }
    }

    /// <summary>Extent of dimension <paramref name="dim"/> (negative counts from the end).</summary>
    public int Dim(int dim) => Shape[dim < 0 ? Rank + dim : dim];

    /// <summary>Allocates an uninitialised contiguous tensor.</summary>
    public static Tensor Empty(IDevice device, DType dtype, params int[] shape)
    {
        foreach (int extent in shape)
            if (extent < 0) throw new ArgumentException($"negative extent in shape [{string.Join(", ", shape)}]");
        var storage = device.Allocate(CountOf(shape) * dtype.SizeOf());
        return new Tensor(storage, dtype, (int[])shape.Clone(), RowMajorStrides(shape), 0, ownsStorage: true);
    }

    /// <summary>A non-owning tensor over memory at <paramref name="pointer"/> on <paramref name="device"/> (a peer's buffer).</summary>
    internal static Tensor Wrap(IDevice device, ulong pointer, DType dtype, params int[] shape) =>
        new(new DeviceBuffer(device, pointer, CountOf(shape) * dtype.SizeOf(), free: null), dtype, (int[])shape.Clone(), RowMajorStrides(shape), 0, ownsStorage: false);

    /// <summary>Uploads floats, rounded to <paramref name="dtype"/> (f32, bf16 or f16).</summary>
    public static Tensor FromFloats(IDevice device, ReadOnlySpan<float> values, DType dtype, params int[] shape)
    {
        CheckCount(values.Length, shape);
        var t = Empty(device, dtype, shape);
        t.CopyFromHost(HostEncoding.Encode(values, dtype));
        return t;
    }

    /// <summary>Uploads 32-bit integers as an i32 tensor.</summary>
    public static Tensor FromInts(IDevice device, ReadOnlySpan<int> values, params int[] shape)
    {
        CheckCount(values.Length, shape);
        var t = Empty(device, DType.I32, shape);
        t.CopyFromHost(MemoryMarshal.AsBytes(values));
        return t;
    }

    /// <summary>Uploads 64-bit integers as an i64 tensor.</summary>
    public static Tensor FromLongs(IDevice device, ReadOnlySpan<long> values, params int[] shape)
    {
        CheckCount(values.Length, shape);
        var t = Empty(device, DType.I64, shape);
        t.CopyFromHost(MemoryMarshal.AsBytes(values));
        return t;
    }

    /// <summary>A tensor of uniform values in [lo, hi) from a counter-based stream: identical on every device.</summary>
    public static Tensor Uniform(IDevice device, DType dtype, ulong seed, float lo, float hi, params int[] shape)
    {
        var values = new float[CountOf(shape)];
        SeededRandom.Uniform(seed, values, lo, hi);
        return FromFloats(device, values, dtype, shape);
    }

    /// <summary>A tensor of normal values from a counter-based stream: identical on every device.</summary>
    public static Tensor Normal(IDevice device, DType dtype, ulong seed, float std, params int[] shape)
    {
        var values = new float[CountOf(shape)];
        SeededRandom.Normal(seed, values, 0f, std);
        return FromFloats(device, values, dtype, shape);
    }

    /// <summary>Copies raw bytes (already in this tensor's dtype) into the tensor, which must be contiguous.</summary>
    public void CopyFromHost(ReadOnlySpan<byte> bytes)
    {
        RequireContiguous(nameof(CopyFromHost));
        if (bytes.Length != Bytes) throw new ArgumentException($"expected {Bytes} bytes for {this}, got {bytes.Length}");
        if (bytes.Length > 0) Device.CopyHostToDevice(bytes, Pointer);
    }

    /// <summary>Reads the raw bytes of a contiguous tensor.</summary>
    public byte[] ToBytes()
    {
        RequireContiguous(nameof(ToBytes));
        var bytes = new byte[Bytes];
        if (bytes.Length > 0) Device.CopyDeviceToHost(Pointer, bytes);
        return bytes;
    }

    /// <summary>Reads a contiguous float tensor as f32 values (exact widening for bf16 and f16).</summary>
    public float[] ToFloats() => HostEncoding.DecodeFloats(ToBytes(), DType);

    /// <summary>Reads a contiguous i32 tensor.</summary>
    public int[] ToInts()
    {
        if (DType != DType.I32) throw new InvalidOperationException($"ToInts needs an i32 tensor, this is {this}");
        return MemoryMarshal.Cast<byte, int>(ToBytes()).ToArray();
    }

    /// <summary>Reads a contiguous i64 tensor.</summary>
    public long[] ToLongs()
    {
        if (DType != DType.I64) throw new InvalidOperationException($"ToLongs needs an i64 tensor, this is {this}");
        return MemoryMarshal.Cast<byte, long>(ToBytes()).ToArray();
    }

    /// <summary>Sets every byte to <paramref name="value"/>; 0xFF makes every float element NaN (used to poison outputs).</summary>
    public void FillBytes(byte value)
    {
        RequireContiguous(nameof(FillBytes));
        if (Bytes > 0) Device.Memset(Pointer, value, Bytes);
    }

    /// <summary>Copies this contiguous tensor into <paramref name="destination"/> (same dtype and count, same device).</summary>
    public void CopyTo(Tensor destination)
    {
        RequireContiguous(nameof(CopyTo));
        destination.RequireContiguous(nameof(CopyTo));
        if (destination.DType != DType || destination.Count != Count)
            throw new ArgumentException($"cannot copy {this} into {destination}: dtype and element count must match");
        if (!ReferenceEquals(destination.Device, Device))
            throw new ArgumentException($"cannot copy {this} into {destination}: different devices (go through the host)");
        if (Bytes > 0) Device.CopyDeviceToDevice(Pointer, destination.Pointer, Bytes);
    }

    /// <summary>The same elements with another shape (contiguous tensors only); one extent may be -1.</summary>
    public Tensor View(params int[] shape)
    {
        RequireContiguous(nameof(View));
        shape = (int[])shape.Clone();
        int inferred = Array.IndexOf(shape, -1);
        if (inferred >= 0)
        {
            long known = 1;
            for (int i = 0; i < shape.Length; i++) if (i != inferred) known *= shape[i];
            shape[inferred] = known == 0 ? 0 : (int)(Count / known);
        }
        if (CountOf(shape) != Count)
            throw new ArgumentException($"cannot view {this} as [{string.Join(", ", shape)}]: element counts differ");
        return new Tensor(Storage, DType, shape, RowMajorStrides(shape), Offset, ownsStorage: false);
    }

    /// <summary>The elements [start, start + length) along <paramref name="dim"/> (a view).</summary>
    public Tensor Narrow(int dim, int start, int length)
    {
        if (dim < 0) dim += Rank;
        if (dim < 0 || dim >= Rank) throw new ArgumentOutOfRangeException(nameof(dim), $"{this} has {Rank} dimensions");
        if (start < 0 || length < 0 || start + length > Shape[dim])
            throw new ArgumentOutOfRangeException(nameof(start), $"range [{start}, {start + length}) is outside dimension {dim} of {this}");
        var shape = (int[])Shape.Clone();
        shape[dim] = length;
        return new Tensor(Storage, DType, shape, (long[])Strides.Clone(), Offset + start * Strides[dim], ownsStorage: false);
    }

    /// <summary>Swaps two dimensions (a view; the result is not contiguous in general).</summary>
    public Tensor Transpose(int dim0, int dim1)
    {
        if (dim0 < 0) dim0 += Rank;
        if (dim1 < 0) dim1 += Rank;
        var shape = (int[])Shape.Clone();
        var strides = (long[])Strides.Clone();
        (shape[dim0], shape[dim1]) = (shape[dim1], shape[dim0]);
        (strides[dim0], strides[dim1]) = (strides[dim1], strides[dim0]);
        return new Tensor(Storage, DType, shape, strides, Offset, ownsStorage: false);
    }

    /// <summary>Frees the memory if this tensor owns it (views never do).</summary>
    public void Dispose()
    {
        if (_ownsStorage) Storage.Dispose();
    }

    /// <inheritdoc/>
    public override string ToString() => $"{DType.Name()}[{string.Join(", ", Shape)}] on {Device.Name}";

    internal void RequireContiguous(string operation)
    {
        if (!IsContiguous) throw new InvalidOperationException($"{operation} needs a contiguous tensor, got a strided view {this}");
    }

    internal static long CountOf(ReadOnlySpan<int> shape)
    {
        long n = 1;
        foreach (int extent in shape) n *= extent;
        return n;
    }

    private static long[] RowMajorStrides(int[] shape)
    {
        var strides = new long[shape.Length];
        long stride = 1;
        for (int d = shape.Length - 1; d >= 0; d--)
        {
            strides[d] = stride;
            stride *= Math.Max(shape[d], 1);
        }
        return strides;
    }

    private static void CheckCount(int count, int[] shape)
    {
        if (CountOf(shape) != count)
            throw new ArgumentException($"{count} values do not fill shape [{string.Join(", ", shape)}] ({CountOf(shape)} elements)");
    }
}
