using System.Diagnostics;
using NativeParallel.Comm;
using NativeParallel.Devices;
using NativeParallel.Tensors;

namespace NativeParallel.Tests.Comm;

/// <summary>A thread rank that fails aborts its groups: its peers fail at once with its reason instead of waiting for the timeout.</summary>
public sealed class ThreadRankAbortTests
{
    [Fact]
    public void PeersWaitingOnTheWorldOrASplitGroupFailAtOnceNamingTheRankThatFailed()
    {
        var clock = Stopwatch.StartNew();
        var e = Assert.Throws<AggregateException>(() => ProcessGroup.RunOnThreadRanks(4, world =>
        {
            // Ranks {0, 1} and {2, 3} form sub-groups; rank 1 fails after the split, rank 0 waits for it in the
            // sub-group, ranks 2 and 3 wait for it in the world.
            using var pair = world.Split(world.Rank / 2, world.Rank);
            using var t = Tensor.FromFloats(CpuDevice.Instance, [1f, 2f, 3f], DType.F32, 3);
            if (world.Rank == 1) throw new InvalidOperationException("rank 1 ran out of data");
            if (world.Rank == 0) pair.AllReduce(t);
            else world.AllReduce(t);
        }, timeout: TimeSpan.FromSeconds(120)));
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), $"the peers took {clock.Elapsed.TotalSeconds:F1} s to fail (the group timeout is 120 s)");
        var failures = e.Flatten().InnerExceptions;
        Assert.Equal(4, failures.Count);
        Assert.Single(failures, f => f is InvalidOperationException { Message: "rank 1 ran out of data" });
        // Rank 1 aborts the world and the groups split from it before its own scopes unwind (its sub-group's
        // disposal comes after): rank 0 in the sub-group and ranks 2 and 3 in the world all carry rank 1's reason,
        // never a peer's "rank 1 left the group" racing it.
        foreach (var f in failures.Where(f => f is not InvalidOperationException))
        {
            var c = Assert.IsType<CollectiveException>(f);
            Assert.Contains("rank 1 failed: rank 1 ran out of data", c.Message);
        }
    }
}
