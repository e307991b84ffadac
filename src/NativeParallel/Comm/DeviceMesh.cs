namespace NativeParallel.Comm;

/// <summary>
/// The groups of a parallel layout, Megatron's way: world = pp × dp × sp × tp ranks, tensor parallelism innermost
/// (ranks r and r+1 share a TP group, the fastest links), then sequence (context) parallelism, then data, then
/// pipeline. Global rank = ((pp_rank × dp + dp_rank) × sp + sp_rank) × tp + tp_rank. Expert parallelism splits each
/// DP group into groups of <c>ep</c> consecutive DP ranks. Training and <c>run</c> (threads or a launched job's
/// processes) both take their groups from here.
/// </summary>
public sealed class DeviceMesh : IDisposable
{
    private DeviceMesh(ProcessGroup world, int tp, int pp, int dp, int ep, int sp)
    {
        World = world;
        (TensorParallel, PipelineParallel, DataParallel, ExpertParallelSize, SequenceParallel) = (tp, pp, dp, ep, sp);
        int r = world.Rank;
        TpRank = r % tp;
        SpRank = r / tp % sp;
        DpRank = r / (tp * sp) % dp;
        PpRank = r / (tp * sp * dp);
        // A group's color numbers every other coordinate; its key is the coordinate along it. Every rank takes part
        // in every split, in the same order (splits are collectives of the world).
        int tpColor = (PpRank * dp + DpRank) * sp + SpRank;
        int spColor = (PpRank * dp + DpRank) * tp + TpRank;
        int dpColor = (PpRank * sp + SpRank) * tp + TpRank;
        int ppColor = (DpRank * sp + SpRank) * tp + TpRank;
        int epColor = dpColor * (dp / ep) + DpRank / ep;
        Tp = world.Split(tpColor, TpRank, $"tp{tpColor}");
        Sp = world.Split(spColor, SpRank, $"sp{spColor}");
        Dp = world.Split(dpColor, DpRank, $"dp{dpColor}");
        Pp = world.Split(ppColor, PpRank, $"pp{ppColor}");
        Ep = world.Split(epColor, DpRank % ep, $"ep{epColor}");
    }

    /// <summary>
    /// The world rank holding data-parallel replica 0 of <paramref name="worldRank"/>'s part: the same pipeline,
    /// sequence and tensor coordinates, data-parallel index 0 (what every replica's weights must equal bitwise).
    /// </summary>
    public static int FirstReplicaOf(int worldRank, int tp, int dp, int sp = 1)
    {
        int tpRank = worldRank % tp, spRank = worldRank / tp % sp, ppRank = worldRank / (tp * sp * dp);
        return (ppRank * dp * sp + spRank) * tp + tpRank;
    }

    /// <summary>Builds the mesh; every rank of <paramref name="world"/> must call it with the same sizes.</summary>
    public static DeviceMesh Create(ProcessGroup world, int tp = 1, int pp = 1, int dp = -1, int ep = 1, int sp = 1)
    {
        if (tp < 1 || pp < 1 || sp < 1) throw new ArgumentException("tp, pp and sp must be at least 1");
        if (dp == -1) dp = world.Size / (tp * pp * sp);
        if (tp * pp * sp * dp != world.Size)
            throw new ArgumentException($"tp {tp} x sp {sp} x pp {pp} x dp {dp} = {tp * pp * sp * dp} ranks, but the world has {world.Size}");
        if (ep < 1 || dp % ep != 0) throw new ArgumentException($"ep ({ep}) must divide dp ({dp})");
        return new DeviceMesh(world, tp, pp, dp, ep, sp);
    }

    /// <summary>The whole job.</summary>
    public ProcessGroup World { get; }
    /// <summary>This rank's tensor-parallel group.</summary>
    public ProcessGroup Tp { get; }
    /// <summary>This rank's data-parallel group.</summary>
    public ProcessGroup Dp { get; }
    /// <summary>This rank's pipeline group (its stages, in order).</summary>
    public ProcessGroup Pp { get; }
    /// <summary>This rank's expert-parallel group.</summary>
    public ProcessGroup Ep { get; }
    /// <summary>This rank's sequence-parallel group (inference's token split across ranks).</summary>
    public ProcessGroup Sp { get; }
    /// <summary>Sequence-parallel ranks.</summary>
    public int SequenceParallel { get; }
    /// <summary>Sequence-parallel index.</summary>
    public int SpRank { get; }
    /// <summary>Every group's bytes sent so far (world, tp, sp, dp, pp, ep).</summary>
    public long BytesSent => OverGroups(g => g.BytesSent);
    /// <summary>Every group's collectives that ran device-direct so far (peers' device buffers, nothing staged).</summary>
    public long DeviceDirectCalls => OverGroups(g => g.DeviceDirectCalls);
    /// <summary>Every group's bytes of device tensors staged through host memory so far.</summary>
    public long StagedBytes => OverGroups(g => g.StagedBytes);

    private long OverGroups(Func<ProcessGroup, long> count) => count(World) + count(Tp) + count(Sp) + count(Dp) + count(Pp) + count(Ep);
    /// <summary>Sizes.</summary>
    public int TensorParallel { get; }
    /// <summary>Pipeline stages.</summary>
    public int PipelineParallel { get; }
    /// <summary>Data-parallel replicas.</summary>
    public int DataParallel { get; }
    /// <summary>Ranks per expert-parallel group.</summary>
    public int ExpertParallelSize { get; }
    /// <summary>This rank's coordinates.</summary>
    public int TpRank { get; }
    /// <summary>Data-parallel index.</summary>
    public int DpRank { get; }
    /// <summary>Pipeline stage.</summary>
    public int PpRank { get; }

    /// <summary>Disposes the sub-groups (not the world).</summary>
    public void Dispose()
    {
        Tp.Dispose();
        Sp.Dispose();
        Dp.Dispose();
        Pp.Dispose();
        Ep.Dispose();
    }
}
