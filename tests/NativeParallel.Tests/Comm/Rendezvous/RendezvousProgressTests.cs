using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace NativeParallel.Tests.Comm.Rendezvous;

/// <summary>
/// The rendezvous as processes through the CLI: a rank started without its peers says what it waits for and
/// fails naming them; mpirun across hosts without MASTER_ADDR fails at once; a simulated Slurm job on this host
/// finds its store from the node list and the job id; INFO shows each join.
/// </summary>
public sealed class RendezvousProgressTests
{
    // Launcher variables of the test host's own environment must not leak into the simulated jobs.
    private static readonly string[] LauncherVariables =
    [
        "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_USE_AGENT_STORE",
        "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE",
        "SLURM_PROCID", "SLURM_NTASKS", "SLURM_NPROCS", "SLURM_STEP_NUM_TASKS", "SLURM_LOCALID", "SLURM_NODEID", "SLURM_JOB_ID",
        "SLURM_STEP_NODELIST", "SLURM_NODELIST", "SLURM_JOB_NODELIST", "SLURM_STEP_TASKS_PER_NODE", "SLURM_TASKS_PER_NODE",
        "SLURM_NTASKS_PER_NODE", "SLURM_LAUNCH_NODE_IPADDR", "SLURM_DISTRIBUTION", "NATIVEPARALLEL_DEBUG", "NATIVEPARALLEL_TRANSPORT",
    ];

    private static readonly string[] SmallBench = ["bench", "collectives", "-b", "1K", "-e", "1K", "-n", "1", "-w", "0"];

    private static Dictionary<string, string> Quick(int timeoutSeconds) => new()
    {
        ["NATIVEPARALLEL_TIMEOUT_S"] = timeoutSeconds.ToString(),
        ["NATIVEPARALLEL_RENDEZVOUS_PROGRESS_S"] = "0.5",
    };

    [Fact]
    public void Rank0AloneSaysWhoIsMissingAndFailsNamingThem()
    {
        int port = FreePort();
        var env = Quick(4);
        foreach (var (k, v) in new Dictionary<string, string> { ["RANK"] = "0", ["WORLD_SIZE"] = "2", ["LOCAL_RANK"] = "0", ["LOCAL_WORLD_SIZE"] = "2", ["MASTER_ADDR"] = "127.0.0.1", ["MASTER_PORT"] = port.ToString() })
            env[k] = v;
        var (code, output) = Cli(env, SmallBench);
        Assert.NotEqual(0, code);
        Assert.Contains($"NativeParallel rendezvous: rank 0 of 2 waits at the store 127.0.0.1:{port} (address from MASTER_ADDR, port from MASTER_PORT): 1 of 2 ranks joined, missing rank 1;", output);
        Assert.Matches(@"nativeparallel: TimeoutException: rendezvous at 127\.0\.0\.1:\d+ .*: rank 0 of 2 waited 4 s \(NATIVEPARALLEL_TIMEOUT_S\) and 1 of 2 ranks joined; missing rank 1;", output);
    }

    [Fact]
    public void ARankWhoseStoreNeverComesSaysWhereItLooksAndNamesRank0()
    {
        int port = FreePort();
        // Slurm's view of rank 1 of a 2-node job, with this host as the first node: rank 0 should be here and is not.
        var env = Quick(4);
        foreach (var (k, v) in new Dictionary<string, string> { ["SLURM_PROCID"] = "1", ["SLURM_NTASKS"] = "2", ["SLURM_LOCALID"] = "0", ["SLURM_NODEID"] = "1",
                     ["SLURM_NODELIST"] = "localhost,farhost", ["SLURM_TASKS_PER_NODE"] = "1(x2)", ["MASTER_PORT"] = port.ToString() })
            env[k] = v;
        var (code, output) = Cli(env, SmallBench);
        Assert.NotEqual(0, code);
        Assert.Contains($"NativeParallel rendezvous: rank 1 of 2 waits for rank 0's store at localhost:{port} (address from first node of SLURM_NODELIST, port from MASTER_PORT):", output);
        Assert.Contains("rank 0 (expected on localhost) is missing", output);
    }

    [Fact]
    public void MpirunAcrossHostsWithoutMasterAddrFailsAtOnceWithTheFlags()
    {
        var env = new Dictionary<string, string> { ["OMPI_COMM_WORLD_RANK"] = "2", ["OMPI_COMM_WORLD_SIZE"] = "4", ["OMPI_COMM_WORLD_LOCAL_RANK"] = "0",
            ["OMPI_COMM_WORLD_LOCAL_SIZE"] = "2", ["NATIVEPARALLEL_TIMEOUT_S"] = "600" };
        var (code, output) = Cli(env, SmallBench);
        Assert.Equal(1, code);
        Assert.Contains("-x MASTER_ADDR=<rank 0's host> -x MASTER_PORT=29500", output);
        Assert.DoesNotContain("rendezvous:", output); // it never started waiting
    }

    [Fact]
    public void ASlurmJobOnThisHostFindsItsStoreFromTheNodeListAndJobId()
    {
        // Two tasks of one node named localhost; the port comes from the job id (kept clear of a busy port).
        int job = Enumerable.Range(0, 50).Select(_ => Random.Shared.Next(1, 1_000_000)).First(j => PortIsFree(15000 + j % 10000));
        var ranks = Enumerable.Range(0, 2).Select(r =>
        {
            var env = Quick(60);
            foreach (var (k, v) in new Dictionary<string, string> { ["SLURM_PROCID"] = r.ToString(), ["SLURM_NTASKS"] = "2", ["SLURM_LOCALID"] = r.ToString(),
                         ["SLURM_NODEID"] = "0", ["SLURM_JOB_ID"] = job.ToString(), ["SLURM_STEP_NODELIST"] = "localhost", ["SLURM_STEP_TASKS_PER_NODE"] = "2" })
                env[k] = v;
            return Task.Run(() => Cli(env, SmallBench));
        }).ToArray();
        var results = ranks.Select(t => t.Result).ToArray();
        Assert.True(results.All(r => r.Code == 0), string.Join("\n---\n", results.Select(r => r.Output)));
        Assert.Contains("2 ranks over shm", results[0].Output);
    }

    [Fact]
    public void InfoShowsEachJoin()
    {
        var (code, output) = Cli(new() { ["NATIVEPARALLEL_DEBUG"] = "INFO" }, ["launch", "-n", "2", "--", "dotnet", CliPath, .. SmallBench]);
        Assert.True(code == 0, output);
        Assert.Matches(@"\[rank 0\] NativeParallel INFO rendezvous: rank [01] from \S+ joined \(1 of 2\)", output);
        Assert.Matches(@"\[rank 0\] NativeParallel INFO rendezvous: rank [01] from \S+ joined \(2 of 2\)", output);
    }

    private static string CliPath => Path.Combine(AppContext.BaseDirectory, "NativeParallel.Cli.dll");

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private static bool PortIsFree(int port)
    {
        try
        {
            using var listener = new TcpListener(IPAddress.Any, port);
            listener.Start();
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    private static (int Code, string Output) Cli(Dictionary<string, string> environment, string[] args)
    {
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        info.ArgumentList.Add(CliPath);
        foreach (string a in args) info.ArgumentList.Add(a);
        foreach (string name in LauncherVariables) info.Environment.Remove(name);
        foreach (var (k, v) in environment) info.Environment[k] = v;
        using var process = Process.Start(info)!;
        var error = process.StandardError.ReadToEndAsync();
        var output = process.StandardOutput.ReadToEndAsync();
        // Far above every timeout these runs set: past it, the rank hangs, which is the failure under test.
        if (!process.WaitForExit(TimeSpan.FromSeconds(120)))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"nativeparallel {string.Join(' ', args)} still running after 120 s:\n{output.Result}{error.Result}");
        }
        return (process.ExitCode, output.Result + error.Result);
    }
}
