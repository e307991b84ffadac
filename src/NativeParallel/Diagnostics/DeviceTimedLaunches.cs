using System.Diagnostics;
using System.Runtime.CompilerServices;
using NativeParallel.Devices;

namespace NativeParallel.Diagnostics;

/// <summary>
/// Kernel launches timed by the device: a pair of events recorded around each launch on its stream, read back only
/// when the trace is read, so recording never waits for the device. Each stream of a rank gets its own lane
/// ("cuda:0 stream 1"), its slices the kernel's run on the device as the events measured it, placed on the host's
/// clock through an anchor event per device (recorded and waited for; stamped with the midpoint of the host times around that).
/// A CUDA launch is also on the compute lane as the host's enqueue; there the two differ, on a queue that runs ahead.
/// </summary>
internal sealed class DeviceTimedLaunches
{
    private sealed record Pending(string Name, int Rank, int Lane, List<KeyValuePair<string, object>> Args, IDeviceEvent Start, IDeviceEvent Stop, Anchor Anchor);

    private sealed record Anchor(IDeviceEvent Event, double HostUs);

    private readonly List<Pending> _pending = [];
    private readonly List<TraceEvent> _resolved = [];
    private readonly Dictionary<IDevice, Anchor> _anchors = new(ReferenceEqualityComparer.Instance);
    private readonly ConditionalWeakTable<IDeviceStream, string> _streamNames = new();
    private readonly Dictionary<IDevice, int> _streamsPerDevice = new(ReferenceEqualityComparer.Instance);

    // The event happened somewhere between the host's stamp before recording it and the stamp after waiting for it:
    // take the midpoint of the tightest of a few tries. Stamping only after the wait (as first written) placed every
    // device slice later by the wake-up latency; on an H200 a launch then appeared to end after the host had seen
    // the stream finish.
    private static Anchor TakeAnchor(IDevice device)
    {
        IDeviceEvent? best = null;
        double bestUs = 0, bestWidth = double.MaxValue;
        for (int attempt = 0; attempt < 5; attempt++)
        {
            var evt = device.CreateEvent();
            double before = TraceSession.Microseconds(Stopwatch.GetTimestamp());
            evt.Record(device.DefaultStream);
            evt.Synchronize();
            double after = TraceSession.Microseconds(Stopwatch.GetTimestamp());
            if (after - before < bestWidth)
            {
                best?.Dispose();
                (best, bestUs, bestWidth) = (evt, (before + after) / 2, after - before);
            }
            else evt.Dispose();
        }
        return new Anchor(best!, bestUs);
    }

    /// <summary>Events to record before and after one launch on <paramref name="stream"/>; the launch is resolved with the trace.</summary>
    public (IDeviceEvent Start, IDeviceEvent Stop) Begin(TraceSession session, int rank, IDevice device, IDeviceStream stream, string function,
        List<KeyValuePair<string, object>> args)
    {
        Anchor anchor;
        string streamName;
        lock (_pending)
        {
            if (!_anchors.TryGetValue(device, out anchor!))
            {
                _anchors[device] = anchor = TakeAnchor(device);
            }
            streamName = _streamNames.GetValue(stream, s =>
            {
                if (ReferenceEquals(s, device.DefaultStream)) return $"{device.Name} stream 0 (default)";
                int n = _streamsPerDevice.GetValueOrDefault(device) + 1;
                _streamsPerDevice[device] = n;
                return $"{device.Name} stream {n}";
            });
        }
        var start = device.CreateEvent();
        var stop = device.CreateEvent();
        int lane = session.Lane(rank, streamName);
        lock (_pending) _pending.Add(new Pending(function, rank, lane, args, start, stop, anchor));
        return (start, stop);
    }

    /// <summary>The launches recorded so far as events on their streams' lanes (waits for the device to reach them).</summary>
    public List<TraceEvent> Resolve()
    {
        lock (_pending)
        {
            foreach (var p in _pending)
            {
                try
                {
                    p.Stop.Synchronize();
                    double startUs = p.Anchor.HostUs + p.Start.ElapsedMillisecondsSince(p.Anchor.Event) * 1000;
                    double durationUs = Math.Max(0, p.Stop.ElapsedMillisecondsSince(p.Start) * 1000);
                    _resolved.Add(new TraceEvent(p.Name, "device", p.Rank, p.Lane, startUs, durationUs, p.Args));
                }
                catch (Exception e) when (e is InvalidOperationException or ObjectDisposedException or Interop.CudaException)
                {
                    // A launch that never ran (its stream failed or its device closed) has no device time to show.
                }
                p.Start.Dispose();
                p.Stop.Dispose();
            }
            _pending.Clear();
            return [.. _resolved];
        }
    }
}
