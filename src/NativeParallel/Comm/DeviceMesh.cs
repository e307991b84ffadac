namespace NativeParallel.Comm;

/// <summary>
/// The groups of a parallel layout, Megatron's way: world = pp × dp × tp ranks, tensor parallelism innermost
/// (ranks r and r+1 share a TP group, the fastest links), then data, then pipeline. Global rank =
/// (pp_rank × dp + dp_rank) × tp + tp_rank. Expert parallelism splits each DP group into groups of <c>ep</c>
/// consecutive DP ranks.
/// </summary>
public sealed class DeviceMesh : IDisposable
{
    private DeviceMesh(ProcessGroup world, int tp, int pp, int dp, int ep)
    {
        World = world;
        (TensorParallel, PipelineParallel, DataParallel, ExpertParallelSize) = (tp, pp, dp, ep);
        int r = world.Rank;
        TpRank = r % tp;
        DpRank = r / tp % dp;
        PpRank = r / (tp * dp);
        // Every rank takes part in every split, in the same order (splits are collectives of the world).
        Tp = world.Split(PpRank * dp + DpRank, TpRank, $"tp{PpRank * dp + DpRank}");
        Dp = world.Split(PpRank * tp + TpRank, DpRank, $"dp{PpRank * tp + TpRank}");
        Pp = world.Split(DpRank * tp + TpRank, PpRank, $"pp{DpRank * tp + TpRank}");
        int epColor = (PpRank * tp + TpRank) * (dp / ep) + DpRank / ep;
        Ep = world.Split(epColor, DpRank % ep, $"ep{epColor}");
    }

    /// <summary>Builds the mesh; every rank of <paramref name="world"/> must call it with the same sizes.</summary>
    public static DeviceMesh Create(ProcessGroup world, int tp = 1, int pp = 1, int dp = -1, int ep = 1)
    {
        if (tp < 1 || pp < 1) throw new ArgumentException("tp and pp must be at least 1");
        if (dp == -1) dp = world.Size / (tp * pp);
        if (tp * pp * dp != world.Size)
            throw new ArgumentException($"tp {tp} x pp {pp} x dp {dp} = {tp * pp * dp} ranks, but the world has {world.Size}");
        if (ep < 1 || dp % ep != 0) throw new ArgumentException($"ep ({ep}) must divide dp ({dp})");
        return new DeviceMesh(world, tp, pp, dp, ep);
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
        Dp.Dispose();
        Pp.Dispose();
        Ep.Dispose();
    }
}
