using NativeParallel.Cli;
using NativeParallel.Interop;

namespace NativeParallel.Tests.Cli;

/// <summary>The command line, run in process with its output captured.</summary>
[Collection(nameof(Kernels.EnvironmentCollection))]
public sealed class CliTests
{
    private static (int Code, string Output) Run(params string[] args) => InProcessCli.Run(args);

    [Fact]
    public void HelpListsEveryCommandAndTunable()
    {
        var (code, output) = Run("--help");
        Assert.Equal(0, code);
        foreach (string command in new[] { "info", "kernels check", "bench kernels", "run" }) Assert.Contains($"nativeparallel {command}", output);
        Assert.Contains("NATIVEPARALLEL_CACHE_DIR", output);
        Assert.Equal(0, Run("kernels", "check", "--help").Code);
    }

    [Fact]
    public void BadCommandLinesExitWithUsageErrors()
    {
        var (code, output) = Run("kernels", "check", "--devcie", "cpu");
        Assert.Equal(2, code);
        Assert.Contains("unknown option: --devcie", output);
        Assert.Equal(2, Run("frobnicate").Code);
        Assert.Equal(2, Run("run", "--new-tokens").Code);
        Assert.Equal(2, Run("run", "--new-tokens", "many").Code);
    }

    [Fact]
    public void KernelsCheckCompilesEveryKernelForAmpereAndHopperWithoutSpills()
    {
        Hardware.RequireNvrtc();
        string json = Path.Combine(Path.GetTempPath(), $"np-check-{Guid.NewGuid():N}.json");
        try
        {
            var (code, output) = Run("kernels", "check", "--arch", "sm_80,sm_90", "--json", json);
            Assert.True(code == 0, output);
            Assert.Contains("every kernel built with 0 spill bytes", output);
            Assert.Contains("matmul_tc_bf16_bf16", output);
            Assert.Contains("\"ok\": true", File.ReadAllText(json));
        }
        finally
        {
            File.Delete(json);
        }
    }

    [Fact]
    public void KernelsCheckOnCpuRunsAFilteredOpAgainstTheReference()
    {
        var (code, output) = Run("kernels", "check", "--device", "cpu", "--op", "softmax", "--cached");
        Assert.True(code == 0, output);
        Assert.Matches(@"\d+ passed, 0 failed on cpu", output);
    }

    [Fact]
    public void KernelsCheckRunsTheCudaSourceOnTheEmulatedDeviceUnderThreeSchedules()
    {
        Hardware.RequireEmu();
        var (code, output) = Run("kernels", "check", "--device", "emu", "--schedules", "3", "--op", "attention_decode", "--cached");
        Assert.True(code == 0, output);
        Assert.Contains("3 fiber schedules per case", output);
        Assert.Matches(@"\d+ passed, 0 failed on emu", output);
        Assert.Equal(2, Run("kernels", "check", "--device", "cpu", "--schedules", "3").Code);
    }

    [Fact]
    public void BenchCollectivesRunsDeviceDirectOnTheEmulatedDevice()
    {
        Hardware.RequireEmu();
        var (code, output) = Run("bench", "collectives", "--ranks", "2", "--transport", "threads", "--device", "emu", "-b", "4K", "-e", "4K", "-n", "1", "-w", "0");
        Assert.True(code == 0, output);
        Assert.Contains("2 ranks over threads, buffers on emu", output);
        Assert.Contains("# Out of bounds values : 0 OK", output);
    }

    [Fact]
    public void RunChecksTheModelAgainstTheReference()
    {
        var (code, output) = Run("run", "--device", "cpu", "--prompt-tokens", "8", "--new-tokens", "4");
        Assert.True(code == 0, output);
        Assert.Contains("greedy tokens vs host reference: 4/4 identical ok", output);
    }

    [Fact]
    public void RunLoadsAHuggingFaceFolder()
    {
        string folder = Path.Combine(Path.GetTempPath(), $"np-run-model-{Guid.NewGuid():N}");
        try
        {
            var config = new NativeParallel.Models.LlamaConfig { Vocab = 64, Hidden = 64, Layers = 2, Heads = 4, KvHeads = 2, Ffn = 96 };
            NativeParallel.Models.HuggingFaceCheckpoint.Save(new NativeParallel.Models.LlamaWeights(config, 5), folder);
            var (code, output) = Run("run", "--model", folder, "--device", "cpu", "--prompt-tokens", "8", "--new-tokens", "3", "--strategy", "tp=2;pp=2");
            Assert.True(code == 0, output);
            Assert.Contains($"{folder}: Llama-style decoder: 2 layers, hidden 64", output);
            Assert.Matches(@"tp=2 +2 .* ok \(rel err", output);
            Assert.Matches(@"pp=2 +2 .* ok \(rel err", output);
        }
        finally
        {
            if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true);
        }
    }

    [Fact]
    public void InfoDescribesTheMachine()
    {
        string folder = Directory.CreateTempSubdirectory("np-info-").FullName;
        string? previousCache = Environment.GetEnvironmentVariable("NATIVEPARALLEL_CACHE_DIR");
        try
        {
            // A cache folder of this test's own: info must report the setting, not a fixed word.
            string cache = Path.Combine(folder, "cache");
            Environment.SetEnvironmentVariable("NATIVEPARALLEL_CACHE_DIR", cache);
            string json = Path.Combine(folder, "info.json");
            var (code, output) = Run("info", "--json", json);
            Assert.True(code == 0, output);
            string[] lines = output.Split('\n', StringSplitOptions.TrimEntries);
            string Line(string key) => Assert.Single(lines, l => l.StartsWith(key + " ", StringComparison.Ordinal))[key.Length..].Trim();
            using var report = System.Text.Json.JsonDocument.Parse(File.ReadAllText(json));
            var root = report.RootElement;

            Assert.Equal(NativeParallel.Devices.CpuDevice.Instance.Description, Line("cpu"));
            Assert.Equal(cache, Line("cache"));
            Assert.Equal(cache, root.GetProperty("cache").GetString());
            Assert.Equal(NativeParallel.Kernels.KernelSources.Files, root.GetProperty("kernels").EnumerateArray().Select(e => e.GetString()));
            var devices = root.GetProperty("devices").EnumerateArray().Select(d => d.GetProperty("name").GetString()).ToArray();
            Assert.Equal("cpu", devices[0]);
            if (Hardware.HasCuda)
            {
                Assert.StartsWith("driver ", Line("cuda"));
                Assert.Contains("cuda:0", devices);
            }
            else
            {
                Assert.Equal($"unavailable: {NativeParallel.Devices.CudaDriver.UnavailableReason}", Line("cuda"));
                Assert.Single(devices);
            }

            if (NativeLibraries.IsAvailable(NativeLibraryKind.Nvrtc))
            {
                // NVRTC's line names the file that loaded, its version and its targets; the builtins it compiles
                // with were loaded from the same folder.
                string nvrtc = root.GetProperty("nvrtc_path").GetString()!;
                Assert.True(File.Exists(nvrtc), $"info names NVRTC at {nvrtc}, which does not exist");
                Assert.Equal(NativeLibraries.LoadedPath(NativeLibraryKind.Nvrtc), nvrtc);
                Assert.Matches(@$"^\d+\.\d+, {System.Text.RegularExpressions.Regex.Escape(nvrtc)}, targets .*\bsm_80\b", Line("nvrtc"));
                Assert.StartsWith(NativeParallel.Kernels.KernelCompiler.NvrtcVersion + ",", Line("nvrtc"));
                string builtins = root.GetProperty("nvrtc_builtins").GetString()!;
                Assert.Equal(builtins, Line("builtins"));
                Assert.True(File.Exists(builtins), $"info names NVRTC's builtins at {builtins}, which does not exist");
                Assert.Equal(Path.GetDirectoryName(nvrtc), Path.GetDirectoryName(builtins));
            }
            else
            {
                Assert.StartsWith("unavailable", Line("nvrtc"));
                Assert.Equal(System.Text.Json.JsonValueKind.Null, root.GetProperty("nvrtc_builtins").ValueKind);
            }
        }
        finally
        {
            Environment.SetEnvironmentVariable("NATIVEPARALLEL_CACHE_DIR", previousCache);
            Directory.Delete(folder, recursive: true);
        }
    }
}
