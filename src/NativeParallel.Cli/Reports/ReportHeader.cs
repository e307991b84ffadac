using System.Globalization;

namespace NativeParallel.Cli.Reports;

/// <summary>
/// The fields every --json report starts with, built here and nowhere else, so that a script can line up results of
/// different runs: which command with which options, from which build (version and git commit), when, and on which
/// machine. The command's own results follow these fields in the same object.
/// </summary>
internal static class ReportHeader
{
    /// <summary>The header's field names, in the order they are written (a command's own fields must not reuse them).</summary>
    public static readonly IReadOnlyList<string> Fields = ["command", "options", "version", "git_revision", "created_utc", "machine"];

    /// <summary>The header of <paramref name="command"/> (e.g. "bench collectives") given <paramref name="line"/>'s options.</summary>
    public static IEnumerable<(string Name, object? Value)> For(string command, CommandLine line)
    {
        yield return ("command", command);
        yield return ("options", line.Given.ToDictionary(o => o.Name, o => o.Value));
        yield return ("version", BuildInfo.Version);
        yield return ("git_revision", BuildInfo.GitRevision);
        yield return ("created_utc", DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture));
        yield return ("machine", MachineReport.Current);
    }
}
