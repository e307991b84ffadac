using System.Diagnostics;

namespace NativeParallel.Tests.Parallel;

/// <summary>Every strategy with ranks as separate processes (nativeparallel launch ... run --strategy), over shared memory and once over TCP.</summary>
public sealed class ProcessStrategyTests
{
    [Theory]
    [InlineData("tp=2", "shm")]
    [InlineData("pp=2", "shm")]
    [InlineData("sp=2", "shm")]
    [InlineData("dp=2", "shm")]
    [InlineData("tp=2,pp=2", "shm")]
    [InlineData("tp=2,sp=2", "shm")]
    [InlineData("tp+sp=2", "shm")]
    [InlineData("ep=2", "shm")]
    [InlineData("tp=2", "tcp")]
    public void MatchesTheSingleDeviceRunAcrossProcesses(string strategy, string transport)
    {
        int ranks = NativeParallel.Parallel.Strategy.Parse(strategy).Ranks;
        string cli = Path.Combine(AppContext.BaseDirectory, "NativeParallel.Cli.dll");
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string a in new[] { cli, "launch", "-n", ranks.ToString(), "--transport", transport, "--", "dotnet", cli, "run", "--device", "cpu", "--strategy", strategy })
            info.ArgumentList.Add(a);
        using var process = Process.Start(info)!;
        var error = process.StandardError.ReadToEndAsync();
        string output = process.StandardOutput.ReadToEnd();
        Assert.True(process.WaitForExit(TimeSpan.FromMinutes(3)), "the launched run did not finish in 3 minutes");
        output += error.Result;
        Assert.True(process.ExitCode == 0, output);
        Assert.Contains($"[rank 0] strategy {strategy} on {ranks} processes over {transport}", output);
        Assert.Contains("greedy tokens identical, ranks bitwise identical: ok", output);
    }
}
