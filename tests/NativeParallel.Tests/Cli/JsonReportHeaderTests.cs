using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using NativeParallel.Cli;
using NativeParallel.Cli.Commands;
using NativeParallel.Cli.Reports;

namespace NativeParallel.Tests.Cli;

/// <summary>
/// Every --json report starts with one header (command, options, version, git commit, time, machine) that a script can
/// rely on to line up runs: each field present and of its JSON kind, the options as given, the command's own results after it.
/// </summary>
[Collection(nameof(Kernels.EnvironmentCollection))]
public sealed class JsonReportHeaderTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("np-report-").FullName;

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    [Fact]
    public void TheHeaderLeadsEveryReportWithTypedFields()
    {
        string json = Path.Combine(_folder, "bench.json");
        var (code, output) = InProcessCli.Run("bench", "collectives", "--ranks", "2", "--transport", "threads", "-b", "64", "-e", "256", "-f", "4",
            "-n", "1", "-w", "0", "--json", json, "--quiet");
        Assert.True(code == 0, output);
        var root = JsonNode.Parse(File.ReadAllText(json))!.AsObject();

        // The header's fields first and in order, then the command's own.
        Assert.Equal(ReportHeader.Fields, root.Select(p => p.Key).Take(ReportHeader.Fields.Count));
        Assert.Contains("rows", root.Select(p => p.Key));

        Assert.Equal("bench collectives", String(root, "command"));
        var options = root["options"]!.AsObject();
        Assert.Equal("2", String(options, "ranks"));
        Assert.Equal("threads", String(options, "transport"));
        Assert.Equal("64", String(options, "b"));
        Assert.Equal(json, String(options, "json"));
        Assert.True(options["quiet"]!.GetValue<bool>()); // a flag is true
        Assert.False(options.ContainsKey("op"));          // defaults are not options given

        Assert.Matches(@"^\d+\.\d+\.\d+", String(root, "version"));
        string revision = String(root, "git_revision");
        Assert.Matches("^([0-9a-f]{40}|unknown)$", revision);
        // This test project is built inside the repository, so the build knew its commit.
        if (InsideGitRepository()) Assert.Matches("^[0-9a-f]{40}$", revision);
        Assert.True(DateTime.TryParse(String(root, "created_utc"), null, System.Globalization.DateTimeStyles.RoundtripKind, out var created));
        Assert.InRange(created.ToUniversalTime(), DateTime.UtcNow.AddMinutes(-10), DateTime.UtcNow.AddMinutes(1));

        var machine = root["machine"]!.AsObject();
        Assert.NotEmpty(String(machine, "cpu_model"));
        Assert.NotEmpty(String(machine, "host"));
        Assert.Equal(Environment.ProcessorCount, machine["logical_cores"]!.GetValue<int>());
        Assert.True(machine["memory_bytes"]!.GetValue<long>() > 1 << 20);
        Assert.NotEmpty(String(machine, "os"));
        Assert.NotEmpty(String(machine, "architecture"));
        Assert.StartsWith(".NET", String(machine, "dotnet"));
        var gpus = machine["gpus"]!.AsArray();
        if (File.Exists("/proc/driver/nvidia/version")) Assert.NotEmpty(String(machine, "nvidia_driver"));
        else Assert.Null(machine["nvidia_driver"]);
        if (Hardware.HasCuda)
        {
            Assert.Matches(@"^\d+\.\d+$", String(machine, "cuda_driver"));
            Assert.All(gpus, g => { Assert.NotEmpty(String(g!.AsObject(), "name")); Assert.StartsWith("sm_", String(g!.AsObject(), "arch")); });
            Assert.NotEmpty(gpus);
        }
        else
        {
            Assert.Null(machine["cuda_driver"]);
            Assert.Empty(gpus);
        }
        if (NativeParallel.Interop.NativeLibraries.IsAvailable(NativeParallel.Interop.NativeLibraryKind.Nvrtc))
            Assert.Equal(NativeParallel.Kernels.KernelCompiler.NvrtcVersion, String(machine, "nvrtc"));
        else Assert.Null(machine["nvrtc"]);
    }

    [Fact]
    public void RepeatedOptionsAreListsAndAClashWithTheHeaderIsRefused()
    {
        var line = new CommandLine(["--text", "a", "--text", "b", "--out", "x.bin", "--cosine"], "cosine");
        var report = JsonReport.Compose("prepare", line, new { Files = 2 });
        Assert.Equal(["a", "b"], report["options"]!["text"]!.AsArray().Select(v => v!.GetValue<string>()));
        Assert.Equal("x.bin", report["options"]!["out"]!.GetValue<string>());
        Assert.True(report["options"]!["cosine"]!.GetValue<bool>());
        Assert.Equal(2, report["files"]!.GetValue<int>());
        var clash = Assert.Throws<InvalidOperationException>(() => JsonReport.Compose("train", line, new { Command = "train" }));
        Assert.Contains("'command'", clash.Message);
    }

    [Fact]
    public void TheCommitIsReadFromTheBuildNotFromGitAtRunTime()
    {
        // The revision is assembly metadata written at build time; the report takes it from there.
        var metadata = typeof(Entry).Assembly.GetCustomAttributes(typeof(System.Reflection.AssemblyMetadataAttribute), false)
            .Cast<System.Reflection.AssemblyMetadataAttribute>().Single(a => a.Key == "GitRevision");
        Assert.Equal(metadata.Value, BuildInfo.GitRevision);
        Assert.DoesNotMatch(new Regex(@"\+"), BuildInfo.Version);
    }

    [Theory]
    [InlineData("NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 22:23:56 UTC 2024", "550.54.15")]
    [InlineData("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  565.57.01  Release Build  (dvs-builder@U16-I3-B03-4-3)", "565.57.01")]
    [InlineData("something else", "something else")]
    [InlineData("", null)]
    public void TheNvidiaDriverVersionIsReadFromEitherKernelModulesLine(string line, string? version) =>
        Assert.Equal(version, MachineReport.NvidiaDriverVersion(line));

    private static string String(JsonObject o, string name)
    {
        Assert.True(o.ContainsKey(name), $"missing field {name}");
        var value = o[name];
        Assert.True(value is JsonValue v && v.GetValueKind() == JsonValueKind.String, $"{name} should be a string, got {value?.ToJsonString() ?? "null"}");
        return value!.GetValue<string>();
    }

    private static bool InsideGitRepository()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (Directory.Exists(Path.Combine(dir.FullName, ".git")) || File.Exists(Path.Combine(dir.FullName, ".git"))) return true;
        return false;
    }
}
