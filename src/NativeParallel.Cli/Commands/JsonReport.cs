using System.Text.Json;

namespace NativeParallel.Cli.Commands;

/// <summary>Writes a command's machine-readable report (--json FILE).</summary>
internal static class JsonReport
{
    private static readonly JsonSerializerOptions Options = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    public static void Write(string? path, object report)
    {
        if (path is null) return;
        string? folder = Path.GetDirectoryName(Path.GetFullPath(path));
        if (folder is not null) Directory.CreateDirectory(folder);
        File.WriteAllText(path, JsonSerializer.Serialize(report, Options));
        Console.WriteLine($"wrote {path}");
    }
}
