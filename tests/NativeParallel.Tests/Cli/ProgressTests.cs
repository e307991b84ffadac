using System.Diagnostics;
using NativeParallel.Cli.Progress;

namespace NativeParallel.Tests.Cli;

/// <summary>
/// Progress of long commands: plain lines on stderr when output is redirected (never an ANSI code), a live
/// Spectre.Console bar on a terminal (a pseudo-terminal from util-linux's script), nothing with --quiet; the
/// command's own lines are the same in every mode.
/// </summary>
[Collection(nameof(Kernels.EnvironmentCollection))]
public sealed class ProgressTests
{
    private const char Escape = '\u001b';

    private static readonly string[] Soak = ["bench", "collectives", "--soak", "40", "--seed", "3", "--ranks", "2", "--transport", "threads", "-e", "4K"];

    [Fact]
    public void PlainLinesCountTheWorkAtTheIntervalAndQuietWritesNothing()
    {
        string? previous = Environment.GetEnvironmentVariable("NATIVEPARALLEL_PROGRESS_S");
        try
        {
            Environment.SetEnvironmentVariable("NATIVEPARALLEL_PROGRESS_S", "0");
            var every = new StringWriter();
            using (var progress = WorkProgress.Start(ProgressMode.Plain, "kernels check on cpu", 4, "cases", every))
                for (int i = 0; i < 4; i++) progress.Advance($"case {i}");
            string[] lines = every.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            Assert.Equal(4, lines.Length);
            Assert.Matches(@"^progress kernels check on cpu: 1/4 cases \(25 %\), [0-9.]+ s, about [0-9]+ s left: case 0$", lines[0]);
            Assert.Matches(@"^progress kernels check on cpu: 4/4 cases \(100 %\), [0-9.]+ s: case 3$", lines[3]);

            // An hour between lines: a short piece of work writes none.
            Environment.SetEnvironmentVariable("NATIVEPARALLEL_PROGRESS_S", "3600");
            var seldom = new StringWriter();
            using (var progress = WorkProgress.Start(ProgressMode.Plain, "train", 3, "steps", seldom))
                for (int i = 0; i < 3; i++) progress.Advance();
            Assert.Equal("", seldom.ToString());

            var off = new StringWriter();
            using (var progress = WorkProgress.Start(ProgressMode.Off, "train", 3, "steps", off))
                for (int i = 0; i < 3; i++) progress.Advance();
            Assert.Equal("", off.ToString());
        }
        finally
        {
            Environment.SetEnvironmentVariable("NATIVEPARALLEL_PROGRESS_S", previous);
        }
    }

    [Fact]
    public void RedirectedOutputGetsPlainLinesOnStderrAndQuietSuppressesThem()
    {
        var (code, stdout, stderr) = Cli(null, Soak);
        Assert.True(code == 0, stdout + stderr);
        Assert.Matches(@"# soak: 40 collectives \(\d+ async\), [0-9.]+ GB moved, 0 errors, [0-9.]+ s: OK", stdout);
        Assert.Matches(@"(?m)^progress soak: 1/40 collectives \(3 %\)", stderr);
        Assert.Matches(@"(?m)^progress soak: 40/40 collectives \(100 %\)", stderr);
        Assert.DoesNotContain("progress", stdout);  // results on stdout stay as they were
        Assert.DoesNotContain(Escape, stdout + stderr);

        (code, stdout, stderr) = Cli(null, [.. Soak, "--quiet"]);
        Assert.True(code == 0, stdout + stderr);
        Assert.Matches(@"# soak: 40 collectives .* 0 errors, [0-9.]+ s: OK", stdout);
        Assert.Equal("", stderr);

        // kernels check: the cases (and, with NVRTC, the compiles) counted; the table as before.
        (code, stdout, stderr) = Cli(null, "kernels", "check", "--device", "cpu", "--op", "rope", "--cached");
        Assert.True(code == 0, stdout + stderr);
        Assert.Matches(@"\d+ passed, 0 failed on cpu", stdout);
        Assert.Matches(@"(?m)^progress kernels check on cpu: 1/\d+ cases", stderr);
        Assert.DoesNotContain(Escape, stdout + stderr);
    }

    [Fact]
    public void ATerminalGetsALiveBarAboveWhichTheCommandsLinesStillPrint()
    {
        // script(1) runs the command on a pseudo-terminal: stdout and stderr are a terminal there, as for a person.
        string command = string.Join(' ', new[] { "dotnet", CliPath }.Concat(Soak).Select(Quote));
        var (code, output, _) = Run("script", new() { ["TERM"] = "xterm-256color" }, "-qec", command, "/dev/null");
        Assert.True(code == 0, output);
        Assert.Contains(Escape, output);                 // the bar is drawn with ANSI codes
        Assert.DoesNotContain("progress soak:", output);  // and no plain lines besides
        int header = output.IndexOf("# nativeparallel bench collectives --soak 40", StringComparison.Ordinal);
        int summary = output.IndexOf("# soak: 40 collectives", StringComparison.Ordinal);
        Assert.True(header >= 0 && summary > header, output);
    }

    private static string CliPath => Path.Combine(AppContext.BaseDirectory, "NativeParallel.Cli.dll");

    private static string Quote(string s) => "'" + s.Replace("'", "'\\''") + "'";

    private static (int Code, string Stdout, string Stderr) Cli(Dictionary<string, string>? environment, params string[] args) =>
        Run("dotnet", new(environment ?? []) { ["NATIVEPARALLEL_PROGRESS_S"] = "0" }, [CliPath, .. args]);

    private static (int Code, string Stdout, string Stderr) Run(string file, Dictionary<string, string> environment, params string[] args)
    {
        var info = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true, UseShellExecute = false };
        foreach (string a in args) info.ArgumentList.Add(a);
        foreach (var (k, v) in environment) info.Environment[k] = v;
        using var process = Process.Start(info)!;
        process.StandardInput.Close();
        var error = process.StandardError.ReadToEndAsync();
        string output = process.StandardOutput.ReadToEnd();
        if (!process.WaitForExit(TimeSpan.FromMinutes(2)))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"{file} {string.Join(' ', args)} did not finish in 2 minutes:\n{output}");
        }
        return (process.ExitCode, output, error.Result);
    }
}
