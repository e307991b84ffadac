using System.Diagnostics;
using NativeParallel.Devices;
using NativeParallel.Tensors;

namespace NativeParallel.Diagnostics;

/// <summary>
/// The process's tracer: while a <see cref="TraceSession"/> is recording, kernels, launches, collectives and phases
/// become <see cref="TraceEvent"/>s on their rank's lanes (lane 0 is compute, one lane per process group after it).
/// Off, every hook costs one read of a static field and a branch, and allocates nothing.
/// </summary>
/// <remarks>
/// Which rank an event belongs to: a kernel or phase takes the rank bound to its thread (<see cref="BindRank"/>; thread
/// ranks bind themselves), else the session's process rank. A collective takes its group's world rank, fixed when
/// the group was made, because async collectives run on the group's worker thread, which no rank binds.
/// </remarks>
public static class Tracer
{
    private static TraceSession? s_session;
    [ThreadStatic] private static int t_rankPlusOne; // 0: no rank bound to this thread

    /// <summary>The session recording now, or null.</summary>
    public static TraceSession? Current => Volatile.Read(ref s_session);

    /// <summary>Starts recording; events from every thread of this process go to the returned session until it is disposed.</summary>
    /// <param name="processRank">The rank of events from threads no rank is bound to (a launched job's process rank, else 0).</param>
    public static TraceSession Start(int processRank = 0)
    {
        var session = new TraceSession(processRank);
        if (Interlocked.CompareExchange(ref s_session, session, null) is { } other)
            throw new InvalidOperationException($"a trace is already recording in this process (started for rank {other.ProcessRank}); stop it first");
        return session;
    }

    internal static void Stop(TraceSession session) => Interlocked.CompareExchange(ref s_session, null, session);

    /// <summary>Makes this thread's kernels and phases events of <paramref name="rank"/> until the binding is disposed.</summary>
    public static RankBinding BindRank(int rank)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(rank);
        int previous = t_rankPlusOne;
        t_rankPlusOne = rank + 1;
        return new RankBinding(previous);
    }

    /// <summary>Restores the thread's previous rank binding when disposed.</summary>
    public readonly struct RankBinding : IDisposable
    {
        private readonly int _previous;
        internal RankBinding(int previous) => _previous = previous;

        /// <inheritdoc/>
        public void Dispose() => t_rankPlusOne = _previous;
    }

    private static int RankOf(TraceSession session) => t_rankPlusOne > 0 ? t_rankPlusOne - 1 : session.ProcessRank;

    /// <summary>
    /// A kernel (one op on a device) on the compute lane, with the bytes of its distinct tensor arguments, their
    /// device and first dtype; <paramref name="flops"/> when the op knows them (0: not given).
    /// </summary>
    public static TraceSpan Kernel(string op, long flops, params ReadOnlySpan<Tensor> tensors)
    {
        if (Current is not { } session) return default;
        long bytes = 0;
        for (int i = 0; i < tensors.Length; i++)
        {
            bool seen = false;
            for (int j = 0; j < i && !seen; j++) seen = ReferenceEquals(tensors[i], tensors[j]);
            if (!seen) bytes += tensors[i].Bytes;
        }
        var first = tensors.Length > 0 ? tensors[0] : null;
        var args = new List<KeyValuePair<string, object>>(5) { new("bytes", bytes) };
        if (flops > 0) args.Add(new("flops", flops));
        if (first is not null)
        {
            args.Add(new("device", first.Device.Name));
            args.Add(new("dtype", first.DType.Name()));
            args.Add(new("shape", $"[{string.Join(", ", first.Shape)}]"));
        }
        return new TraceSpan(session, op, "kernel", RankOf(session), TraceSession.ComputeLane, args);
    }

    /// <summary>A kernel without a FLOP count.</summary>
    public static TraceSpan Kernel(string op, params ReadOnlySpan<Tensor> tensors) => Kernel(op, 0, tensors);

    /// <summary>
    /// A device launch of one entry point (inside its op's kernel event): grid, block, shared bytes. On CUDA its length
    /// is the host's enqueue time, not the GPU's run time.
    /// </summary>
    public static TraceSpan Launch(string function, string device, uint gridX, uint gridY, uint gridZ, uint blockX, uint blockY, uint blockZ, uint sharedBytes)
    {
        if (Current is not { } session) return default;
        var args = new List<KeyValuePair<string, object>>(4)
        {
            new("device", device), new("grid", $"({gridX}, {gridY}, {gridZ})"), new("block", $"({blockX}, {blockY}, {blockZ})"), new("shared_bytes", (long)sharedBytes),
        };
        return new TraceSpan(session, function, "launch", RankOf(session), TraceSession.ComputeLane, args);
    }

    /// <summary>
    /// Device timing of one launch on <paramref name="stream"/>: record Start on the stream just before the launch and
    /// Stop just after; the trace shows the launch on the stream's own lane as the device timed it. Null when off.
    /// </summary>
    public static (IDeviceEvent Start, IDeviceEvent Stop)? DeviceLaunch(IDevice device, IDeviceStream stream, string function, uint gridX, uint gridY, uint gridZ,
        uint blockX, uint blockY, uint blockZ)
    {
        if (Current is not { } session) return null;
        var args = new List<KeyValuePair<string, object>>(3)
        {
            new("device", device.Name), new("grid", $"({gridX}, {gridY}, {gridZ})"), new("block", $"({blockX}, {blockY}, {blockZ})"),
        };
        return session.DeviceLaunches.Begin(session, RankOf(session), device, stream, function, args);
    }

    /// <summary>A phase of work on the compute lane (forward, backward), holding the kernels it runs.</summary>
    public static TraceSpan Phase(string name)
    {
        if (Current is not { } session) return default;
        return new TraceSpan(session, name, "phase", RankOf(session), TraceSession.ComputeLane, null);
    }

    /// <summary>
    /// A collective or point-to-point message of group <paramref name="group"/> on that group's lane of
    /// <paramref name="rank"/>. Callers check <see cref="Current"/> first, so the details are built only when recording.
    /// </summary>
    internal static TraceSpan Collective(string op, int rank, string group, List<KeyValuePair<string, object>> args)
    {
        if (Current is not { } session) return default;
        return new TraceSpan(session, op, "collective", rank, session.Lane(rank, $"communication: group '{group}'"), args);
    }
}

/// <summary>An event being timed: it is recorded when disposed. The default value (tracing off) records nothing.</summary>
public readonly struct TraceSpan : IDisposable
{
    private readonly TraceSession? _session;
    private readonly string _name, _category;
    private readonly int _rank, _lane;
    private readonly long _start;
    private readonly List<KeyValuePair<string, object>>? _args;

    internal TraceSpan(TraceSession session, string name, string category, int rank, int lane, List<KeyValuePair<string, object>>? args)
    {
        (_session, _name, _category, _rank, _lane, _args) = (session, name, category, rank, lane, args);
        _start = Stopwatch.GetTimestamp();
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        if (_session is null) return;
        long end = Stopwatch.GetTimestamp();
        _session.Add(new TraceEvent(_name, _category, _rank, _lane, TraceSession.Microseconds(_start), TraceSession.Microseconds(end - _start),
            (IReadOnlyList<KeyValuePair<string, object>>?)_args ?? []));
    }
}

/// <summary>
/// One complete event ("X" in Chrome's trace format): what ran, on which rank (the trace's process) and lane (its
/// thread), from <see cref="StartUs"/> (host monotonic clock, µs) for <see cref="DurationUs"/>.
/// </summary>
public sealed record TraceEvent(string Name, string Category, int Rank, int Lane, double StartUs, double DurationUs, IReadOnlyList<KeyValuePair<string, object>> Args)
{
    /// <summary>When it ended (µs).</summary>
    public double EndUs => StartUs + DurationUs;

    /// <summary>The value of argument <paramref name="key"/>, or null.</summary>
    public object? Arg(string key)
    {
        foreach (var (k, v) in Args) if (k == key) return v;
        return null;
    }
}
