namespace NativeParallel.Comm.Rendezvous;

/// <summary>
/// Where this process sits in a job, read from the launcher's environment: torchrun (RANK, WORLD_SIZE,
/// LOCAL_RANK, LOCAL_WORLD_SIZE, GROUP_WORLD_SIZE, MASTER_ADDR, MASTER_PORT; our <c>launch</c> sets the same),
/// OpenMPI's mpirun (OMPI_COMM_WORLD_RANK, _SIZE, _LOCAL_RANK, _LOCAL_SIZE) or Slurm's srun
/// (<see cref="SlurmEnvironment"/>), in that order, so a launcher started inside another's job wins. Rank 0 hosts
/// the rendezvous store at <see cref="MasterAddress"/>:<see cref="MasterPort"/>: MASTER_ADDR/MASTER_PORT when set,
/// else what the launcher tells (Slurm: the node list and the job id), else 127.0.0.1:29500, torchrun's default,
/// which is refused when the ranks span several hosts (they would each knock on their own loopback).
/// </summary>
public sealed record LaunchEnvironment(int Rank, int WorldSize, int LocalRank, int LocalWorldSize, string MasterAddress, int MasterPort, string Launcher)
{
    /// <summary>torchrun's default store port.</summary>
    public const int DefaultPort = 29500;

    /// <summary>The store address when nothing names one: only right when every rank shares this host.</summary>
    public const string DefaultAddress = "127.0.0.1";

    /// <summary>Where <see cref="MasterAddress"/> came from (in progress lines and errors): MASTER_ADDR, a Slurm variable, or "default".</summary>
    public string AddressSource { get; init; } = "default";

    /// <summary>Where <see cref="MasterPort"/> came from: MASTER_PORT, SLURM_JOB_ID, or "default".</summary>
    public string PortSource { get; init; } = "default";

    /// <summary>
    /// The job's secret when the caller carries it itself (the C API's npUniqueId holds 32 random bytes of it); it
    /// comes before NATIVEPARALLEL_JOB_SECRET. Null: the environment's, or a derived key.
    /// </summary>
    public string? Secret { get; init; }

    /// <summary>Which node each rank runs on, where the launcher tells; null when unknown (mpirun).</summary>
    public RankPlacement? Placement { get; init; }

    /// <summary>Reads the environment; null when no launcher set a rank (a single process).</summary>
    /// <exception cref="InvalidOperationException">The coordinates are invalid, or the ranks span hosts with no store address named.</exception>
    /// <exception cref="FormatException">A launcher variable is malformed (a host list, a port).</exception>
    public static LaunchEnvironment? Detect(Func<string, string?>? read = null)
    {
        read ??= Environment.GetEnvironmentVariable;
        var env = Torchrun(read) ?? OpenMpi(read) ?? SlurmEnvironment.Read(read);
        if (env is null) return null;
        if (env.WorldSize < 1 || env.Rank < 0 || env.Rank >= env.WorldSize)
            throw new InvalidOperationException($"{env.Launcher} environment gives rank {env.Rank} of world size {env.WorldSize}: not a valid rank");
        if (env.LocalWorldSize < 1 || env.LocalRank < 0 || env.LocalRank >= env.LocalWorldSize || env.LocalWorldSize > env.WorldSize)
            throw new InvalidOperationException($"{env.Launcher} environment gives local rank {env.LocalRank} of {env.LocalWorldSize} on this host " +
                                                $"in a world of {env.WorldSize}: not a valid local rank");
        if (env.AddressSource == "default" && env.LocalWorldSize < env.WorldSize) throw SpansHostsWithoutAddress(env);
        return env;
    }

    /// <summary>torchrun, and our <c>launch</c>: MASTER_ADDR is always set; torchrun's agent may already hold MASTER_PORT.</summary>
    private static LaunchEnvironment? Torchrun(Func<string, string?> read)
    {
        if (Int(read, "RANK") is not { } rank || Int(read, "WORLD_SIZE") is not { } world) return null;
        int localWorld = Int(read, "LOCAL_WORLD_SIZE") ?? world;
        var (port, portSource) = Port(read);
        // torchrun's elastic agent serves its own store on MASTER_PORT and tells its workers to share it
        // (TORCHELASTIC_USE_AGENT_STORE=True); ours speaks another protocol, so it takes the next port.
        if (read("TORCHELASTIC_USE_AGENT_STORE") == "True")
        {
            if (port == 65535) throw new InvalidOperationException("torchrun's agent holds MASTER_PORT=65535 and our store needs the next port; pass torchrun a lower --master_port");
            port++;
            portSource = "MASTER_PORT+1, torchrun's agent holds MASTER_PORT";
        }
        RankPlacement? placement = null;
        if (Int(read, "GROUP_WORLD_SIZE") is { } nodes && nodes >= 1 && (long)nodes * localWorld == world)
            placement = RankPlacement.Uniform(nodes, localWorld, node => $"node_rank {node}");
        return Make(read, rank, world, Int(read, "LOCAL_RANK") ?? rank, localWorld, "torchrun", port, portSource) with { Placement = placement };
    }

    /// <summary>OpenMPI's mpirun: only the rank coordinates; the store address must come from MASTER_ADDR across hosts.</summary>
    private static LaunchEnvironment? OpenMpi(Func<string, string?> read)
    {
        if (Int(read, "OMPI_COMM_WORLD_RANK") is not { } rank || Int(read, "OMPI_COMM_WORLD_SIZE") is not { } world) return null;
        var (port, portSource) = Port(read);
        return Make(read, rank, world, Int(read, "OMPI_COMM_WORLD_LOCAL_RANK") ?? rank, Int(read, "OMPI_COMM_WORLD_LOCAL_SIZE") ?? world, "mpirun", port, portSource);
    }

    /// <summary>An environment whose address is MASTER_ADDR when set, else the default.</summary>
    internal static LaunchEnvironment Make(Func<string, string?> read, int rank, int world, int localRank, int localWorld, string launcher, int port, string portSource)
    {
        string? address = Text(read, "MASTER_ADDR");
        return new(rank, world, localRank, localWorld, address ?? DefaultAddress, port, launcher)
        {
            AddressSource = address is null ? "default" : "MASTER_ADDR",
            PortSource = portSource,
        };
    }

    /// <summary>MASTER_PORT when set (checked to be a port), else torchrun's default.</summary>
    internal static (int Port, string Source) Port(Func<string, string?> read)
    {
        if (Text(read, "MASTER_PORT") is not { } text) return (DefaultPort, "default");
        return int.TryParse(text, out int port) && port is >= 1 and <= 65535 ? (port, "MASTER_PORT")
            : throw new FormatException($"MASTER_PORT='{text}' is not a TCP port (1-65535); set it to a free port on rank 0's host, the same on every rank");
    }

    internal static int? Int(Func<string, string?> read, string name) => int.TryParse(read(name), out int v) ? v : null;

    internal static string? Text(Func<string, string?> read, string name) => read(name) is { } v && !string.IsNullOrWhiteSpace(v) ? v.Trim() : null;

    // Every rank of a multi-host job gets this at once, instead of knocking on its own loopback until the timeout.
    private static InvalidOperationException SpansHostsWithoutAddress(LaunchEnvironment env)
    {
        string what = $"rank {env.Rank} of {env.WorldSize}: {env.Launcher} started the ranks on several hosts ({env.LocalWorldSize} on this one) " +
                      "but no store address is set, so each host would look for rank 0's rendezvous store on itself";
        return new InvalidOperationException(env.Launcher switch
        {
            "mpirun" => $"{what}; add -x MASTER_ADDR=<rank 0's host> -x MASTER_PORT={env.MasterPort} to the mpirun command line " +
                        "(-x MASTER_ADDR=$(hostname) when rank 0 runs where you type mpirun)",
            "slurm" => $"{what}; no SLURM_STEP_NODELIST, SLURM_NODELIST or SLURM_JOB_NODELIST is set: export MASTER_ADDR=<rank 0's host> (and MASTER_PORT) before srun",
            _ => $"{what}; set MASTER_ADDR=<rank 0's host> and MASTER_PORT={env.MasterPort} on every rank",
        });
    }
}
