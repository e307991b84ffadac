using NativeParallel.Kernels;

namespace NativeParallel.Devices;

/// <summary>
/// One compute device: memory, copies, streams, events and kernel launch. CPU, CUDA and the emulated device
/// implement it, so everything above (tensors, collectives, models) is written once.
/// </summary>
public interface IDevice : IDisposable
{
    /// <summary>cpu, cuda or emu.</summary>
    DeviceKind Kind { get; }

    /// <summary>A name such as <c>cpu</c> or <c>cuda:0</c>.</summary>
    string Name { get; }

    /// <summary>A human description (model, memory, compute capability).</summary>
    string Description { get; }

    /// <summary>Allocates <paramref name="bytes"/> bytes (contents undefined). Zero bytes gives a valid empty buffer.</summary>
    DeviceBuffer Allocate(long bytes);

    /// <summary>The stream work goes to when no other is current (<see cref="CurrentStreams.UseStream"/>); it runs in issue order.</summary>
    IDeviceStream DefaultStream { get; }

    /// <summary>Creates a new in-order stream.</summary>
    IDeviceStream CreateStream();

    /// <summary>Creates an event that records a point in a stream and its time.</summary>
    IDeviceEvent CreateEvent();

    // Every copy below runs on stream, or on the calling thread's current stream of this device when it is null.

    /// <summary>Copies host bytes to device memory at <paramref name="dst"/>, ordered on <paramref name="stream"/>; returns once the source may be reused.</summary>
    void CopyHostToDevice(ReadOnlySpan<byte> src, ulong dst, IDeviceStream? stream = null);

    /// <summary>Copies device bytes at <paramref name="src"/> to the host; returns once <paramref name="dst"/> holds them.</summary>
    void CopyDeviceToHost(ulong src, Span<byte> dst, IDeviceStream? stream = null);

    /// <summary>Copies <paramref name="bytes"/> bytes between two addresses of this device, ordered on <paramref name="stream"/>.</summary>
    void CopyDeviceToDevice(ulong src, ulong dst, long bytes, IDeviceStream? stream = null);

    /// <summary>Sets <paramref name="bytes"/> bytes at <paramref name="dst"/> to <paramref name="value"/>.</summary>
    void Memset(ulong dst, byte value, long bytes, IDeviceStream? stream = null);

    /// <summary>Waits until all work issued to this device, on every stream, has finished.</summary>
    void Synchronize();

    /// <summary>The kernels of this device: one method per op, each checked against the CPU reference.</summary>
    IKernels Kernels { get; }
}

/// <summary>
/// An in-order queue of work on a device. Work on two streams is unordered unless an event orders it: a stream
/// that reads what another wrote waits for an event recorded after the write (<see cref="Wait"/>).
/// </summary>
public interface IDeviceStream : IDisposable
{
    /// <summary>The device the stream belongs to.</summary>
    IDevice Device { get; }

    /// <summary>Blocks until everything issued to the stream has finished.</summary>
    void Synchronize();

    /// <summary>Makes later work on this stream wait for <paramref name="evt"/>.</summary>
    void Wait(IDeviceEvent evt);
}

/// <summary>A marker recorded into a stream; two of them give an elapsed time.</summary>
public interface IDeviceEvent : IDisposable
{
    /// <summary>Records the event at the current end of <paramref name="stream"/> (the current stream when null); a later record replaces it.</summary>
    void Record(IDeviceStream? stream = null);

    /// <summary>Blocks until the recorded point has been reached.</summary>
    void Synchronize();

    /// <summary>Milliseconds between <paramref name="start"/> and this event (both recorded and reached).</summary>
    double ElapsedMillisecondsSince(IDeviceEvent start);
}
