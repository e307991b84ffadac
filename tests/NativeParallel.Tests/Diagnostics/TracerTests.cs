using System.Text.Json;
using NativeParallel.Comm;
using NativeParallel.Devices;
using NativeParallel.Diagnostics;
using NativeParallel.Tensors;

namespace NativeParallel.Tests.Diagnostics;

/// <summary>
/// The tracer on its own: well-formed Chrome JSON, nesting and order, ranks and lanes, many threads at once, and
/// nothing recorded when off. One process has one tracer, so these run apart from other tests.
/// </summary>
[Collection(nameof(Kernels.EnvironmentCollection))]
public sealed class TracerTests
{
    private static readonly CpuDevice Cpu = CpuDevice.Instance;

    private static void AddKernel()
    {
        using var a = Tensor.FromFloats(Cpu, [1, 2, 3, 4], DType.F32, 4);
        using var b = Tensor.FromFloats(Cpu, [1, 1, 1, 1], DType.F32, 4);
        using var c = Tensor.Empty(Cpu, DType.F32, 4);
        Cpu.Kernels.Add(a, b, c);
    }

    [Fact]
    public void OffRecordsNothing()
    {
        Assert.Null(Tracer.Current);
        AddKernel();
        ProcessGroup.RunOnThreadRanks(2, g =>
        {
            using var t = Tensor.FromFloats(Cpu, [g.Rank], DType.F32, 1);
            g.AllReduce(t);
            g.AllReduceAsync(t).Wait();
        });
        using (Tracer.Phase("idle")) { }
        using var session = Tracer.Start();
        // Only what runs after Start is recorded: the work above left nothing behind.
        Assert.Empty(session.Events);
        AddKernel();
        session.Dispose();
        AddKernel();
        Assert.Single(session.Events);
        Assert.Null(Tracer.Current);
    }

    [Fact]
    public void ASecondStartWhileRecordingIsRefused()
    {
        using var session = Tracer.Start();
        var e = Assert.Throws<InvalidOperationException>(() => Tracer.Start());
        Assert.Contains("already recording", e.Message);
    }

    [Fact]
    public void KernelsNestInsidePhasesAndAreOrderedOuterFirst()
    {
        using var session = Tracer.Start(processRank: 3);
        using (Tracer.Phase("backward"))
        {
            AddKernel();
            AddKernel();
        }
        session.Dispose();
        var events = session.Events;
        Assert.Equal(["backward", "add", "add"], events.Select(e => e.Name));
        var phase = events[0];
        Assert.All(events, e => Assert.Equal(3, e.Rank)); // no rank bound: the session's process rank
        Assert.All(events, e => Assert.Equal(TraceSession.ComputeLane, e.Lane));
        Assert.All(events.Skip(1), e => Assert.InRange(e.StartUs, phase.StartUs, phase.EndUs));
        Assert.All(events.Skip(1), e => Assert.True(e.EndUs <= phase.EndUs, $"{e.Name} ends at {e.EndUs} after its phase at {phase.EndUs}"));
        Assert.True(events[1].EndUs <= events[2].StartUs, "two kernels in a row on one thread overlap");
        var add = events[1];
        Assert.Equal("kernel", add.Category);
        Assert.Equal(48L, add.Arg("bytes")); // three f32 tensors of 4
        Assert.Equal("cpu", add.Arg("device"));
    }

    [Fact]
    public void EmulatedLaunchesNestInsideTheirOpWithTheirGrid()
    {
        Hardware.RequireEmu();
        using var emu = new EmuDevice();
        using var a = Tensor.FromFloats(emu, [1, 2, 3], DType.F32, 3);
        using var c = Tensor.Empty(emu, DType.F32, 3);
        emu.Kernels.Add(a, a, c); // compiled before the trace, so the trace holds the run only
        using var session = Tracer.Start();
        emu.Kernels.Add(a, a, c);
        session.Dispose();
        var events = session.Events;
        Assert.Equal(2, events.Count);
        var (op, launch) = (events[0], events[1]);
        Assert.Equal(("kernel", "add"), (op.Category, op.Name));
        Assert.Equal("launch", launch.Category);
        Assert.StartsWith("residual_add", launch.Name);
        Assert.Matches(@"^\(\d+, 1, 1\)$", (string)launch.Arg("grid")!);
        Assert.True(launch.StartUs >= op.StartUs && launch.EndUs <= op.EndUs, "the launch lies outside its op");
    }

    [Fact]
    public void ThreadRanksGetTheirOwnProcessAndEachGroupALane()
    {
        using var session = Tracer.Start();
        ProcessGroup.RunOnThreadRanks(2, world =>
        {
            AddKernel();
            using var t = Tensor.FromFloats(Cpu, [world.Rank, 1], DType.F32, 2);
            world.AllReduce(t);
            using var pair = world.Split(0, world.Rank, "pair");
            pair.AllReduceAsync(t).Wait();
        }, "world");
        session.Dispose();
        var events = session.Events;
        foreach (int rank in new[] { 0, 1 })
        {
            var mine = events.Where(e => e.Rank == rank).ToList();
            Assert.Contains(mine, e => e is { Category: "kernel", Name: "add", Lane: TraceSession.ComputeLane });
            var sync = Assert.Single(mine, e => e.Name == "all_reduce" && e.Arg("group") is "world");
            var async = Assert.Single(mine, e => e.Name == "all_reduce" && e.Arg("group") is "pair");
            Assert.NotEqual(sync.Lane, async.Lane);
            Assert.Equal("communication: group 'world'", session.LaneName(rank, sync.Lane));
            Assert.Equal(false, sync.Arg("async"));
            Assert.Equal(true, async.Arg("async"));
            Assert.Equal(8L, sync.Arg("bytes"));
            Assert.Equal(rank == 0 ? "1" : "0", sync.Arg("peers"));
            Assert.Equal(0L, sync.Arg("seq"));
            Assert.Contains(sync.Arg("algorithm"), new object[] { "ring", "oneshot" });
        }
    }

    [Fact]
    public void ManyThreadsRecordAtOnceWithoutLosingEvents()
    {
        const int threads = 8, spans = 2000;
        using var session = Tracer.Start();
        var workers = Enumerable.Range(0, threads).Select(r => new Thread(() =>
        {
            using var bound = Tracer.BindRank(r);
            for (int i = 0; i < spans; i++)
                using (Tracer.Phase("p")) { }
        })).ToArray();
        foreach (var t in workers) t.Start();
        foreach (var t in workers) t.Join();
        session.Dispose();
        var counts = session.Events.GroupBy(e => e.Rank).ToDictionary(g => g.Key, g => g.Count());
        Assert.Equal(Enumerable.Range(0, threads), counts.Keys.Order());
        Assert.All(counts.Values, c => Assert.Equal(spans, c));
    }

    [Fact]
    public void TheFileIsChromeTraceJsonWithNamedProcessesAndLanes()
    {
        using var session = Tracer.Start();
        ProcessGroup.RunOnThreadRanks(2, world =>
        {
            using (Tracer.Phase("backward")) AddKernel();
            using var t = Tensor.FromFloats(Cpu, [1], DType.F32, 1);
            world.AllReduce(t);
        }, "w");
        session.Dispose();
        using var stream = new MemoryStream();
        session.WriteChromeJson(stream);
        var trace = TraceJson.Parse(stream.ToArray());
        Assert.Equal(session.Events.Count, trace.Complete.Count);
        Assert.Equal(["rank 0", "rank 1"], trace.ProcessNames.OrderBy(p => p.Key).Select(p => p.Value));
        Assert.Equal("compute", trace.ThreadNames[(0, 0)]);
        Assert.Equal("communication: group 'w'", trace.ThreadNames[(1, 1)]);
        Assert.Contains(trace.Complete, e => e.Cat == "collective" && e.Name == "all_reduce" && e.Pid == 1);
    }

    [Fact]
    public void HiddenShareIsTheBucketTimeInsideBackward()
    {
        IReadOnlyList<KeyValuePair<string, object>> async = [new("async", true)], sync = [new("async", false)];
        var events = new List<TraceEvent>
        {
            new("backward", "phase", 0, 0, 0, 100, []),
            new("backward", "phase", 0, 0, 300, 100, []),
            new("all_reduce", "collective", 0, 2, 50, 100, async),  // 50 of 100 inside
            new("all_reduce", "collective", 0, 2, 350, 20, async),  // all inside
            new("all_reduce", "collective", 0, 1, 0, 400, sync),    // the loss: not a bucket
            new("all_reduce", "collective", 1, 2, 500, 10, async),  // rank 1: no backward at all
        };
        var shares = OverlapShare.BucketsBehindBackward(events);
        Assert.Equal(2, shares.Count);
        Assert.Equal((0, 2, 120.0, 70.0), (shares[0].Rank, shares[0].Buckets, shares[0].BucketUs, shares[0].HiddenUs));
        Assert.Equal(70.0 / 120, shares[0].Share, 12);
        Assert.Equal(0, shares[1].Share);
    }
}

/// <summary>A Chrome trace file read back: its complete events and the names its metadata gives.</summary>
internal sealed record TraceJson(List<TraceJson.Event> Complete, Dictionary<int, string> ProcessNames, Dictionary<(int Pid, int Tid), string> ThreadNames)
{
    public sealed record Event(string Name, string Cat, int Pid, int Tid, double Ts, double Dur, JsonElement Args)
    {
        public double End => Ts + Dur;
    }

    /// <summary>Parses and checks every event is well formed (the fields Perfetto needs, non-negative times).</summary>
    public static TraceJson Parse(byte[] bytes)
    {
        using var doc = JsonDocument.Parse(bytes);
        var complete = new List<Event>();
        var processes = new Dictionary<int, string>();
        var threads = new Dictionary<(int, int), string>();
        foreach (var e in doc.RootElement.GetProperty("traceEvents").EnumerateArray())
        {
            string ph = e.GetProperty("ph").GetString()!, name = e.GetProperty("name").GetString()!;
            int pid = e.GetProperty("pid").GetInt32();
            if (ph == "M")
            {
                if (name == "process_name") processes[pid] = e.GetProperty("args").GetProperty("name").GetString()!;
                if (name == "thread_name") threads[(pid, e.GetProperty("tid").GetInt32())] = e.GetProperty("args").GetProperty("name").GetString()!;
                continue;
            }
            Assert.Equal("X", ph);
            var ev = new Event(name, e.GetProperty("cat").GetString()!, pid, e.GetProperty("tid").GetInt32(), e.GetProperty("ts").GetDouble(),
                e.GetProperty("dur").GetDouble(), e.GetProperty("args").Clone());
            Assert.True(ev.Ts >= 0 && ev.Dur >= 0, $"event {name} has ts {ev.Ts}, dur {ev.Dur}");
            Assert.True(threads.ContainsKey((pid, ev.Tid)), $"event {name} is on lane {ev.Tid} of rank {pid}, which the metadata never names");
            complete.Add(ev);
        }
        return new TraceJson(complete, processes, threads);
    }
}

/// <summary>
/// Launches on a stream other than the host's are timed by the device's own events and shown on that stream's lane:
/// on the emulated device, a stream's worker runs them after the host has moved on, so their slices start after
/// the enqueue and do not overlap each other (one stream runs in order).
/// </summary>
[Collection(nameof(Kernels.EnvironmentCollection))]
public sealed class DeviceTimedTraceTests
{
    [Theory]
    [InlineData("emu")]
    [InlineData("cuda")]
    public void LaunchesOnAStreamGetTheirOwnLaneTimedByTheDevice(string kind)
    {
        if (kind == "cuda") Hardware.RequireCuda();
        else Hardware.RequireEmu();
        using IDevice device = kind == "cuda" ? CudaDevice.Open() : new EmuDevice { StreamOrder = EmuStreamOrder.Concurrent };
        using var side = device.CreateStream();
        using var x = Tensor.FromFloats(device, Enumerable.Range(0, 5000).Select(i => i * 1e-3f).ToArray(), DType.F32, 5000);
        using var y = Tensor.Empty(device, DType.F32, 5000);
        device.Kernels.Gelu(x, y); // built before tracing, so the traced launches are only runs
        using var session = Tracer.Start();
        double before = TraceSession.Microseconds(System.Diagnostics.Stopwatch.GetTimestamp());
        using (device.UseStream(side))
            for (int i = 0; i < 3; i++) device.Kernels.Gelu(x, y);
        side.Synchronize();
        double after = TraceSession.Microseconds(System.Diagnostics.Stopwatch.GetTimestamp());
        session.Dispose();

        // Other tests may use the emulated device meanwhile; only this test runs gelu on a side stream.
        var timed = session.Events.Where(e => e.Category == "device" && e.Name.StartsWith("gelu", StringComparison.Ordinal)).ToList();
        Assert.Equal(3, timed.Count);
        Assert.All(timed, e =>
        {
            Assert.StartsWith($"{device.Name} stream", session.LaneName(e.Rank, e.Lane));
            Assert.NotEqual(TraceSession.ComputeLane, e.Lane);
            Assert.True(e.DurationUs > 0, $"{e.Name} has no device time");
            // On emu the device's clock is the host's; on a GPU it is placed on the host's through an anchor event,
            // to within that event's round trip (a few µs).
            double slack = kind == "cuda" ? 25 : 1;
            Assert.InRange(e.StartUs, before - slack, after + slack);
        });
        for (int i = 1; i < timed.Count; i++) Assert.True(timed[i].StartUs >= timed[i - 1].EndUs - 1, "launches of one stream overlap on its lane");
        // The host's spans of the same launches stay on the compute lane (the enqueue).
        Assert.Equal(3, session.Events.Count(e => e.Category == "launch" && e.Name.StartsWith("gelu", StringComparison.Ordinal) && e.Lane == TraceSession.ComputeLane));
    }
}
