namespace NativeParallel.Devices;

/// <summary>
/// A block of device memory owned by one device. <see cref="Pointer"/> is a device address for CUDA and a host
/// address for the CPU, so kernels and copies take it the same way on every device.
/// </summary>
public sealed class DeviceBuffer : IDisposable
{
    private readonly Action<ulong>? _free;
    private int _disposed;

    internal DeviceBuffer(IDevice device, ulong pointer, long bytes, Action<ulong>? free)
    {
        Device = device;
        Pointer = pointer;
        Bytes = bytes;
        _free = free;
    }

    /// <summary>The device that owns the memory.</summary>
    public IDevice Device { get; }

    /// <summary>Address of the first byte (device address, or host address for CPU memory).</summary>
    public ulong Pointer { get; }

    /// <summary>Size in bytes.</summary>
    public long Bytes { get; }

    /// <summary>True once the memory has been returned to the device.</summary>
    public bool IsDisposed => Volatile.Read(ref _disposed) != 0;

    /// <summary>Returns the memory to its device; later calls do nothing.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        _free?.Invoke(Pointer);
    }

    /// <inheritdoc/>
    public override string ToString() => $"{Device.Name} buffer 0x{Pointer:x} ({Bytes} bytes)";
}
