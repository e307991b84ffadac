namespace NativeParallel.Comm.Rendezvous;

/// <summary>
/// A rank started by Slurm's srun. Coordinates: rank SLURM_PROCID, world SLURM_STEP_NUM_TASKS / SLURM_NTASKS /
/// SLURM_NPROCS, local rank SLURM_LOCALID, local world this node's entry (SLURM_NODEID) of
/// SLURM_STEP_TASKS_PER_NODE / SLURM_TASKS_PER_NODE (<c>2(x3),1</c>), else SLURM_NTASKS_PER_NODE.
/// Store address, first found wins: MASTER_ADDR; the first host of SLURM_STEP_NODELIST / SLURM_NODELIST /
/// SLURM_JOB_NODELIST, where srun puts task 0 under its block and cyclic distributions; SLURM_LAUNCH_NODE_IPADDR
/// (the node that ran srun), only when no node list is set, because after <c>salloc</c> on a login node srun runs
/// outside the allocation and no rank is there. Port: MASTER_PORT, else <see cref="PortOfJob"/>(SLURM_JOB_ID).
/// </summary>
public static class SlurmEnvironment
{
    /// <summary>The lowest port derived from a job id: above the well-known and common service ports.</summary>
    public const int JobPortBase = 15000;

    /// <summary>How many ports job ids map onto: 15000-24999 stays below Linux's ephemeral range (32768-60999), so no outgoing connection holds it.</summary>
    public const int JobPortSpan = 10000;

    private static readonly string[] NodeLists = ["SLURM_STEP_NODELIST", "SLURM_NODELIST", "SLURM_JOB_NODELIST"];
    private static readonly string[] TasksPerNode = ["SLURM_STEP_TASKS_PER_NODE", "SLURM_TASKS_PER_NODE"];

    /// <summary>
    /// The store port of job <paramref name="jobId"/>: two jobs sharing a node get different ports unless their ids
    /// differ by a multiple of <see cref="JobPortSpan"/>. Concurrent steps of one job share it; give them MASTER_PORT.
    /// </summary>
    public static int PortOfJob(long jobId) => JobPortBase + (int)(Math.Abs(jobId) % JobPortSpan);

    /// <summary>Reads srun's environment; null when SLURM_PROCID or the task count is missing.</summary>
    public static LaunchEnvironment? Read(Func<string, string?> read)
    {
        if (LaunchEnvironment.Int(read, "SLURM_PROCID") is not { } rank) return null;
        if ((LaunchEnvironment.Int(read, "SLURM_STEP_NUM_TASKS") ?? LaunchEnvironment.Int(read, "SLURM_NTASKS") ?? LaunchEnvironment.Int(read, "SLURM_NPROCS")) is not { } world)
            return null;
        var (nodeListName, nodes) = FirstSet(read, NodeLists);
        var (tasksName, tasksText) = FirstSet(read, TasksPerNode);
        IReadOnlyList<int>? tasks = tasksText is null ? null : Parse(tasksName!, tasksText, SlurmTasksPerNode.Expand);
        int? nodeId = LaunchEnvironment.Int(read, "SLURM_NODEID");
        int localWorld = (tasks is not null && nodeId is { } id && id >= 0 && id < tasks.Count ? tasks[id] : (int?)null)
                         ?? LaunchEnvironment.Int(read, "SLURM_NTASKS_PER_NODE")
                         ?? (tasks is { Count: 1 } ? tasks[0] : world);

        int localRank = LaunchEnvironment.Int(read, "SLURM_LOCALID") ?? rank;
        // A job-wide count read inside a smaller step can be too small for this task; then the count is unknown.
        if (localWorld <= localRank) localWorld = world;

        var (port, portSource) = LaunchEnvironment.Port(read);
        if (portSource == "default" && long.TryParse(read("SLURM_JOB_ID"), out long job))
            (port, portSource) = (PortOfJob(job), $"SLURM_JOB_ID {job}");
        var env = LaunchEnvironment.Make(read, rank, world, localRank, localWorld, "slurm", port, portSource);

        IReadOnlyList<string>? hosts = nodes is null ? null : Parse(nodeListName!, nodes, SlurmHostList.Expand);
        if (env.AddressSource == "default" && hosts is not null)
            env = env with { MasterAddress = hosts[0], AddressSource = $"first node of {nodeListName}" };
        else if (env.AddressSource == "default" && LaunchEnvironment.Text(read, "SLURM_LAUNCH_NODE_IPADDR") is { } launchNode)
            env = env with { MasterAddress = launchNode, AddressSource = "SLURM_LAUNCH_NODE_IPADDR" };
        return env with { Placement = Place(hosts, tasks, world, LaunchEnvironment.Text(read, "SLURM_DISTRIBUTION")) };
    }

    // Known only when the node list and the task counts agree with each other and with the world size.
    private static RankPlacement? Place(IReadOnlyList<string>? hosts, IReadOnlyList<int>? tasks, int world, string? distribution)
    {
        if (hosts is null || tasks is null || hosts.Count != tasks.Count || tasks.Sum(t => (long)t) != world) return null;
        return (distribution?.Split(':')[0].ToLowerInvariant()) switch
        {
            null or "block" => RankPlacement.Block(hosts, tasks),
            "cyclic" => RankPlacement.Cyclic(hosts, tasks),
            _ => null, // plane, arbitrary: the layout is not in the environment
        };
    }

    private static (string? Name, string? Value) FirstSet(Func<string, string?> read, string[] names)
    {
        foreach (string name in names)
            if (LaunchEnvironment.Text(read, name) is { } value) return (name, value);
        return (null, null);
    }

    private static T Parse<T>(string name, string value, Func<string, T> parse)
    {
        try
        {
            return parse(value);
        }
        catch (FormatException e)
        {
            throw new FormatException($"{name}: {e.Message}", e);
        }
    }
}
