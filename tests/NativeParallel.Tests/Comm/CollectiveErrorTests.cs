using NativeParallel.Comm;
using NativeParallel.Kernels;
using NativeParallel.Tensors;

namespace NativeParallel.Tests.Comm;

/// <summary>Disagreeing ranks and missing ranks fail every surviving rank with a message, never a hang.</summary>
public sealed class CollectiveErrorTests
{
    [Fact]
    public void RanksThatDisagreeAllFailNamingTheCollectiveAndThePeer()
    {
        var groups = ProcessGroup.CreateThreadGroup(3, name: "tp", timeout: TimeSpan.FromSeconds(20));
        var errors = Capture(groups, g =>
        {
            using var t = ExactInputs.Make(DType.F32, 100, i => i);
            g.AllReduce(t); // #0 agrees
            if (g.Rank == 1)
            {
                using var bigger = ExactInputs.Make(DType.F32, 200, i => i);
                g.AllReduce(bigger, ReduceOp.Max);
            }
            else g.AllReduce(t, ReduceOp.Sum);
        });
        Assert.All(errors, e => Assert.NotNull(e));
        var seen = errors.OfType<CollectiveException>().ToArray();
        Assert.Equal(3, seen.Length);
        Assert.All(seen, e =>
        {
            Assert.Equal(Collective.AllReduce, e.Collective);
            Assert.Equal(1, e.Sequence);
            Assert.Equal("tp", e.Group);
            Assert.Contains("all_reduce #1 in group 'tp'", e.Message);
        });
        // The rank that saw the disagreement names both calls.
        Assert.Contains(seen, e => e.Message.Contains("ranks disagree") && e.Message.Contains("f32 x 200, op max") && e.Message.Contains("f32 x 100, op sum"));
    }

    [Fact]
    public void ARankThatNeverArrivesTimesOutTheOthers()
    {
        var groups = ProcessGroup.CreateThreadGroup(3, name: "dp", timeout: TimeSpan.FromSeconds(2));
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var errors = Capture(groups, g =>
        {
            if (g.Rank == 2) return; // never calls the collective
            using var t = ExactInputs.Make(DType.I32, 10, i => i);
            g.AllReduce(t);
        });
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), $"took {clock.Elapsed}");
        Assert.Null(errors[2]);
        var timedOut = errors.OfType<CollectiveException>().ToArray();
        Assert.Equal(2, timedOut.Length);
        Assert.Contains(timedOut, e => e.Message.Contains("timed out after 2 s") && e.Message.Contains("NATIVEPARALLEL_TIMEOUT_S"));
        Assert.All(timedOut, e => Assert.Equal("dp", e.Group));
    }

    [Fact]
    public void ARankThatTimesOutOnAPeerWaitingInTurnReportsThatPeersBlameNotThePeer()
    {
        // Rank 1 waits on rank 0 from the start; rank 0 comes half a timeout later and waits on rank 2, which never
        // sends. Rank 1's deadline passes first, while rank 0 still waits on its own: rank 0 is not the cause, and
        // rank 1 reports rank 0's blame of rank 2 once it comes instead of naming rank 0 (as a rank across a dead
        // link is named by the same-host peer that waits on it, however late that peer's timeout falls).
        var groups = ProcessGroup.CreateThreadGroup(3, name: "pp", timeout: TimeSpan.FromSeconds(4));
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var errors = Capture(groups, g =>
        {
            using var t = ExactInputs.Make(DType.F32, 6, i => i);
            if (g.Rank == 1) g.Recv(t, 0);
            else if (g.Rank == 0)
            {
                Thread.Sleep(2000);
                g.Recv(t, 2);
                g.Send(t, 1);
            }
            // Rank 2 never sends.
        });
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), $"took {clock.Elapsed}");
        Assert.Null(errors[2]);
        var cause = Assert.IsType<CollectiveException>(errors[0]);
        Assert.Equal(2, cause.Peer);
        Assert.Contains("recv #0 in group 'pp' failed on rank 0 of 3: timed out after 4 s (sent 0 of 0 bytes to rank -, received 0 of 24 bytes from rank 2)", cause.Message);
        var waiter = Assert.IsType<CollectiveException>(errors[1]);
        Assert.Contains("recv #0 in group 'pp' failed on rank 1 of 3: the group was aborted: rank 0: timed out after 4 s", waiter.Message);
        Assert.Contains("received 0 of 24 bytes from rank 2", waiter.Message);
        Assert.DoesNotContain("from rank 0", waiter.Message);
        Assert.DoesNotContain('\n', waiter.Message);
    }

    [Fact]
    public void RanksWaitingOnEachOtherStillTimeOutNamingTheirPeer()
    {
        // A cycle (each waits on the other): no rank is nearer the cause, so neither waits for the other's report
        // beyond its own timeout; the first to time out names its peer and the other carries that.
        var groups = ProcessGroup.CreateThreadGroup(2, name: "cycle", timeout: TimeSpan.FromSeconds(2));
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var errors = Capture(groups, g =>
        {
            using var t = ExactInputs.Make(DType.F32, 6, i => i);
            g.Recv(t, 1 - g.Rank);
        });
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(2 + 1 + 5), $"took {clock.Elapsed}: a rank waited for the other's report");
        var failures = errors.Select(e => Assert.IsType<CollectiveException>(e)).ToArray();
        Assert.Contains(failures, e => e.Message.Contains("timed out after 2 s") && e.Peer == 1 - e.Rank && !e.Message.Contains("aborted"));
    }

    [Fact]
    public void MismatchedSendAndRecvFailWithBothSides()
    {
        var groups = ProcessGroup.CreateThreadGroup(2, timeout: TimeSpan.FromSeconds(10));
        var errors = Capture(groups, g =>
        {
            if (g.Rank == 0)
            {
                using var t = ExactInputs.Make(DType.F32, 8, i => i);
                g.Send(t, 1, tag: 7);
            }
            else
            {
                using var t = ExactInputs.Make(DType.F32, 8, _ => 0);
                g.Recv(t, 0, tag: 8);
            }
        });
        var e = Assert.IsType<CollectiveException>(errors[1]);
        Assert.Contains("rank 0 sent tag 7", e.Message);
        Assert.Contains("expected tag 8", e.Message);
    }

    [Fact]
    public void BadArgumentsAreRejectedBeforeAnyTraffic()
    {
        var groups = ProcessGroup.CreateThreadGroup(2);
        using var small = ExactInputs.Make(DType.F32, 3, i => i);
        using var other = ExactInputs.Make(DType.I32, 3, i => i);
        Assert.Contains("different dtypes", Assert.Throws<ArgumentException>(() => groups[0].AllReduce(small, other)).Message);
        Assert.Contains("Size × input", Assert.Throws<ArgumentException>(() => groups[0].AllGather(small, small)).Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => groups[0].Broadcast(small, root: 2));
        Assert.Throws<ArgumentOutOfRangeException>(() => groups[0].Send(small, peer: 0));
        Assert.Equal(0, groups[0].Sequence);
        foreach (var g in groups) g.Dispose();
    }

    private static Exception?[] Capture(ProcessGroup[] groups, Action<ProcessGroup> body)
    {
        var errors = new Exception?[groups.Length];
        var threads = groups.Select((g, r) => new Thread(() =>
        {
            try { body(g); }
            catch (Exception e) { errors[r] = e; }
        })).ToArray();
        foreach (var t in threads) t.Start();
        foreach (var t in threads) Assert.True(t.Join(TimeSpan.FromMinutes(1)), "a rank hung");
        foreach (var g in groups) g.Dispose();
        return errors;
    }
}

/// <summary>Reduction orders are fixed: inexact float sums come out bitwise the same on every rank and every run.</summary>
public sealed class DeterminismTests
{
    [Theory]
    [InlineData(3, 100)]        // one-shot
    [InlineData(3, 200_000)]    // ring
    [InlineData(4, 33_333)]
    public void AllReduceIsBitwiseIdenticalAcrossRanksAndRuns(int ranks, int count)
    {
        float[][] Once()
        {
            var groups = ProcessGroup.CreateThreadGroup(ranks, timeout: TimeSpan.FromSeconds(30));
            var results = new float[ranks][];
            ExactInputs.OnThreads(groups, g =>
            {
                // Random values: their sums round differently in different orders.
                var values = new float[count];
                NativeParallel.Tensors.SeededRandom.Uniform((ulong)(77 + g.Rank), values, -1000f, 1000f);
                using var t = NativeParallel.Tensors.Tensor.FromFloats(NativeParallel.Devices.CpuDevice.Instance, values, DType.F32, count);
                g.AllReduce(t, ReduceOp.Sum);
                results[g.Rank] = t.ToFloats();
            });
            foreach (var g in groups) g.Dispose();
            return results;
        }
        var first = Once();
        var second = Once();
        for (int r = 0; r < ranks; r++)
        {
            Assert.True(first[0].AsSpan().SequenceEqual(first[r]), $"rank {r} differs from rank 0");
            Assert.True(first[r].AsSpan().SequenceEqual(second[r]), $"rank {r} differs between runs");
        }
    }
}
