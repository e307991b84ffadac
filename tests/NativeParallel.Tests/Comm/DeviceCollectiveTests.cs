using NativeParallel.Comm;
using NativeParallel.Devices;
using NativeParallel.Kernels;
using NativeParallel.Tensors;

namespace NativeParallel.Tests.Comm;

/// <summary>
/// all_gather, reduce_scatter, broadcast and all_to_all on emulated-device tensors of thread ranks: every result
/// equal to a host computation, in and out of place, at sizes 0, 1, odd, past the one-shot limit (rings and
/// chains) and past 1 MB; and each call proven device-direct: counted as such, no byte staged through host memory,
/// and the links carrying less than the payload (only the agreement check and the barriers).
/// </summary>
public sealed class DeviceCollectiveTests
{
    private static readonly Lazy<EmuDevice> s_emu = new(() => new EmuDevice());

    // Elements per rank's block: empty, one, odd, above the 64 KiB one-shot limit, above 1 MB (f32).
    public static TheoryData<int, int> Sizes()
    {
        var data = new TheoryData<int, int>();
        foreach (int ranks in new[] { 2, 3, 4 })
            foreach (int block in new[] { 0, 1, 37, 20_001, 300_001 })
                data.Add(ranks, block);
        return data;
    }

    // A value that names its rank and index, exact in f32 and i32 for every size here.
    private static long Tag(int rank, long i) => rank * 1_000_003L + i + 1;

    private static Tensor Make(DType dtype, long count, Func<long, long> value)
    {
        int n = checked((int)count);
        var device = s_emu.Value;
        if (dtype == DType.I32) return Tensor.FromInts(device, Enumerable.Range(0, n).Select(i => (int)value(i)).ToArray(), n);
        return Tensor.FromFloats(device, Enumerable.Range(0, n).Select(i => (float)value(i)).ToArray(), dtype, n);
    }

    // Outputs start poisoned, so an element nobody wrote cannot pass.
    private static Tensor Poisoned(DType dtype, long count) => Make(dtype, count, _ => -77);

    private static long[] Read(Tensor t) => t.DType == DType.I32
        ? t.ToInts().Select(v => (long)v).ToArray()
        : t.ToFloats().Select(v => (long)v).ToArray();

    private static long[] Expect(long count, Func<long, long> value)
    {
        var e = new long[count];
        for (long i = 0; i < count; i++) e[i] = value(i);
        return e;
    }

    /// <summary>Runs one collective and checks it went device-direct: one more direct call, nothing staged, links under the payload.</summary>
    private static void Direct(ProcessGroup g, long payloadBytes, Action collective)
    {
        long calls = g.DeviceDirectCalls, sent = g.BytesSent;
        collective();
        Assert.Equal(calls + 1, g.DeviceDirectCalls);
        Assert.Equal(0, g.StagedBytes);
        // The agreement check, barriers and (all_to_all) the count exchange are a few hundred bytes; data through the links would be the payload.
        if (payloadBytes > 1 << 16) Assert.True(g.BytesSent - sent < payloadBytes / 16, $"rank {g.Rank} sent {g.BytesSent - sent} bytes through the links for a {payloadBytes}-byte collective");
    }

    private static void OnRanks(int ranks, Action<ProcessGroup> body)
    {
        Hardware.RequireEmu();
        var groups = ProcessGroup.CreateThreadGroup(ranks, timeout: TimeSpan.FromSeconds(120));
        try { ExactInputs.OnThreads(groups, body); }
        finally { foreach (var g in groups) g.Dispose(); }
    }

    [Theory]
    [MemberData(nameof(Sizes))]
    public void AllGatherIsExactAndDirect(int ranks, int block)
    {
        DType dtype = block % 3 == 0 ? DType.I32 : DType.F32;
        OnRanks(ranks, g =>
        {
            long total = (long)block * ranks;
            var expected = Expect(total, i => Tag((int)(i / block), i % block));
            using var input = Make(dtype, block, i => Tag(g.Rank, i));
            using var output = Poisoned(dtype, total);
            Direct(g, output.Bytes, () => g.AllGather(input, output));
            Assert.Equal(expected, Read(output));
            Assert.Equal(Expect(block, i => Tag(g.Rank, i)), Read(input)); // the input is left as it was

            // In place: the input is this rank's block of the output.
            using var whole = Make(dtype, total, i => i / block == g.Rank ? Tag(g.Rank, i % block) : -77);
            Direct(g, whole.Bytes, () => g.AllGather(whole.Narrow(0, g.Rank * block, block), whole));
            Assert.Equal(expected, Read(whole));
        });
    }

    [Theory]
    [MemberData(nameof(Sizes))]
    public void ReduceScatterIsExactAndDirect(int ranks, int block)
    {
        var op = (ReduceOp)((block + ranks) % 5); // every op somewhere in the sweep
        DType dtype = block == 20_001 ? DType.BF16 : DType.F32;
        OnRanks(ranks, g =>
        {
            long total = (long)block * ranks;
            var expected = Expect(block, i => ExactPattern.Reduced(op, ranks, g.Rank * block + i));
            using var input = Make(dtype, total, i => ExactPattern.Value(op, g.Rank, ranks, i));
            using var output = Poisoned(dtype, block);
            Direct(g, input.Bytes, () => g.ReduceScatter(input, output, op));
            Assert.Equal(expected, Read(output));

            // In place: the output is this rank's block of the input.
            using var inPlace = Make(dtype, total, i => ExactPattern.Value(op, g.Rank, ranks, i));
            Direct(g, inPlace.Bytes, () => g.ReduceScatter(inPlace, inPlace.Narrow(0, g.Rank * block, block), op));
            Assert.Equal(expected, Read(inPlace).Skip(g.Rank * block).Take(block));
        });
    }

    [Theory]
    [MemberData(nameof(Sizes))]
    public void BroadcastIsExactAndDirect(int ranks, int block)
    {
        DType dtype = block % 3 == 0 ? DType.I32 : DType.F32;
        int root = block % ranks; // every root somewhere in the sweep
        OnRanks(ranks, g =>
        {
            var expected = Expect(block, i => Tag(root, i));
            using var input = Make(dtype, block, i => Tag(g.Rank, i));
            using var output = Poisoned(dtype, block);
            Direct(g, output.Bytes, () => g.Broadcast(input, output, root));
            Assert.Equal(expected, Read(output));
            Assert.Equal(Expect(block, i => Tag(g.Rank, i)), Read(input));

            using var tensor = Make(dtype, block, i => Tag(g.Rank, i));
            Direct(g, tensor.Bytes, () => g.Broadcast(tensor, root));
            Assert.Equal(expected, Read(tensor));
        });
    }

    [Theory]
    [MemberData(nameof(Sizes))]
    public void AllToAllIsExactAndDirect(int ranks, int block)
    {
        DType dtype = block % 3 == 0 ? DType.I32 : DType.F32;
        OnRanks(ranks, g =>
        {
            long total = (long)block * ranks;
            // Block q of rank p's input goes to rank q; block p of rank q's output comes from rank p.
            using var input = Make(dtype, total, i => Tag(g.Rank, i));
            using var output = Poisoned(dtype, total);
            Direct(g, input.Bytes, () => g.AllToAll(input, output));
            Assert.Equal(Expect(total, i => Tag((int)(i / block), g.Rank * block + i % block)), Read(output));
        });
    }

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    public void AllToAllWithUnevenSplitsIsExactAndDirect(int ranks)
    {
        // Rank p sends (p + 2q) % 4 * 3 elements to rank q: zeros, odd counts, different on every pair.
        static long Count(int p, int q) => (p + 2 * q) % 4 * 3;
        OnRanks(ranks, g =>
        {
            int r = g.Rank;
            var send = Enumerable.Range(0, ranks).Select(q => Count(r, q)).ToArray();
            var receive = Enumerable.Range(0, ranks).Select(p => Count(p, r)).ToArray();
            using var input = Make(DType.F32, send.Sum() + 5, i => Tag(r, i)); // room past the counts is allowed
            using var output = Poisoned(DType.F32, receive.Sum() + 3);
            Direct(g, input.Bytes, () => g.AllToAll(input, send, output, receive));
            var expected = new List<long>();
            for (int p = 0; p < ranks; p++)
            {
                long offset = Enumerable.Range(0, r).Sum(q => Count(p, q));
                for (long i = 0; i < Count(p, r); i++) expected.Add(Tag(p, offset + i));
            }
            expected.AddRange([-77, -77, -77]); // past the received counts, the output is left alone
            Assert.Equal(expected, Read(output));
        });
    }

    [Fact]
    public void AGroupOfOneCopiesOnTheDevice()
    {
        // What `bench collectives --device emu` runs by default (one rank): device copies, never host memory.
        OnRanks(1, g =>
        {
            using var input = Make(DType.F32, 1001, i => Tag(0, i));
            using var output = Poisoned(DType.F32, 1001);
            var expected = Expect(1001, i => Tag(0, i));
            Direct(g, 0, () => g.AllReduce(input, output, ReduceOp.Avg));
            Assert.Equal(expected, Read(output));
            foreach (var run in new Action[]
            {
                () => g.AllGather(input, output), () => g.ReduceScatter(input, output, ReduceOp.Max),
                () => g.Broadcast(input, output, 0), () => g.AllToAll(input, output),
            })
            {
                using var poison = Poisoned(DType.F32, 1001);
                g.Broadcast(poison, output, 0);
                Direct(g, 0, run);
                Assert.Equal(expected, Read(output));
            }
        });
    }

    [Fact]
    public void AllToAllCountsThatDisagreeFailInOneLineOnEveryRank()
    {
        Hardware.RequireEmu();
        var groups = ProcessGroup.CreateThreadGroup(2, timeout: TimeSpan.FromSeconds(30));
        var errors = new Exception?[2];
        var threads = groups.Select((g, r) => new Thread(() =>
        {
            try
            {
                using var input = Make(DType.F32, 4, i => i);
                using var output = Make(DType.F32, 8, i => i);
                // Rank 1 expects 3 elements from rank 0, which sends it 2.
                long[] receive = r == 1 ? [3, 2] : [2, 2];
                g.AllToAll(input, [2, 2], output, receive);
            }
            catch (Exception e) { errors[r] = e; }
        })).ToArray();
        foreach (var t in threads) t.Start();
        foreach (var t in threads) Assert.True(t.Join(TimeSpan.FromMinutes(1)), "a rank hung on mismatched all_to_all counts");
        foreach (var g in groups) g.Dispose();
        var first = Assert.IsType<CollectiveException>(errors[1]);
        Assert.Contains("all_to_all #0", first.Message);
        Assert.Contains("rank 0 sends 2 elements to this rank, which expects 3", first.Message);
        Assert.DoesNotContain('\n', first.Message);
        Assert.IsType<CollectiveException>(errors[0]); // aborted, not left waiting
    }

    [Fact]
    public void ThreadRanksOnDifferentDevicesAreRefusedByName()
    {
        Hardware.RequireEmu();
        using var other = new EmuDevice();
        var groups = ProcessGroup.CreateThreadGroup(2, timeout: TimeSpan.FromSeconds(30));
        var errors = new Exception?[2];
        var threads = groups.Select((g, r) => new Thread(() =>
        {
            try
            {
                IDevice device = r == 0 ? s_emu.Value : other;
                using var input = Tensor.FromFloats(device, [1f, 2f], DType.F32, 2);
                using var output = Tensor.Empty(device, DType.F32, 4);
                g.AllGather(input, output);
            }
            catch (Exception e) { errors[r] = e; }
        })).ToArray();
        foreach (var t in threads) t.Start();
        foreach (var t in threads) Assert.True(t.Join(TimeSpan.FromMinutes(1)));
        foreach (var g in groups) g.Dispose();
        foreach (var e in errors)
            Assert.Contains("thread ranks must share one device object", Assert.IsType<CollectiveException>(e).Message);
    }
}
