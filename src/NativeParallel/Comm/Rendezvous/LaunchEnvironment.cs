namespace NativeParallel.Comm.Rendezvous;

/// <summary>
/// Where this process sits in a job, read from the launcher's environment: torchrun (RANK, WORLD_SIZE,
/// LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT), OpenMPI's mpirun (OMPI_COMM_WORLD_RANK, _SIZE,
/// _LOCAL_RANK, _LOCAL_SIZE) or Slurm (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID). The store address comes from
/// MASTER_ADDR/MASTER_PORT whatever the launcher (default 127.0.0.1:29500, torchrun's).
/// </summary>
public sealed record LaunchEnvironment(int Rank, int WorldSize, int LocalRank, int LocalWorldSize, string MasterAddress, int MasterPort, string Launcher)
{
    /// <summary>torchrun's default store port.</summary>
    public const int DefaultPort = 29500;

    /// <summary>Reads the environment; null when no launcher set a rank (a single process).</summary>
    public static LaunchEnvironment? Detect(Func<string, string?>? read = null)
    {
        read ??= Environment.GetEnvironmentVariable;
        int? Int(string name) => int.TryParse(read(name), out int v) ? v : null;
        string address = read("MASTER_ADDR") is { Length: > 0 } a ? a : "127.0.0.1";
        int port = Int("MASTER_PORT") ?? DefaultPort;
        LaunchEnvironment Make(int rank, int size, int? local, int? localSize, string launcher)
        {
            if (size < 1 || rank < 0 || rank >= size)
                throw new InvalidOperationException($"{launcher} environment gives rank {rank} of world size {size}: not a valid rank");
            return new(rank, size, local ?? rank, localSize ?? size, address, port, launcher);
        }
        if (Int("RANK") is { } r && Int("WORLD_SIZE") is { } w) return Make(r, w, Int("LOCAL_RANK"), Int("LOCAL_WORLD_SIZE"), "torchrun");
        if (Int("OMPI_COMM_WORLD_RANK") is { } or && Int("OMPI_COMM_WORLD_SIZE") is { } ow)
            return Make(or, ow, Int("OMPI_COMM_WORLD_LOCAL_RANK"), Int("OMPI_COMM_WORLD_LOCAL_SIZE"), "mpirun");
        if (Int("SLURM_PROCID") is { } sr && Int("SLURM_NTASKS") is { } sw) return Make(sr, sw, Int("SLURM_LOCALID"), null, "slurm");
        return null;
    }
}
