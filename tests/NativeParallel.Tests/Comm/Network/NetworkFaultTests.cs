using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;

namespace NativeParallel.Tests.Comm.Network;

/// <summary>
/// The collectives over a real network link between two hosts (network namespaces, <see cref="TwoHostNetwork"/>)
/// with its bandwidth limited by tc's token bucket (tbf; netem is not in every kernel): exact, and never faster
/// than the limit (so the bytes did cross the link); then the link taken down in the middle of a collective:
/// every rank fails with a CollectiveException naming a rank across the link, within the timeout, and no process
/// is left behind. Ranks are started as torchrun starts them, MASTER_ADDR being the first host's link address.
/// </summary>
public sealed class NetworkFaultTests
{
    private const string Rate = "100mbit";
    private const double RateGBps = 100e6 / 8 / 1e9;

    [Fact]
    public void CollectivesAreExactOverARateLimitedLinkAndNoFasterThanIt()
    {
        using var network = TwoHostNetwork.Create();
        network.RateLimit(Rate);
        var ranks = Enumerable.Range(0, 2).Select(r => network.Start(r, Torchrun(r, 2, perHost: 1, timeoutSeconds: 120),
            "bench", "collectives", "--transport", "tcp", "--op", "all_reduce", "-b", "256K", "-e", "4M", "-f", "4", "-n", "2", "-w", "1")).ToList();
        try
        {
            foreach (var rank in ranks) Assert.True(rank.WaitForExit(TimeSpan.FromMinutes(3)), $"a rank still runs after 3 minutes:\n{All(ranks)}");
            Assert.True(ranks.All(r => r.Process.ExitCode == 0), All(ranks));
            string output = ranks[0].Output;
            Assert.Contains("# nativeparallel bench collectives: all_reduce, 2 ranks over tcp", output);
            Assert.Contains("# Out of bounds values : 0 OK", output);
            // The largest message's bus bandwidth (two ranks: each sends the whole buffer once) cannot beat the
            // limit; a little over it is the bucket's 64 KB burst.
            var row = Regex.Match(output, @"(?m)^\s+4194304\s+\d+\s+float\s+sum\s+-1\s+(\S+)\s+(\S+)\s+(\S+)\s+0\s+(\S+)\s+(\S+)\s+(\S+)\s+0\s*$");
            Assert.True(row.Success, $"no 4 MB row with 0 wrong in:\n{output}");
            double busbw = double.Parse(row.Groups[3].Value, CultureInfo.InvariantCulture);
            Assert.True(busbw > 0 && busbw <= RateGBps * 1.2, $"busbw {busbw} GB/s over a link limited to {RateGBps} GB/s:\n{output}");
        }
        finally
        {
            foreach (var rank in ranks) rank.Dispose();
        }
    }

    [Fact]
    public void ALinkTakenDownMidCollectiveFailsEveryRankNamingAPeerAcrossItAndLeavesNoProcess()
    {
        const int timeoutSeconds = 10;
        using var network = TwoHostNetwork.Create();
        // At the limit a 4 MB all-reduce takes a quarter of a second or more: the link goes down inside one.
        network.RateLimit(Rate);
        var ranks = Enumerable.Range(0, 4).Select(r => network.Start(r / 2, Torchrun(r, 4, perHost: 2, timeoutSeconds),
            "bench", "collectives", "--op", "all_reduce", "-b", "4M", "-e", "4M", "-n", "100000", "-w", "1")).ToList();
        try
        {
            Assert.True(ranks[0].WaitForLine("4 ranks over shm+tcp", TimeSpan.FromMinutes(2)), $"the job did not start:\n{All(ranks)}");
            Thread.Sleep(1000);
            Assert.True(ranks.All(r => !r.Process.HasExited), $"a rank ended before the link went down:\n{All(ranks)}");
            network.TakeLinkDown(0);
            var down = Stopwatch.StartNew();

            // Each rank reports once it has failed and cleaned up: the timeout, then at most the store's 10 s grace
            // and rank 0's 10 s shutdown wait; far below the limit here unless something hangs.
            var limit = TimeSpan.FromSeconds(timeoutSeconds + 60);
            var exited = ranks.Select(r => r.WaitForExit(limit - down.Elapsed)).ToArray();
            string all = All(ranks);
            for (int r = 0; r < 4; r++)
            {
                Assert.True(exited[r], $"rank {r} still ran {limit.TotalSeconds:F0} s after the link went down (killed):\n{all}");
                Assert.NotEqual(0, ranks[r].Process.ExitCode);
                // The peer named is across the link: what this rank waited on, or what the rank that aborted it waited on.
                string across = r < 2 ? "[23]" : "[01]";
                Assert.Matches($@"nativeparallel: CollectiveException: all_reduce #\d+ in group 'bench' failed on rank {r} of 4: .*rank {across}\b", ranks[r].Output);
            }
            Assert.Contains($"timed out after {timeoutSeconds} s", all);
            for (int h = 0; h < 2; h++) Assert.Empty(network.Pids(h));
        }
        finally
        {
            foreach (var rank in ranks) rank.Dispose();
        }
    }

    /// <summary>torchrun's variables for rank <paramref name="rank"/>, <paramref name="perHost"/> ranks a host; the store on the first host's link address.</summary>
    private static Dictionary<string, string> Torchrun(int rank, int world, int perHost, int timeoutSeconds) => new()
    {
        ["RANK"] = rank.ToString(), ["WORLD_SIZE"] = world.ToString(), ["LOCAL_RANK"] = (rank % perHost).ToString(),
        ["LOCAL_WORLD_SIZE"] = perHost.ToString(), ["GROUP_WORLD_SIZE"] = (world / perHost).ToString(),
        ["MASTER_ADDR"] = TwoHostNetwork.Addresses[0], ["MASTER_PORT"] = "29500",
        // Both namespaces share this kernel's hostname and boot id: the test says which "host" each rank is on.
        ["NATIVEPARALLEL_HOST_ID"] = $"nphost{rank / perHost + 1}", ["NATIVEPARALLEL_TIMEOUT_S"] = timeoutSeconds.ToString(),
    };

    private static string All(IEnumerable<TwoHostNetwork.RankProcess> ranks) =>
        string.Join("\n", ranks.Select((r, i) => $"--- rank {i} (exit {(r.Process.HasExited ? r.Process.ExitCode : "running")}):\n{r.Output}"));
}
