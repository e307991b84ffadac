using System.Diagnostics;
using System.Globalization;
using System.Text.Json;

namespace NativeParallel.Diagnostics;

/// <summary>
/// One recording (see <see cref="Tracer.Start"/>): each thread appends to its own buffer, so ranks never contend;
/// <see cref="Events"/> merges them, and <see cref="WriteChromeJson(Stream)"/> writes Chrome's trace format (Perfetto and
/// chrome://tracing open it): one process per rank, one thread per lane, metadata naming both.
/// </summary>
public sealed class TraceSession : IDisposable
{
    /// <summary>The lane of kernels and phases (the device's stream as the host issues it).</summary>
    public const int ComputeLane = 0;

    private const string ComputeName = "compute";

    // A thread's events; its lock is only contended while the session is being read.
    private sealed class Buffer(TraceSession session)
    {
        public readonly TraceSession Session = session;
        public readonly List<TraceEvent> Events = [];
    }

    [ThreadStatic] private static Buffer? t_buffer;
    private static readonly double s_tickToUs = 1e6 / Stopwatch.Frequency;

    private readonly List<Buffer> _buffers = [];
    private readonly Dictionary<(int Rank, string Name), int> _lanes = [];
    private readonly Dictionary<int, int> _lanesPerRank = [];
    private bool _stopped;

    internal TraceSession(int processRank) => ProcessRank = processRank;

    /// <summary>Launches timed by their device's events, one lane per stream.</summary>
    internal DeviceTimedLaunches DeviceLaunches { get; } = new();

    /// <summary>The rank of events from threads no rank is bound to.</summary>
    public int ProcessRank { get; }

    internal static double Microseconds(long ticks) => ticks * s_tickToUs;

    // The lane of a named stream of a rank, numbered after compute in the order the rank first used it.
    internal int Lane(int rank, string name)
    {
        lock (_lanes)
        {
            if (_lanes.TryGetValue((rank, name), out int lane)) return lane;
            lane = _lanesPerRank.GetValueOrDefault(rank) + 1;
            _lanesPerRank[rank] = lane;
            _lanes[(rank, name)] = lane;
            return lane;
        }
    }

    /// <summary>The name of <paramref name="lane"/> of <paramref name="rank"/>.</summary>
    public string LaneName(int rank, int lane)
    {
        if (lane == ComputeLane) return ComputeName;
        lock (_lanes)
            foreach (var ((r, name), l) in _lanes)
                if (r == rank && l == lane) return name;
        return $"lane {lane}";
    }

    internal void Add(TraceEvent e)
    {
        var buffer = t_buffer;
        if (buffer is null || !ReferenceEquals(buffer.Session, this))
        {
            buffer = new Buffer(this);
            lock (_buffers) _buffers.Add(buffer);
            t_buffer = buffer;
        }
        lock (buffer)
            if (!Volatile.Read(ref _stopped)) buffer.Events.Add(e);
    }

    /// <summary>Every event recorded so far, by rank, lane, start, and outer events before the ones they hold.</summary>
    public IReadOnlyList<TraceEvent> Events
    {
        get
        {
            var all = new List<TraceEvent>();
            lock (_buffers)
                foreach (var b in _buffers)
                    lock (b) all.AddRange(b.Events);
            all.AddRange(DeviceLaunches.Resolve());
            all.Sort((a, b) => a.Rank != b.Rank ? a.Rank.CompareTo(b.Rank) : a.Lane != b.Lane ? a.Lane.CompareTo(b.Lane)
                : a.StartUs != b.StartUs ? a.StartUs.CompareTo(b.StartUs) : b.DurationUs.CompareTo(a.DurationUs));
            return all;
        }
    }

    /// <summary>Stops recording (events still being timed are dropped); the recorded events stay readable.</summary>
    public void Dispose()
    {
        Tracer.Stop(this);
        Volatile.Write(ref _stopped, true);
        // An append in progress finishes inside its buffer's lock; once past each lock, no append can follow.
        lock (_buffers)
            foreach (var b in _buffers)
                lock (b) { }
    }

    /// <summary>
    /// Writes <c>{"traceEvents": [...]}</c>: a process_name ("rank N") and thread_name per lane, then one "X" event per
    /// recorded event, ts and dur in µs of the host's monotonic clock (so files of the ranks of one host line up).
    /// </summary>
    public void WriteChromeJson(Stream stream)
    {
        var events = Events;
        using var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = false });
        w.WriteStartObject();
        w.WriteStartArray("traceEvents");
        var lanes = new SortedSet<(int Rank, int Lane)>();
        foreach (var e in events) lanes.Add((e.Rank, e.Lane));
        int lastRank = -1;
        foreach (var (rank, lane) in lanes)
        {
            if (rank != lastRank)
            {
                Metadata(w, "process_name", rank, null, "name", $"rank {rank}");
                Metadata(w, "process_sort_index", rank, null, "sort_index", rank);
                lastRank = rank;
            }
            Metadata(w, "thread_name", rank, lane, "name", LaneName(rank, lane));
            Metadata(w, "thread_sort_index", rank, lane, "sort_index", lane);
        }
        foreach (var e in events)
        {
            w.WriteStartObject();
            w.WriteString("name", e.Name);
            w.WriteString("cat", e.Category);
            w.WriteString("ph", "X");
            w.WriteNumber("ts", Math.Round(e.StartUs, 3));
            w.WriteNumber("dur", Math.Round(e.DurationUs, 3));
            w.WriteNumber("pid", e.Rank);
            w.WriteNumber("tid", e.Lane);
            w.WriteStartObject("args");
            foreach (var (key, value) in e.Args) Value(w, key, value);
            w.WriteEndObject();
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteString("displayTimeUnit", "ms");
        w.WriteEndObject();
    }

    /// <summary>Writes the Chrome trace JSON to <paramref name="path"/> (replaced atomically: a viewer never sees half a file).</summary>
    public void WriteChromeJson(string path)
    {
        string temporary = path + ".tmp";
        using (var file = File.Create(temporary)) WriteChromeJson(file);
        File.Move(temporary, path, overwrite: true);
    }

    private static void Metadata(Utf8JsonWriter w, string name, int pid, int? tid, string key, object value)
    {
        w.WriteStartObject();
        w.WriteString("name", name);
        w.WriteString("ph", "M");
        w.WriteNumber("pid", pid);
        if (tid is { } t) w.WriteNumber("tid", t);
        w.WriteStartObject("args");
        Value(w, key, value);
        w.WriteEndObject();
        w.WriteEndObject();
    }

    private static void Value(Utf8JsonWriter w, string key, object value)
    {
        switch (value)
        {
            case string s: w.WriteString(key, s); break;
            case bool b: w.WriteBoolean(key, b); break;
            case int i: w.WriteNumber(key, i); break;
            case long l: w.WriteNumber(key, l); break;
            case double d: w.WriteNumber(key, d); break;
            default: w.WriteString(key, Convert.ToString(value, CultureInfo.InvariantCulture)); break;
        }
    }
}
