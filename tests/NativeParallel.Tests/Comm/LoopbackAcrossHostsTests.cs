namespace NativeParallel.Tests.Comm;

/// <summary>Ranks on different hosts whose store is on a loopback address: every rank fails at once, saying why.</summary>
public sealed class LoopbackAcrossHostsTests
{
    [Fact]
    public void EveryRankFailsAtOnceNamingTheLoopbackAddressAndTheWayOut()
    {
        int port = 20000 + Random.Shared.Next(10000);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var ranks = Enumerable.Range(0, 2).Select(r => Task.Run(() => ProcessCollectiveTests.Cli(new()
        {
            ["RANK"] = r.ToString(), ["WORLD_SIZE"] = "2", ["LOCAL_RANK"] = "0", ["LOCAL_WORLD_SIZE"] = "1", ["MASTER_ADDR"] = "127.0.0.1",
            ["MASTER_PORT"] = port.ToString(), ["NATIVEPARALLEL_HOST_ID"] = $"host{r}", ["NATIVEPARALLEL_TIMEOUT_S"] = "60",
        }, "bench", "collectives", "-b", "1K", "-e", "1K", "-n", "1", "-w", "0"))).ToArray();
        for (int r = 0; r < 2; r++)
        {
            var (code, output) = ranks[r].Result;
            Assert.Equal(1, code);
            Assert.Contains($"nativeparallel: InvalidOperationException: tcp: rank {r} reaches the store at a loopback address (127.0.0.1), which its peers " +
                            "on other hosts cannot reach; set MASTER_ADDR to rank 0's network address, or NATIVEPARALLEL_SOCKET_IFNAME to the interface to use", output);
        }
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(50), $"the ranks took {clock.Elapsed} to fail (the timeout is 60 s)");
    }
}
