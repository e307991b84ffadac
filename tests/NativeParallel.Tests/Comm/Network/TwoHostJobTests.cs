using System.Diagnostics;
using System.Text.RegularExpressions;

namespace NativeParallel.Tests.Comm.Network;

/// <summary>
/// A job on two hosts (network namespaces joined by a veth link, <see cref="TwoHostNetwork"/>), two ranks on
/// each, started as Slurm would start them: a node list naming both hosts, resolved through a hosts file the test
/// writes (NATIVEPARALLEL_HOSTS_FILE), the store port from the job id. The namespaces share one kernel, hostname and
/// /dev/shm, so each host's ranks get NATIVEPARALLEL_HOST_ID (what real hosts get from hostname and boot id).
/// Each pair of ranks must take its own transport: shared memory inside a host, TCP across the link.
/// </summary>
public sealed class TwoHostJobTests
{
    private static readonly TimeSpan JobLimit = TimeSpan.FromMinutes(4);

    [Fact]
    public void BenchCollectivesIsExactWithSharedMemoryInsideEachHostAndTcpBetween()
    {
        using var network = TwoHostNetwork.Create();
        var outputs = RunJob(network, ["bench", "collectives", "--op", "all_reduce", "-b", "1K", "-e", "1M", "-f", "32", "-n", "2", "-w", "1"]);
        Assert.Contains("# nativeparallel bench collectives: all_reduce, 4 ranks over shm+tcp", outputs[0]);
        Assert.Contains("# Out of bounds values : 0 OK", outputs[0]);
        // Each rank's links as it made them: its host's other rank on shared memory, the other host's two on TCP.
        for (int r = 0; r < 4; r++)
        {
            int mate = r ^ 1;
            string remote = r < 2 ? "2,3" : "0,1";
            Assert.Contains($"bench: rank {r} of 4 links to ranks {mate} over shm (same host) and to ranks {remote} over tcp", outputs[r]);
        }
        // The TCP traffic really crossed the link: 1 MB all-reduces (3 runs, in and out of place) put megabytes on it.
        for (int h = 0; h < 2; h++)
            Assert.True(network.TransmittedBytes(h) > 2_000_000, $"host {h} sent only {network.TransmittedBytes(h)} bytes on the link");
    }

    [Fact]
    public void ATensorAndDataParallelRunGivesTheSingleHostTokens()
    {
        using var network = TwoHostNetwork.Create();
        var (code, single) = SingleHost(["run", "--device", "cpu", "--strategy", "none"]);
        Assert.True(code == 0, single);
        var outputs = RunJob(network, ["run", "--device", "cpu", "--strategy", "tp=2,dp=2"]);
        Assert.Contains("strategy tp=2,dp=2 on 4 processes over shm+tcp", outputs[0]);
        Assert.Contains("greedy tokens identical, ranks bitwise identical: ok", outputs[0]);
        Assert.Equal(Tokens(single), Tokens(outputs[0]));
        // Tensor-parallel pairs sit inside a host (shared memory), data-parallel pairs across the link (TCP).
        Assert.Contains("run: rank 0 split into 'tp0' as rank 0 of 2 (members 0,1) over shm", outputs[0]);
        Assert.Contains("run: rank 2 split into 'tp1' as rank 0 of 2 (members 2,3) over shm", outputs[2]);
        Assert.Contains("run: rank 0 split into 'dp0' as rank 0 of 2 (members 0,2) over tcp", outputs[0]);
        Assert.Contains("run: rank 3 split into 'dp1' as rank 1 of 2 (members 1,3) over tcp", outputs[3]);
    }

    /// <summary>Ranks 0-1 on the first host, 2-3 on the second, as srun's block distribution puts them; every rank must exit 0.</summary>
    private static string[] RunJob(TwoHostNetwork network, string[] args)
    {
        string hostsFile = Path.Combine(Path.GetTempPath(), $"np-hosts-{Guid.NewGuid():N}");
        File.WriteAllText(hostsFile, $"# the two namespaces of this test\n{TwoHostNetwork.Addresses[0]} nphost1\n{TwoHostNetwork.Addresses[1]} nphost2\n");
        int job = Random.Shared.Next(1, 1_000_000);
        var ranks = new List<TwoHostNetwork.RankProcess>();
        try
        {
            for (int r = 0; r < 4; r++)
            {
                int host = r / 2;
                ranks.Add(network.Start(host, new Dictionary<string, string>
                {
                    ["SLURM_PROCID"] = r.ToString(), ["SLURM_NTASKS"] = "4", ["SLURM_LOCALID"] = (r % 2).ToString(), ["SLURM_NODEID"] = host.ToString(),
                    ["SLURM_JOB_ID"] = job.ToString(), ["SLURM_STEP_NODELIST"] = "nphost[1-2]", ["SLURM_STEP_TASKS_PER_NODE"] = "2(x2)",
                    ["NATIVEPARALLEL_HOSTS_FILE"] = hostsFile, ["NATIVEPARALLEL_HOST_ID"] = $"nphost{host + 1}",
                    ["NATIVEPARALLEL_TIMEOUT_S"] = "120", ["NATIVEPARALLEL_DEBUG"] = "INFO",
                }, args));
            }
            var clock = Stopwatch.StartNew();
            foreach (var rank in ranks)
                Assert.True(rank.WaitForExit(TwoHostNetwork.Left(JobLimit, clock)), $"a rank still runs after {JobLimit}:\n{All(ranks)}");
            Assert.True(ranks.All(r => r.Process.ExitCode == 0), All(ranks));
            return ranks.Select(r => r.Output).ToArray();
        }
        finally
        {
            foreach (var rank in ranks) rank.Dispose();
            File.Delete(hostsFile);
        }
    }

    private static string All(IEnumerable<TwoHostNetwork.RankProcess> ranks) =>
        string.Join("\n", ranks.Select((r, i) => $"--- rank {i} (exit {(r.Process.HasExited ? r.Process.ExitCode : "running")}):\n{r.Output}"));

    private static string Tokens(string output)
    {
        var m = Regex.Match(output, @"(?m)^tokens  ([0-9 ]+?)\r?$");
        Assert.True(m.Success, $"no tokens line in:\n{output}");
        return m.Groups[1].Value;
    }

    // The single-host run, as a plain process on this host.
    private static (int Code, string Output) SingleHost(string[] args) => ProcessCollectiveTests.Cli(null, args);
}
