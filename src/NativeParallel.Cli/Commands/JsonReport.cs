using System.Text.Json;
using System.Text.Json.Nodes;
using NativeParallel.Cli.Reports;

namespace NativeParallel.Cli.Commands;

/// <summary>
/// Writes a command's machine-readable report (--json FILE): one object, the <see cref="ReportHeader"/> fields first
/// (command, options, version, git revision, time, machine), then the command's own results, snake_case.
/// </summary>
internal static class JsonReport
{
    private static readonly JsonSerializerOptions Options = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals,
        // Compilers, paths and text stay readable ("g++", not "g\u002B\u002B"); JSON's own escapes still apply.
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    /// <summary>Writes <paramref name="results"/> of <paramref name="command"/> under the header to <paramref name="path"/> (null: nothing).</summary>
    public static void Write(string? path, string command, CommandLine line, object results)
    {
        if (path is null) return;
        string? folder = Path.GetDirectoryName(Path.GetFullPath(path));
        if (folder is not null) Directory.CreateDirectory(folder);
        File.WriteAllText(path, Compose(command, line, results).ToJsonString(Options));
        Console.WriteLine($"wrote {path}");
    }

    /// <summary>The report as one JSON object: the header's fields, then the results' (an object whose names must differ from the header's).</summary>
    public static JsonObject Compose(string command, CommandLine line, object results)
    {
        var report = new JsonObject();
        foreach (var (name, value) in ReportHeader.For(command, line)) report[name] = JsonSerializer.SerializeToNode(value, Options);
        if (JsonSerializer.SerializeToNode(results, Options) is not JsonObject own)
            throw new ArgumentException("a --json report's results must be an object", nameof(results));
        foreach (var (name, value) in own.ToList())
        {
            // A clash would hide the header's field or the command's: a bug in the command, caught by its first report.
            if (report.ContainsKey(name)) throw new InvalidOperationException($"the {command} report's field '{name}' is one of the header's ({string.Join(", ", ReportHeader.Fields)})");
            own.Remove(name);
            report[name] = value;
        }
        return report;
    }
}
