using System.Diagnostics;

namespace NativeParallel.Devices;

/// <summary>How the emulated device runs the work queued on streams other than its default stream.</summary>
public enum EmuStreamOrder
{
    /// <summary>Each stream's worker thread runs its work as soon as it is queued, beside the host and the other streams.</summary>
    Concurrent,

    /// <summary>
    /// A stream's work runs only when something needs it: its own or the device's Synchronize, an event recorded on
    /// it being synchronised or waited for by another stream, a copy to or from the host on it, a free. Everything
    /// the host issued meanwhile runs first, so a reader that forgot to wait for an event reads the old bytes, and a
    /// writer that forgot one overwrites what the stream was still to read: a missing event is a wrong result every
    /// time instead of a rare one.
    /// </summary>
    Deferred,
}

/// <summary>
/// A stream of the emulated device. The default stream runs work on the thread that issues it (the host's own
/// order); other streams queue it for their own worker thread, which runs it in order as the device's
/// <see cref="EmuStreamOrder"/> allows. A failure is sticky as on CUDA: later work on the stream is skipped and
/// every wait on it throws the first error.
/// </summary>
internal sealed class EmuStream : IDeviceStream
{
    private readonly object _gate = new();
    private readonly Queue<Action> _work = new();
    private readonly EmuDevice _device;
    private long _issued, _done, _released;
    private Exception? _failure;
    private Thread? _worker;
    private bool _disposed;

    public EmuStream(EmuDevice device, bool inline)
    {
        _device = device;
        Inline = inline;
    }

    /// <summary>True for the default stream: its work runs at once on the issuing thread.</summary>
    public bool Inline { get; }

    public IDevice Device => _device;

    /// <summary>Whether work is queued that has not finished yet.</summary>
    public bool Pending
    {
        get { lock (_gate) return _done < _issued; }
    }

    /// <summary>The position of the last work queued.</summary>
    public long Issued
    {
        get { lock (_gate) return _issued; }
    }

    /// <summary>Whether the work up to <paramref name="position"/> has finished (or the stream has failed or ended: nothing more will run).</summary>
    public bool Passed(long position)
    {
        lock (_gate) return _done >= position || _failure is not null || (_disposed && _work.Count == 0);
    }

    /// <summary>Queues <paramref name="work"/>; returns its position, which <see cref="Reach"/> waits for (0 for the default stream, whose work is done on return).</summary>
    public long Enqueue(Action work)
    {
        if (Inline)
        {
            work();
            return 0;
        }
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            ThrowIfFailed();
            _work.Enqueue(work);
            _issued++;
            if (_device.StreamOrder == EmuStreamOrder.Concurrent) _released = _issued;
            if (_worker is null)
            {
                // Background: a stream the program forgot to dispose never keeps the process alive.
                _worker = new Thread(Run) { IsBackground = true, Name = "emu stream" };
                _worker.Start();
            }
            Monitor.PulseAll(_gate);
            return _issued;
        }
    }

    /// <summary>Lets the work up to <paramref name="position"/> run and waits until it has; throws the stream's failure.</summary>
    public void Reach(long position)
    {
        if (Inline) return;
        if (Thread.CurrentThread == _worker) throw new InvalidOperationException("emu: a stream waited for its own later work (a cycle of events)");
        lock (_gate)
        {
            if (position > _released)
            {
                _released = position;
                Monitor.PulseAll(_gate);
            }
            while (_done < position && _failure is null) Monitor.Wait(_gate);
            ThrowIfFailed();
        }
    }

    public void Synchronize()
    {
        long issued;
        lock (_gate) issued = _issued;
        Reach(issued);
    }

    public void Wait(IDeviceEvent evt)
    {
        if (((EmuEvent)evt).Point is not { } point || ReferenceEquals(point.Stream, this)) return;
        // The default stream is the host's order: the host waits. Another stream waits in its own order.
        if (Inline) point.Stream.Reach(point.Position);
        else Enqueue(() => point.Stream.Reach(point.Position));
    }

    private void Run()
    {
        while (true)
        {
            Action work;
            lock (_gate)
            {
                while (!_disposed && (_work.Count == 0 || _done >= _released)) Monitor.Wait(_gate);
                if (_work.Count == 0) return; // disposed and drained
                work = _work.Dequeue();
            }
            Exception? failed = null;
            if (Volatile.Read(ref _failure) is null)
            {
                try
                {
                    work();
                }
                catch (Exception e)
                {
                    failed = e;
                }
            }
            lock (_gate)
            {
                _failure ??= failed;
                _done++;
                Monitor.PulseAll(_gate);
            }
        }
    }

    private void ThrowIfFailed()
    {
        if (_failure is { } e) throw new InvalidOperationException($"emu: earlier work on this stream failed: {e.Message}", e);
    }

    /// <summary>Runs what is queued, then ends the worker (a failure was already reported to whoever waited).</summary>
    public void Dispose()
    {
        if (Inline) return;
        Thread? worker;
        lock (_gate)
        {
            if (_disposed) return;
            _released = _issued;
            _disposed = true;
            worker = _worker;
            Monitor.PulseAll(_gate);
        }
        if (worker is not null && worker != Thread.CurrentThread) worker.Join();
        _device.Forget(this);
    }
}

/// <summary>An event of the emulated device: the stream and position it was last recorded at, and the time that point ran.</summary>
internal sealed class EmuEvent(EmuDevice device) : IDeviceEvent
{
    /// <summary>Where the event was last recorded; null before the first record.</summary>
    public sealed record RecordedPoint(EmuStream Stream, long Position);

    private RecordedPoint? _point;
    private long _timestamp;

    public RecordedPoint? Point => Volatile.Read(ref _point);

    public void Record(IDeviceStream? stream = null)
    {
        var s = (EmuStream)(stream ?? device.CurrentStream());
        long position = s.Enqueue(() => Volatile.Write(ref _timestamp, Stopwatch.GetTimestamp()));
        Volatile.Write(ref _point, new RecordedPoint(s, position));
    }

    public void Synchronize()
    {
        if (Point is { } point) point.Stream.Reach(point.Position);
    }

    public double ElapsedMillisecondsSince(IDeviceEvent start)
    {
        Synchronize();
        start.Synchronize();
        return (Volatile.Read(ref _timestamp) - Volatile.Read(ref ((EmuEvent)start)._timestamp)) * 1000.0 / Stopwatch.Frequency;
    }

    public void Dispose() { }
}
