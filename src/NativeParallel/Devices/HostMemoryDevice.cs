using System.Diagnostics;
using System.Runtime.InteropServices;
using NativeParallel.Kernels;

namespace NativeParallel.Devices;

/// <summary>
/// A device whose memory is host memory: 64-byte aligned native allocations, copies are memcpy, streams run work
/// as it is issued (so they are trivially in order), events take timestamps. The CPU and emulated devices.
/// </summary>
public abstract unsafe class HostMemoryDevice : IDevice
{
    private readonly HostStream _stream = new();

    /// <inheritdoc/>
    public abstract DeviceKind Kind { get; }

    /// <inheritdoc/>
    public abstract string Name { get; }

    /// <inheritdoc/>
    public abstract string Description { get; }

    /// <inheritdoc/>
    public abstract IKernels Kernels { get; }

    /// <inheritdoc/>
    public IDeviceStream DefaultStream => _stream;

    /// <summary>
    /// Exact-size allocations (malloc, 16-byte aligned) instead of 64-byte aligned ones, whose size is rounded up:
    /// AddressSanitizer then sees the first byte past a buffer as out of bounds.
    /// </summary>
    protected virtual bool ExactAllocations => false;

    /// <inheritdoc/>
    public DeviceBuffer Allocate(long bytes)
    {
        if (bytes < 0) throw new ArgumentOutOfRangeException(nameof(bytes), bytes, "allocation size must be non-negative");
        // One byte for empty buffers keeps every pointer valid and distinct.
        nuint size = (nuint)Math.Max(bytes, 1);
        if (ExactAllocations) return new DeviceBuffer(this, (ulong)NativeMemory.Alloc(size), bytes, static p => NativeMemory.Free((void*)p));
        void* memory = NativeMemory.AlignedAlloc(size, 64);
        return new DeviceBuffer(this, (ulong)memory, bytes, static p => NativeMemory.AlignedFree((void*)p));
    }

    /// <inheritdoc/>
    public IDeviceStream CreateStream() => new HostStream();

    /// <inheritdoc/>
    public IDeviceEvent CreateEvent() => new HostEvent();

    /// <inheritdoc/>
    public void CopyHostToDevice(ReadOnlySpan<byte> src, ulong dst, IDeviceStream? stream = null) =>
        src.CopyTo(new Span<byte>((void*)dst, src.Length));

    /// <inheritdoc/>
    public void CopyDeviceToHost(ulong src, Span<byte> dst, IDeviceStream? stream = null) =>
        new ReadOnlySpan<byte>((void*)src, dst.Length).CopyTo(dst);

    /// <inheritdoc/>
    public void CopyDeviceToDevice(ulong src, ulong dst, long bytes, IDeviceStream? stream = null) =>
        Buffer.MemoryCopy((void*)src, (void*)dst, bytes, bytes);

    /// <inheritdoc/>
    public void Memset(ulong dst, byte value, long bytes, IDeviceStream? stream = null) =>
        NativeMemory.Fill((void*)dst, (nuint)bytes, value);

    /// <inheritdoc/>
    public void Synchronize() { }

    /// <inheritdoc/>
    public virtual void Dispose() { }

    private sealed class HostStream : IDeviceStream
    {
        public void Synchronize() { }
        public void Wait(IDeviceEvent evt) { }
        public void Dispose() { }
    }

    private sealed class HostEvent : IDeviceEvent
    {
        private long _timestamp;
        public void Record(IDeviceStream? stream = null) => _timestamp = Stopwatch.GetTimestamp();
        public void Synchronize() { }
        public double ElapsedMillisecondsSince(IDeviceEvent start) =>
            (_timestamp - ((HostEvent)start)._timestamp) * 1000.0 / Stopwatch.Frequency;
        public void Dispose() { }
    }
}
