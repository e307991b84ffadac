using System.Diagnostics;

namespace NativeParallel.Tests.Packaging;

/// <summary>
/// Runs a command in the repository root with a deadline, as a user would from a shell. The builds it starts must
/// not inherit the test host's MSBuild variables (they would point a nested build at this one's SDK state).
/// </summary>
internal static class RepositoryCommand
{
    public static string Root { get; } = FindRoot();

    public static (int Code, string Output) Run(TimeSpan limit, string program, IReadOnlyDictionary<string, string>? environment, params string[] args)
    {
        var info = new ProcessStartInfo(program) { WorkingDirectory = Root, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string arg in args) info.ArgumentList.Add(arg);
        foreach (string key in info.Environment.Keys.Where(k => k.StartsWith("MSBUILD", StringComparison.OrdinalIgnoreCase)).ToList())
            info.Environment.Remove(key);
        foreach (var (key, value) in environment ?? new Dictionary<string, string>()) info.Environment[key] = value;
        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(limit))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"'{program} {string.Join(' ', args)}' did not finish in {limit.TotalMinutes:F0} minutes");
        }
        return (process.ExitCode, stdout.Result + stderr.Result);
    }

    /// <summary>True when <paramref name="program"/> is on PATH.</summary>
    public static bool OnPath(string program) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Any(dir => dir.Length > 0 && File.Exists(Path.Combine(dir, program)));

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "build.sh")) && Directory.Exists(Path.Combine(dir.FullName, "samples"))) return dir.FullName;
        throw new DirectoryNotFoundException($"no build.sh with samples/ beside it above {AppContext.BaseDirectory}");
    }
}

/// <summary>
/// The packaging tests build the libraries again (pack, NativeAOT publish) in the repository's own folders: one at
/// a time, and after the parallel tests, so two builds never write the same obj/ folder.
/// </summary>
[CollectionDefinition(nameof(PackagingCollection), DisableParallelization = true)]
public sealed class PackagingCollection;
