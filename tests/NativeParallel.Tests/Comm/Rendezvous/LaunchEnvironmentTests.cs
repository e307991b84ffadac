using NativeParallel.Comm.Rendezvous;

namespace NativeParallel.Tests.Comm.Rendezvous;

/// <summary>Environment to coordinates (rank, world, local rank, local world, store address and port) for Slurm, OpenMPI and torchrun across nodes.</summary>
public sealed class LaunchEnvironmentTests
{
    private static LaunchEnvironment? Detect(params (string Name, string Value)[] variables)
    {
        var map = variables.ToDictionary(v => v.Name, v => v.Value);
        return LaunchEnvironment.Detect(name => map.GetValueOrDefault(name));
    }

    private static void AssertCoordinates(LaunchEnvironment? env, int rank, int world, int localRank, int localWorld, string address, int port, string launcher)
    {
        Assert.NotNull(env);
        Assert.Equal((rank, world, localRank, localWorld, address, port, launcher),
            (env.Rank, env.WorldSize, env.LocalRank, env.LocalWorldSize, env.MasterAddress, env.MasterPort, env.Launcher));
    }

    // Task 3 of `srun -N2 --ntasks-per-node=2` in job 123456: on the second node, the store on the first.
    private static readonly (string, string)[] SlurmTwoNodes =
    [
        ("SLURM_PROCID", "3"), ("SLURM_NTASKS", "4"), ("SLURM_LOCALID", "1"), ("SLURM_NODEID", "1"), ("SLURM_JOB_ID", "123456"),
        ("SLURM_STEP_NODELIST", "gpu-a[01-02]"), ("SLURM_STEP_TASKS_PER_NODE", "2(x2)"), ("SLURM_LAUNCH_NODE_IPADDR", "10.0.0.9"),
    ];

    [Fact]
    public void SlurmStoreIsTheFirstNodeAndThePortComesFromTheJob()
    {
        var env = Detect(SlurmTwoNodes);
        AssertCoordinates(env, 3, 4, 1, 2, "gpu-a01", SlurmEnvironment.JobPortBase + 3456, "slurm");
        Assert.Equal("first node of SLURM_STEP_NODELIST", env!.AddressSource);
        Assert.Equal("SLURM_JOB_ID 123456", env.PortSource);
        Assert.Equal(["gpu-a01", "gpu-a01", "gpu-a02", "gpu-a02"], Enumerable.Range(0, 4).Select(r => env.Placement!.NodeOf(r)));
    }

    [Fact]
    public void SlurmMasterAddrAndPortWinOverTheNodeListAndTheJob()
    {
        var env = Detect([.. SlurmTwoNodes, ("MASTER_ADDR", "login7"), ("MASTER_PORT", "31234")]);
        AssertCoordinates(env, 3, 4, 1, 2, "login7", 31234, "slurm");
        Assert.Equal("MASTER_ADDR", env!.AddressSource);
        Assert.Equal("MASTER_PORT", env.PortSource);
    }

    [Fact]
    public void SlurmLaunchNodeAddressIsUsedOnlyWithoutANodeList()
    {
        // With a node list the launch node does not count (after salloc on a login node, srun runs outside the allocation).
        Assert.Equal("gpu-a01", Detect(SlurmTwoNodes)!.MasterAddress);
        var env = Detect([.. SlurmTwoNodes.Where(v => v.Item1 != "SLURM_STEP_NODELIST")]);
        Assert.Equal("10.0.0.9", env!.MasterAddress);
        Assert.Equal("SLURM_LAUNCH_NODE_IPADDR", env.AddressSource);
        Assert.Null(env.Placement);
    }

    [Theory]
    [InlineData("SLURM_STEP_NODELIST", "b[1-2]", "b1")]
    [InlineData("SLURM_NODELIST", "c[07-08]", "c07")]
    [InlineData("SLURM_JOB_NODELIST", "d9,d10", "d9")]
    public void SlurmNodeListsAreReadStepFirst(string name, string list, string first)
    {
        (string, string)[] all = [("SLURM_STEP_NODELIST", "b[1-2]"), ("SLURM_NODELIST", "c[07-08]"), ("SLURM_JOB_NODELIST", "d9,d10")];
        // Only the lists from `name` on are set: the first set one wins.
        var set = all.SkipWhile(v => v.Item1 != name).ToArray();
        var env = Detect([("SLURM_PROCID", "0"), ("SLURM_NTASKS", "2"), ("SLURM_TASKS_PER_NODE", "1(x2)"), ("SLURM_NODEID", "0"), .. set]);
        Assert.Equal(first, env!.MasterAddress);
        Assert.Equal($"first node of {name}", env.AddressSource);
        Assert.Equal(SlurmHostList.Expand(list), new[] { 0, 1 }.Select(r => env.Placement!.NodeOf(r)));
    }

    [Theory]
    [InlineData("2(x3),1", 0, 2)]
    [InlineData("2(x3),1", 2, 2)]
    [InlineData("2(x3),1", 3, 1)]
    [InlineData("4,1,3", 2, 3)]
    public void SlurmLocalWorldIsThisNodesTaskCount(string tasksPerNode, int nodeId, int localWorld)
    {
        var env = Detect(("SLURM_PROCID", "0"), ("SLURM_NTASKS", SlurmTasksPerNode.Expand(tasksPerNode).Sum().ToString()), ("SLURM_LOCALID", "0"),
            ("SLURM_NODEID", nodeId.ToString()), ("SLURM_TASKS_PER_NODE", tasksPerNode), ("SLURM_NODELIST", "n[1-4]"));
        Assert.Equal(localWorld, env!.LocalWorldSize);
    }

    [Fact]
    public void SlurmNtasksPerNodeIsTheFallbackForTheLocalWorld()
    {
        var env = Detect(("SLURM_PROCID", "5"), ("SLURM_NTASKS", "8"), ("SLURM_LOCALID", "1"), ("SLURM_NTASKS_PER_NODE", "4"), ("SLURM_NODELIST", "n[1-2]"));
        AssertCoordinates(env, 5, 8, 1, 4, "n1", LaunchEnvironment.DefaultPort, "slurm");
        Assert.Null(env!.Placement); // no task counts: which rank runs where is not known
    }

    [Fact]
    public void SlurmCyclicDistributionPlacesRanksRoundRobin()
    {
        var env = Detect(("SLURM_PROCID", "0"), ("SLURM_NTASKS", "5"), ("SLURM_NODEID", "0"), ("SLURM_NODELIST", "a,b"),
            ("SLURM_TASKS_PER_NODE", "3,2"), ("SLURM_DISTRIBUTION", "cyclic:block"));
        Assert.Equal(["a", "b", "a", "b", "a"], Enumerable.Range(0, 5).Select(r => env!.Placement!.NodeOf(r)));
        Assert.Null(Detect(("SLURM_PROCID", "0"), ("SLURM_NTASKS", "2"), ("SLURM_NODELIST", "a,b"), ("SLURM_TASKS_PER_NODE", "1(x2)"),
            ("SLURM_DISTRIBUTION", "arbitrary"))!.Placement);
    }

    [Fact]
    public void SlurmJobPortsStayInTheirRangeAndNeighbouringJobsDiffer()
    {
        for (long job = 0; job < 30000; job += 7)
        {
            int port = SlurmEnvironment.PortOfJob(job);
            Assert.InRange(port, SlurmEnvironment.JobPortBase, SlurmEnvironment.JobPortBase + SlurmEnvironment.JobPortSpan - 1);
            Assert.True(port < 32768, "below Linux's ephemeral ports");
            Assert.NotEqual(port, SlurmEnvironment.PortOfJob(job + 1));
        }
        var one = Detect(("SLURM_PROCID", "0"), ("SLURM_NTASKS", "2"), ("SLURM_JOB_ID", "4242"));
        var other = Detect(("SLURM_PROCID", "0"), ("SLURM_NTASKS", "2"), ("SLURM_JOB_ID", "4243"));
        Assert.NotEqual(one!.MasterPort, other!.MasterPort);
    }

    [Fact]
    public void SlurmAcrossNodesWithNoAddressAnywhereFailsAtOnce()
    {
        var e = Assert.Throws<InvalidOperationException>(() => Detect(("SLURM_PROCID", "2"), ("SLURM_NTASKS", "4"), ("SLURM_NODEID", "1"),
            ("SLURM_LOCALID", "0"), ("SLURM_TASKS_PER_NODE", "2(x2)")));
        Assert.Contains("MASTER_ADDR", e.Message);
        Assert.Contains("SLURM_NODELIST", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void SlurmMalformedNodeListNamesTheVariable()
    {
        var e = Assert.Throws<FormatException>(() => Detect(("SLURM_PROCID", "0"), ("SLURM_NTASKS", "2"), ("SLURM_NODELIST", "gpu[01-")));
        Assert.StartsWith("SLURM_NODELIST: Slurm host list 'gpu[01-'", e.Message);
        var t = Assert.Throws<FormatException>(() => Detect(("SLURM_PROCID", "0"), ("SLURM_NTASKS", "2"), ("SLURM_TASKS_PER_NODE", "2(x")));
        Assert.StartsWith("SLURM_TASKS_PER_NODE:", t.Message);
    }

    [Fact]
    public void MpirunOnOneHostKeepsTheLoopbackDefault()
    {
        var env = Detect(("OMPI_COMM_WORLD_RANK", "1"), ("OMPI_COMM_WORLD_SIZE", "4"), ("OMPI_COMM_WORLD_LOCAL_RANK", "1"), ("OMPI_COMM_WORLD_LOCAL_SIZE", "4"));
        AssertCoordinates(env, 1, 4, 1, 4, "127.0.0.1", 29500, "mpirun");
    }

    [Theory]
    [InlineData(null, "29500")]
    [InlineData("31000", "31000")]
    public void MpirunAcrossHostsWithoutMasterAddrFailsShowingTheFlags(string? port, string shown)
    {
        (string, string)[] vars = [("OMPI_COMM_WORLD_RANK", "3"), ("OMPI_COMM_WORLD_SIZE", "4"), ("OMPI_COMM_WORLD_LOCAL_RANK", "1"), ("OMPI_COMM_WORLD_LOCAL_SIZE", "2")];
        var e = Assert.Throws<InvalidOperationException>(() => Detect(port is null ? vars : [.. vars, ("MASTER_PORT", port)]));
        Assert.Contains($"-x MASTER_ADDR=<rank 0's host> -x MASTER_PORT={shown}", e.Message);
        Assert.Contains("rank 3 of 4", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void MpirunAcrossHostsWithMasterAddrJoins()
    {
        var env = Detect(("OMPI_COMM_WORLD_RANK", "3"), ("OMPI_COMM_WORLD_SIZE", "4"), ("OMPI_COMM_WORLD_LOCAL_RANK", "1"), ("OMPI_COMM_WORLD_LOCAL_SIZE", "2"),
            ("MASTER_ADDR", "node0"), ("MASTER_PORT", "29600"));
        AssertCoordinates(env, 3, 4, 1, 2, "node0", 29600, "mpirun");
        Assert.Null(env!.Placement);
    }

    [Fact]
    public void MpirunInsideASlurmJobIsMpirun()
    {
        var env = Detect([.. SlurmTwoNodes.Select(v => v.Item1 == "SLURM_PROCID" ? ("SLURM_PROCID", "0") : v),
            ("OMPI_COMM_WORLD_RANK", "2"), ("OMPI_COMM_WORLD_SIZE", "4"), ("OMPI_COMM_WORLD_LOCAL_RANK", "0"), ("OMPI_COMM_WORLD_LOCAL_SIZE", "2"), ("MASTER_ADDR", "gpu-a01")]);
        AssertCoordinates(env, 2, 4, 0, 2, "gpu-a01", 29500, "mpirun");
    }

    // What torchrun --nnodes 2 --nproc_per_node 4 --node_rank 1 --master_addr node0 --master_port 29500 gives its second local worker.
    private static readonly (string, string)[] TorchrunSecondNode =
    [
        ("RANK", "5"), ("WORLD_SIZE", "8"), ("LOCAL_RANK", "1"), ("LOCAL_WORLD_SIZE", "4"), ("GROUP_RANK", "1"), ("GROUP_WORLD_SIZE", "2"),
        ("MASTER_ADDR", "node0"), ("MASTER_PORT", "29500"), ("TORCHELASTIC_USE_AGENT_STORE", "True"), ("TORCHELASTIC_RUN_ID", "none"),
    ];

    [Fact]
    public void TorchrunMultiNodeTakesTheNextPortAfterItsAgentsStore()
    {
        var env = Detect(TorchrunSecondNode);
        AssertCoordinates(env, 5, 8, 1, 4, "node0", 29501, "torchrun");
        Assert.Contains("torchrun's agent holds MASTER_PORT", env!.PortSource);
        Assert.Equal(["node_rank 0", "node_rank 1"], new[] { 3, 4 }.Select(r => env.Placement!.NodeOf(r)));
    }

    [Fact]
    public void TorchrunWithoutItsAgentStoreAndOurLaunchUseMasterPort()
    {
        var env = Detect([.. TorchrunSecondNode.Where(v => !v.Item1.StartsWith("TORCHELASTIC"))]);
        AssertCoordinates(env, 5, 8, 1, 4, "node0", 29500, "torchrun");
    }

    [Fact]
    public void TorchrunInsideSlurmIsTorchrun()
    {
        var env = Detect([.. SlurmTwoNodes, .. TorchrunSecondNode]);
        AssertCoordinates(env, 5, 8, 1, 4, "node0", 29501, "torchrun");
    }

    [Fact]
    public void NoLauncherIsASingleProcess() => Assert.Null(Detect(("PATH", "/usr/bin"), ("SLURM_JOB_ID", "7")));

    [Theory]
    [InlineData("abc")]
    [InlineData("0")]
    [InlineData("70000")]
    public void ABadMasterPortIsRefused(string port)
    {
        var e = Assert.Throws<FormatException>(() => Detect(("RANK", "0"), ("WORLD_SIZE", "2"), ("MASTER_ADDR", "h"), ("MASTER_PORT", port)));
        Assert.Contains($"MASTER_PORT='{port}'", e.Message);
    }

    [Fact]
    public void InvalidCoordinatesAreRefused()
    {
        Assert.Throws<InvalidOperationException>(() => Detect(("RANK", "2"), ("WORLD_SIZE", "2")));
        Assert.Throws<InvalidOperationException>(() => Detect(("RANK", "0"), ("WORLD_SIZE", "4"), ("LOCAL_RANK", "2"), ("LOCAL_WORLD_SIZE", "2"), ("MASTER_ADDR", "h")));
    }

    [Fact]
    public void MissingRanksAreNamedWithTheirNodes()
    {
        var env = Detect(SlurmTwoNodes)!;
        Assert.Equal("missing ranks 2-3 (expected on gpu-a02)", RendezvousJoin.DescribeMissing([2, 3], env));
        Assert.Equal("missing ranks 1 (expected on gpu-a01), 2 (expected on gpu-a02)", RendezvousJoin.DescribeMissing([1, 2], env));
        var mpi = Detect(("OMPI_COMM_WORLD_RANK", "0"), ("OMPI_COMM_WORLD_SIZE", "40"))!;
        Assert.Equal("missing rank 7", RendezvousJoin.DescribeMissing([7], mpi));
        Assert.Equal("missing ranks 1, 3, 5, 7, 9, 11, 13, 15, and 2 more", RendezvousJoin.DescribeMissing([1, 3, 5, 7, 9, 11, 13, 15, 17, 19], mpi));
    }
}
