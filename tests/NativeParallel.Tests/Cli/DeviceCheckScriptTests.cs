using System.Diagnostics;

namespace NativeParallel.Tests.Cli;

/// <summary>
/// scripts/device-check.sh, dry-run here so it cannot rot before a GPU machine runs it: what it leaves under $OUT
/// (the GPU machine returns at most 8 files), its report, and its preflight stopping early without a GPU.
/// </summary>
public sealed class DeviceCheckScriptTests : IDisposable
{
    private readonly string _out = Directory.CreateTempSubdirectory("np-device-check-").FullName;

    public void Dispose() => Directory.Delete(_out, recursive: true);

    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "scripts", "device-check.sh"))) return dir.FullName;
        throw new DirectoryNotFoundException($"no scripts/device-check.sh above {AppContext.BaseDirectory}");
    }

    private (int Code, string Output) RunScript(string device, string skip)
    {
        var info = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        info.ArgumentList.Add(Path.Combine(RepositoryRoot(), "scripts", "device-check.sh"));
        info.Environment["DEVICE"] = device;
        info.Environment["OUT"] = _out;
        info.Environment["NATIVEPARALLEL_BIN"] = $"dotnet {Path.Combine(AppContext.BaseDirectory, "NativeParallel.Cli.dll")}";
        info.Environment["DEVICE_CHECK_SKIP"] = skip;
        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromMinutes(3)))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail("device-check.sh did not finish in 3 minutes");
        }
        return (process.ExitCode, stdout.Result + stderr.Result);
    }

    [Fact]
    public void DryRunOnTheCpuLeavesAReportAndAtMostEightFiles()
    {
        // The slow steps are skipped: this checks the plumbing (steps, report, archive), not the figures.
        var (code, output) = RunScript("cpu", "kernels-check bench-kernels train train-cpu train-layouts bench-collectives bench-collectives-ipc");
        Assert.True(code == 0, output);
        var files = Directory.GetFiles(_out, "*", SearchOption.AllDirectories);
        Assert.True(files.Length <= 8, $"device-check left {files.Length} files under $OUT; the GPU machine returns at most 8: {string.Join(", ", files)}");
        string report = File.ReadAllText(Path.Combine(_out, "report.md"));
        Assert.Contains("# Device check (cpu)", report);
        Assert.Contains("run rc=0", report);
        Assert.Contains("prepare rc=0", report);
        Assert.Contains("kernels-check skipped", report);
        Assert.Contains("kernels-check-warm skipped", report); // it only means something after the cold check
        Assert.True(new FileInfo(Path.Combine(_out, "raw.tar.gz")).Length > 0);
    }

    [Fact]
    public void TheStepTimeoutsAddUpToLessThanSixMinutes()
    {
        // `step NAME SECONDS ...` for CLI steps, `run_step NAME SECONDS ...` for the tests and the sanitizer.
        var limits = File.ReadAllLines(Path.Combine(RepositoryRoot(), "scripts", "device-check.sh"))
            .Select(l => System.Text.RegularExpressions.Regex.Match(l, @"^\s*(?:\w+=\S+ )?(?:step|run_step) [\w-]+ (\d+) "))
            .Where(m => m.Success)
            .Select(m => int.Parse(m.Groups[1].Value)).ToArray();
        Assert.True(limits.Length >= 13, $"found only {limits.Length} steps");
        Assert.True(limits.Sum() < 360, $"the step timeouts add up to {limits.Sum()} s; the device check must finish in 6 minutes");
    }

    [Fact]
    public void PreflightStopsEarlyWithTheReasonWhenThereIsNoGpu()
    {
        if (Hardware.HasCuda) Assert.Skip("this machine has a GPU, so the preflight passes");
        var (code, output) = RunScript("cuda", "");
        Assert.Equal(1, code);
        Assert.Contains("preflight failed", output);
        Assert.DoesNotContain("== kernels-check", output);
    }
}
