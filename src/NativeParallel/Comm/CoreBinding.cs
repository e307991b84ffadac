using System.Runtime.InteropServices;
using NativeParallel.Comm.Rendezvous;
using NativeParallel.Diagnostics;

namespace NativeParallel.Comm;

/// <summary>
/// NATIVEPARALLEL_BIND=core: a launched rank binds the thread that joins the job (and every thread it starts
/// afterwards, which inherit it) to core LOCAL_RANK mod cores, as OpenMPI's mpirun binds its ranks by default
/// (<c>--bind-to core</c> for 2 ranks). Two polling ranks then never share one core's run queue, where a rank
/// spinning for its peer would hold the core the peer needs. Off by default for jobs: it also confines the rank's
/// CPU kernels to that core; <c>bench collectives --ranks N</c> sets it when N is at most the core count.
/// </summary>
internal static partial class CoreBinding
{
    /// <summary>Binds the calling thread when NATIVEPARALLEL_BIND=core; returns the core, or null when unbound.</summary>
    public static int? Apply(LaunchEnvironment env)
    {
        string? mode = Tunables.Raw("NATIVEPARALLEL_BIND")?.ToLowerInvariant();
        if (mode is null or "none") return null;
        if (mode != "core") throw new ArgumentException($"NATIVEPARALLEL_BIND={mode}: expected core or none");
        if (!OperatingSystem.IsLinux()) return null;
        int core = env.LocalRank % Environment.ProcessorCount;
        var mask = new ulong[(Environment.ProcessorCount + 63) / 64];
        mask[core / 64] = 1UL << (core % 64);
        // pid 0: the calling thread only; threads it creates later inherit the mask.
        if (SchedSetAffinity(0, mask.Length * sizeof(ulong), mask) != 0)
        {
            Log.Warn($"NATIVEPARALLEL_BIND=core: rank {env.Rank} could not bind to core {core} (errno {Marshal.GetLastPInvokeError()}); running unbound");
            return null;
        }
        Log.Info($"rank {env.Rank} (local rank {env.LocalRank}) bound to core {core}");
        return core;
    }

    [LibraryImport("libc", EntryPoint = "sched_setaffinity", SetLastError = true)]
    private static partial int SchedSetAffinity(int pid, nint size, ulong[] mask);
}
