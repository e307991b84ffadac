using System.Runtime.CompilerServices;
using NativeParallel.Devices;

namespace NativeParallel.Comm;

/// <summary>
/// An async collective in flight, as PyTorch's <c>Work</c>: <see cref="Wait()"/> blocks the calling thread until it
/// is done; <see cref="Wait(IDeviceStream)"/> orders a device stream after it instead, so kernels queued there read
/// its result without the host waiting for the device. It converts to (and awaits as) a <see cref="Task"/>.
/// </summary>
public sealed class CollectiveWork
{
    private readonly CurrentStreams.Snapshot _issuedUnder;

    internal CollectiveWork(Task task, CurrentStreams.Snapshot issuedUnder)
    {
        Task = task;
        _issuedUnder = issuedUnder;
    }

    /// <summary>Completes when the collective has run on the group's worker (its device work issued, host work done).</summary>
    public Task Task { get; }

    /// <summary>True once the collective has run (or failed).</summary>
    public bool IsCompleted => Task.IsCompleted;

    /// <summary>True once the collective has failed.</summary>
    public bool IsFaulted => Task.IsFaulted;

    /// <summary>The failure, once the collective has failed (null before, and when it succeeded).</summary>
    public AggregateException? Exception => Task.Exception;

    /// <summary>Blocks until the collective is done; its failure is thrown as <see cref="Task.Wait()"/> throws it.</summary>
    public void Wait() => Task.Wait();

    /// <summary>
    /// Makes later work on <paramref name="stream"/> wait for the collective. A collective runs on the stream that
    /// was current for its device where it was called; this waits (on the host) only until its work has been issued
    /// there, then orders <paramref name="stream"/> after that point with an event, so the device work itself is
    /// never waited for on the host. On a host-memory device, where collectives finish on the host, it is
    /// <see cref="Wait()"/>.
    /// </summary>
    public void Wait(IDeviceStream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        Task.Wait();
        var device = stream.Device;
        var issuedOn = _issuedUnder.StreamOf(device);
        if (ReferenceEquals(issuedOn, stream)) return; // one stream runs in order
        using var done = device.CreateEvent();
        done.Record(issuedOn);
        stream.Wait(done);
    }

    /// <summary>Lets <c>await work</c> wait for the collective.</summary>
    public TaskAwaiter GetAwaiter() => Task.GetAwaiter();

    /// <summary>The collective's task, for <see cref="Task.WaitAll(Task[])"/> and the like.</summary>
    public static implicit operator Task(CollectiveWork work) => work.Task;
}
