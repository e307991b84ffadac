using System.Diagnostics;
using System.Runtime.InteropServices;
using NativeParallel.Kernels;
using NativeParallel.Kernels.Cpu;

namespace NativeParallel.Devices;

/// <summary>
/// The host CPU as a device: memory is 64-byte aligned native memory, streams run work as it is issued (so they
/// are trivially in order), events take timestamps, kernels are vectorised multi-threaded C#.
/// </summary>
public sealed unsafe class CpuDevice : IDevice
{
    private static readonly Lazy<CpuDevice> s_instance = new(() => new CpuDevice());
    private readonly CpuStream _stream = new();

    private CpuDevice() => Kernels = new CpuKernels();

    /// <summary>The process's CPU device.</summary>
    public static CpuDevice Instance => s_instance.Value;

    /// <inheritdoc/>
    public DeviceKind Kind => DeviceKind.Cpu;

    /// <inheritdoc/>
    public string Name => "cpu";

    /// <inheritdoc/>
    public string Description =>
        $"{Environment.ProcessorCount} logical cores, {RuntimeInformation.ProcessArchitecture}, " +
        $"vector width {System.Numerics.Vector<byte>.Count * 8} bits";

    /// <inheritdoc/>
    public IKernels Kernels { get; }

    /// <inheritdoc/>
    public IDeviceStream DefaultStream => _stream;

    /// <inheritdoc/>
    public DeviceBuffer Allocate(long bytes)
    {
        if (bytes < 0) throw new ArgumentOutOfRangeException(nameof(bytes), bytes, "allocation size must be non-negative");
        // One byte for empty buffers keeps every pointer valid and distinct.
        void* memory = NativeMemory.AlignedAlloc((nuint)Math.Max(bytes, 1), 64);
        return new DeviceBuffer(this, (ulong)memory, bytes, static p => NativeMemory.AlignedFree((void*)p));
    }

    /// <inheritdoc/>
    public IDeviceStream CreateStream() => new CpuStream();

    /// <inheritdoc/>
    public IDeviceEvent CreateEvent() => new CpuEvent();

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

    /// <summary>The CPU device lives for the process; disposing it does nothing.</summary>
    public void Dispose() { }

    private sealed class CpuStream : IDeviceStream
    {
        public void Synchronize() { }
        public void Wait(IDeviceEvent evt) { }
        public void Dispose() { }
    }

    private sealed class CpuEvent : IDeviceEvent
    {
        private long _timestamp;
        public void Record(IDeviceStream? stream = null) => _timestamp = Stopwatch.GetTimestamp();
        public void Synchronize() { }
        public double ElapsedMillisecondsSince(IDeviceEvent start) =>
            (_timestamp - ((CpuEvent)start)._timestamp) * 1000.0 / Stopwatch.Frequency;
        public void Dispose() { }
    }
}
