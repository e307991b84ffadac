using System.Reflection;

namespace NativeParallel.Cli.Reports;

/// <summary>
/// What this build of the command is: its version and the git commit it was built from, both fixed at build time
/// (the csproj's EmbedGitRevision target writes the commit into the assembly's metadata), so a report names its
/// source without running git.
/// </summary>
internal static class BuildInfo
{
    private static readonly Assembly Self = typeof(BuildInfo).Assembly;

    /// <summary>The commit this build was made from, or "unknown" when it was built outside a git repository.</summary>
    public static string GitRevision { get; } =
        Self.GetCustomAttributes<AssemblyMetadataAttribute>().FirstOrDefault(a => a.Key == "GitRevision")?.Value is { Length: > 0 } revision ? revision : "unknown";

    /// <summary>The package version, e.g. 0.1.0 (the informational version without its +commit suffix).</summary>
    public static string Version { get; } =
        (Self.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? Self.GetName().Version?.ToString() ?? "unknown").Split('+')[0];
}
