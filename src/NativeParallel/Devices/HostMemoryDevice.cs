using System.Diagnostics;
using System.Runtime.InteropServices;
using NativeParallel.Kernels;

namespace NativeParallel.Devices;

/// <summary>
/// A device whose memory is host memory: 64-byte aligned native allocations, copies are memcpy, streams run work
/// as it is issued (so they are trivially in order), events take timestamps. The CPU and emulated devices; the
/// emulated device replaces the streams with ones that really run apart (<see cref="EmuDevice"/>).
/// </summary>
public abstract unsafe class HostMemoryDevice : IDevice
{
    private readonly HostStream _stream;
    private readonly Action<ulong> _free, _alignedFree;

    /// <summary>Creates the device and its default stream.</summary>
    protected HostMemoryDevice()
    {
        _stream = new HostStream(this);
        _free = p => Release(p, static q => NativeMemory.Free((void*)q));
        _alignedFree = p => Release(p, static q => NativeMemory.AlignedFree((void*)q));
    }

    /// <summary>Gives memory back; a device whose streams run apart waits until no queued work can still use it.</summary>
    protected virtual void Release(ulong pointer, Action<ulong> free) => free(pointer);

    /// <inheritdoc/>
    public abstract DeviceKind Kind { get; }

    /// <inheritdoc/>
    public abstract string Name { get; }

    /// <inheritdoc/>
    public abstract string Description { get; }

    /// <inheritdoc/>
    public abstract IKernels Kernels { get; }

    /// <inheritdoc/>
    public virtual IDeviceStream DefaultStream => _stream;

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
        if (ExactAllocations) return new DeviceBuffer(this, (ulong)NativeMemory.Alloc(size), bytes, _free);
        void* memory = NativeMemory.AlignedAlloc(size, 64);
        return new DeviceBuffer(this, (ulong)memory, bytes, _alignedFree);
    }

    /// <inheritdoc/>
    public virtual IDeviceStream CreateStream() => new HostStream(this);

    /// <inheritdoc/>
    public virtual IDeviceEvent CreateEvent() => new HostEvent();

    /// <inheritdoc/>
    public virtual void CopyHostToDevice(ReadOnlySpan<byte> src, ulong dst, IDeviceStream? stream = null) =>
        src.CopyTo(new Span<byte>((void*)dst, src.Length));

    /// <inheritdoc/>
    public virtual void CopyDeviceToHost(ulong src, Span<byte> dst, IDeviceStream? stream = null) =>
        new ReadOnlySpan<byte>((void*)src, dst.Length).CopyTo(dst);

    /// <inheritdoc/>
    public virtual void CopyDeviceToDevice(ulong src, ulong dst, long bytes, IDeviceStream? stream = null) =>
        Buffer.MemoryCopy((void*)src, (void*)dst, bytes, bytes);

    /// <inheritdoc/>
    public virtual void Memset(ulong dst, byte value, long bytes, IDeviceStream? stream = null) =>
        NativeMemory.Fill((void*)dst, (nuint)bytes, value);

    /// <inheritdoc/>
    public virtual void Synchronize() { }

    /// <inheritdoc/>
    public virtual void Dispose() { }

    private sealed class HostStream(IDevice device) : IDeviceStream
    {
        public IDevice Device => device;
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
