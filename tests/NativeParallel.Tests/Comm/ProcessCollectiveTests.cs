using System.Diagnostics;

namespace NativeParallel.Tests.Comm;

/// <summary>
/// Ranks as separate processes, through the CLI: every collective over shared memory and TCP with exact checks
/// (bench collectives -c 1), a launch through Debian's mpirun, and a rank that dies mid-run.
/// </summary>
public sealed class ProcessCollectiveTests
{
    private static readonly string[] Ops = ["all_reduce", "all_gather", "reduce_scatter", "broadcast", "reduce", "all_to_all", "sendrecv"];

    public static TheoryData<string, string> OpsAndTransports => new(from t in new[] { "shm", "tcp" } from op in Ops select (op, t));

    [Theory]
    [MemberData(nameof(OpsAndTransports))]
    public void EveryCollectiveIsExactAcrossProcesses(string op, string transport)
    {
        var (code, output) = Cli(null, "bench", "collectives", "--op", op, "--ranks", "3", "--transport", transport,
            "-b", "0", "-e", "1M", "-f", "37", "-n", "2", "-w", "1", "-d", op == "all_reduce" ? "bfloat16" : "float", "-o", op == "reduce" ? "min" : "sum");
        Assert.True(code == 0, output);
        Assert.Contains($"3 ranks over {transport}", output);
        Assert.Contains("# Out of bounds values : 0 OK", output);
    }

    [Theory]
    [InlineData("all_reduce")]
    [InlineData("all_to_all")]
    public void SeveralSocketsPerPeerCarryOneStream(string op)
    {
        // 3 sockets per peer, 64 KiB slices dealt round-robin: messages up to 4 MB cross every socket many times.
        var (code, output) = Cli(new() { ["NATIVEPARALLEL_SOCKETS"] = "3" }, "bench", "collectives", "--op", op, "--ranks", "3",
            "--transport", "tcp", "-b", "1000", "-e", "4M", "-f", "64", "-n", "2", "-w", "1");
        Assert.True(code == 0, output);
        Assert.Contains("# Out of bounds values : 0 OK", output);
    }

    [Fact]
    public void LaunchRunsRanksWithThePrefixedOutput()
    {
        var (code, output) = Cli(null, "launch", "-n", "2", "--", "dotnet", CliPath, "bench", "collectives", "-b", "1K", "-e", "1K", "-n", "1", "-w", "0");
        Assert.True(code == 0, output);
        Assert.Contains("[rank 0] # nativeparallel bench collectives: all_reduce, 2 ranks over shm", output);
    }

    [Fact]
    public void MpirunLaunchesRanksThroughItsOwnEnvironment()
    {
        if (!File.Exists("/usr/bin/mpirun"))
        {
            if (Environment.GetEnvironmentVariable("NATIVEPARALLEL_REQUIRE")?.Contains("mpi") == true) Assert.Fail("NATIVEPARALLEL_REQUIRE lists mpi but /usr/bin/mpirun is missing (apt-get install openmpi-bin)");
            Assert.Skip("needs OpenMPI's mpirun (Debian openmpi-bin)");
        }
        int port = 20000 + Random.Shared.Next(20000);
        var (code, output) = Run("/usr/bin/mpirun", new() { ["OMPI_ALLOW_RUN_AS_ROOT"] = "1", ["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1" },
            "-n", "2", "--oversubscribe", "-x", $"MASTER_PORT={port}", "dotnet", CliPath, "bench", "collectives", "-b", "4K", "-e", "64K", "-f", "16", "-n", "2", "-w", "1");
        Assert.True(code == 0, output);
        Assert.Contains("2 ranks over shm", output);
        Assert.Contains("# Out of bounds values : 0 OK", output);
    }

    [Theory]
    [InlineData("shm")]
    [InlineData("tcp")]
    public void ADeadRankFailsTheOthersNamingIt(string transport)
    {
        var clock = Stopwatch.StartNew();
        var (code, output) = Cli(new() { ["NATIVEPARALLEL_FAULT"] = "exit:1:6", ["NATIVEPARALLEL_TIMEOUT_S"] = "60" },
            "bench", "collectives", "--ranks", "3", "--transport", transport, "-b", "64K", "-e", "64K", "-n", "5", "-w", "1");
        Assert.NotEqual(0, code);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(50), $"the survivors took {clock.Elapsed} to notice (timeout is 60 s)");
        Assert.Contains("NATIVEPARALLEL_FAULT: rank 1 exits at", output);
        Assert.Matches(@"all_reduce #\d+ in group 'bench' failed on rank [02] of 3: .*rank 1", output);
    }

    private static string CliPath => Path.Combine(AppContext.BaseDirectory, "NativeParallel.Cli.dll");

    internal static (int Code, string Output) Cli(Dictionary<string, string>? environment, params string[] args) =>
        Run("dotnet", environment, [CliPath, .. args]);

    internal static (int Code, string Output) Run(string file, Dictionary<string, string>? environment, params string[] args)
    {
        var info = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string a in args) info.ArgumentList.Add(a);
        if (environment is not null) foreach (var (k, v) in environment) info.Environment[k] = v;
        using var process = Process.Start(info)!;
        var error = process.StandardError.ReadToEndAsync();
        string output = process.StandardOutput.ReadToEnd();
        if (!process.WaitForExit(TimeSpan.FromMinutes(3)))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"{file} {string.Join(' ', args)} did not finish in 3 minutes:\n{output}");
        }
        return (process.ExitCode, output + error.Result);
    }
}
