using NativeParallel.Comm;
using NativeParallel.Kernels;
using NativeParallel.Tensors;

namespace NativeParallel.Tests.Comm;

/// <summary>Sub-groups: split by color and the TP/PP/DP/EP mesh, each with its own links.</summary>
public sealed class SplitTests
{
    [Fact]
    public void SplitGroupsReduceOnlyAmongTheirMembers()
    {
        var world = ProcessGroup.CreateThreadGroup(5, "world", TimeSpan.FromSeconds(20));
        ExactInputs.OnThreads(world, g =>
        {
            // Odd and even ranks; keys reverse the order inside each group.
            using var sub = g.Split(g.Rank % 2, -g.Rank);
            int[] members = Enumerable.Range(0, 5).Where(r => r % 2 == g.Rank % 2).ToArray();
            Assert.Equal(members.Length, sub.Size);
            Assert.Equal(members.Length - 1 - Array.IndexOf(members, g.Rank), sub.Rank);
            Assert.Equal($"world.{g.Rank % 2}", sub.Name);
            using var t = ExactInputs.Make(DType.I64, 100, i => g.Rank * 1000 + i);
            sub.AllReduce(t);
            Assert.Equal(Enumerable.Range(0, 100).Select(i => members.Sum(m => m * 1000L + i)), ExactInputs.Read(t));
            g.Barrier(); // the parent still works after the split
        });
        foreach (var g in world) g.Dispose();
    }

    [Fact]
    public void TheMeshPlacesTensorParallelRanksInnermost()
    {
        var world = ProcessGroup.CreateThreadGroup(8, "world", TimeSpan.FromSeconds(30));
        ExactInputs.OnThreads(world, g =>
        {
            using var mesh = DeviceMesh.Create(g, tp: 2, pp: 2, dp: 2, ep: 2);
            int r = g.Rank;
            Assert.Equal((r % 2, r / 2 % 2, r / 4), (mesh.TpRank, mesh.DpRank, mesh.PpRank));
            Assert.Equal((2, 2, 2, 2), (mesh.Tp.Size, mesh.Dp.Size, mesh.Pp.Size, mesh.Ep.Size));
            // A sum of global ranks over each group tells its members: TP {r, r^1}, DP {r, r^2}, PP {r, r^4}.
            long Sum(ProcessGroup group)
            {
                using var t = ExactInputs.Make(DType.I64, 1, _ => r);
                group.AllReduce(t);
                return ExactInputs.Read(t)[0];
            }
            Assert.Equal(r + (r ^ 1), Sum(mesh.Tp));
            Assert.Equal(r + (r ^ 2), Sum(mesh.Dp));
            Assert.Equal(r + (r ^ 4), Sum(mesh.Pp));
            Assert.Equal(r + (r ^ 2), Sum(mesh.Ep));
            // Replica 0 of this rank's part: the data-parallel group's member with DP index 0 (the smaller of r, r^2).
            Assert.Equal(Math.Min(r, r ^ 2), DeviceMesh.FirstReplicaOf(r, tp: 2, dp: 2));
        });
        foreach (var g in world) g.Dispose();
        Assert.Throws<ArgumentException>(() => DeviceMesh.Create(ProcessGroup.CreateThreadGroup(1)[0], tp: 2));
        // With a sequence axis, rank = ((pp·dp + dp_rank)·sp + sp_rank)·tp + tp_rank: rank 5 of tp 2, sp 2, dp 2 is
        // (pp 0, dp 1, sp 0, tp 1), its replica 0 rank 1; rank 15 is (pp 1, dp 1, sp 1, tp 1), its replica 0 rank 11.
        Assert.Equal(1, DeviceMesh.FirstReplicaOf(5, tp: 2, dp: 2, sp: 2));
        Assert.Equal(11, DeviceMesh.FirstReplicaOf(15, tp: 2, dp: 2, sp: 2));
    }
}
