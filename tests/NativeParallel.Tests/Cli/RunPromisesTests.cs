using System.Diagnostics;
using System.Text.RegularExpressions;
using NativeParallel.Cli;
using NativeParallel.Models;
using NativeParallel.Parallel;
using NativeParallel.Tensors;

namespace NativeParallel.Tests.Cli;

/// <summary>
/// <c>nativeparallel run</c> keeps its promises: a launched job runs the --model folder's own weights, expert
/// parallelism runs a Mixtral folder's own experts, one rule decides both what prints FAIL and the exit code, and
/// strategies are refused before any work.
/// </summary>
[Collection(nameof(Kernels.EnvironmentCollection))]
public sealed class RunPromisesTests
{
    private static readonly LlamaConfig Dense = new() { Vocab = 64, Hidden = 64, Layers = 2, Heads = 4, KvHeads = 2, Ffn = 96 };

    private static (int Code, string Output) Run(params string[] args) => InProcessCli.Run(args);

    private static (int Code, string Output) Launch(int ranks, params string[] runArgs)
    {
        string cli = Path.Combine(AppContext.BaseDirectory, "NativeParallel.Cli.dll");
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string a in new[] { cli, "launch", "-n", ranks.ToString(), "--", "dotnet", cli, "run" }.Concat(runArgs)) info.ArgumentList.Add(a);
        using var process = Process.Start(info)!;
        var error = process.StandardError.ReadToEndAsync();
        string output = process.StandardOutput.ReadToEnd();
        Assert.True(process.WaitForExit(TimeSpan.FromMinutes(3)), "the launched run did not finish in 3 minutes");
        return (process.ExitCode, output + error.Result);
    }

    private static string SavedFolder(LlamaConfig config, ulong seed)
    {
        string folder = Path.Combine(Path.GetTempPath(), $"np-run-promise-{Guid.NewGuid():N}");
        HuggingFaceCheckpoint.Save(new LlamaWeights(config, seed), folder);
        return folder;
    }

    private static string Tokens(string output, string prefix)
    {
        var m = Regex.Match(output, $@"(?m)^{Regex.Escape(prefix)}tokens  ([0-9 ]+?)\r?$");
        Assert.True(m.Success, $"no '{prefix}tokens' line in:\n{output}");
        return m.Groups[1].Value;
    }

    [Theory]
    [InlineData("tp=2", false)]
    [InlineData("ep=2", true)]
    public void ALaunchedRunOfASavedFolderPrintsTheSingleDeviceTokensOfThatFolder(string strategy, bool mixtral)
    {
        string folder = SavedFolder(mixtral ? Dense with { Experts = 4, Ffn = 48 } : Dense, 17);
        try
        {
            string[] common = ["--model", folder, "--device", "cpu", "--prompt-tokens", "8", "--new-tokens", "6", "--strategy"];
            var (code, single) = Run(["run", .. common, "pp=2"]);
            Assert.True(code == 0, single);
            var (launchCode, launched) = Launch(2, [.. common, strategy]);
            Assert.True(launchCode == 0, launched);
            Assert.Contains($"[rank 0] strategy {strategy} on 2 processes over shm, device cpu: ", launched);
            Assert.Contains("greedy tokens identical, ranks bitwise identical: ok", launched);
            Assert.Equal(Tokens(single, ""), Tokens(launched, "[rank 0] "));
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [Fact]
    public void ALaunchedRunRefusesWhatItCannotHonour()
    {
        var (code, output) = Launch(2, "--device", "cpu", "--strategy", "tp=4");
        Assert.Equal(2, code);
        Assert.Contains("tp=4 needs 4 ranks; the job has 2", output);
        string folder = SavedFolder(Dense, 3);
        try
        {
            (code, output) = Launch(2, "--model", folder, "--device", "cpu", "--strategy", "ep=2");
            Assert.Equal(2, code);
            Assert.Contains("expert parallelism needs a mixture-of-experts model", output);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [Fact]
    public void ExpertParallelRowsRunAMixtralFoldersOwnExperts()
    {
        var moe = Dense with { Experts = 4, ExpertsPerToken = 2, Ffn = 48 };
        string folder = SavedFolder(moe, 23);
        try
        {
            var (code, output) = Run("run", "--model", folder, "--device", "cpu", "--prompt-tokens", "8", "--new-tokens", "3", "--strategy", "ep=2;tp=2,ep=2");
            Assert.True(code == 0, output);
            Assert.Contains("Mixtral-style decoder (4 experts, top-2)", output);
            Assert.DoesNotContain("(moe)", output);
            Assert.Matches(@"(?m)^ep=2 +2 .* ok \(rel err", output);
            Assert.Matches(@"(?m)^tp=2,ep=2 +4 .* ok \(rel err", output);

            // The same rows through the library: the folder's own experts under ep=2 give its single-device tokens.
            var weights = HuggingFaceCheckpoint.Load(folder, 32);
            var prompts = new[] { new[] { 1, 2, 3, 4, 5, 6, 7, 8 }, new[] { 9, 10, 11, 12, 13, 14, 15, 16 } };
            var single = StrategyRun.Single(NativeParallel.Devices.CpuDevice.Instance, weights, prompts, 3);
            var ep = StrategyRun.Run(weights, Strategy.Parse("ep=2"), prompts, 3, (single.Logits, single.Tokens), TimeSpan.FromSeconds(60));
            Assert.True(CheckRule.For(DType.F32).Judge(ep).Ok, $"ep=2: {CheckRule.For(DType.F32).Judge(ep).Text}");
            Assert.Equal(single.Tokens, ep.Tokens);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [Fact]
    public void OneRuleDecidesFailAndTheExitCode()
    {
        var f32 = CheckRule.For(DType.F32);
        var bf16 = CheckRule.For(DType.BF16);
        Assert.Equal(1e-4, f32.LogitsBound);
        Assert.Equal(3e-2, bf16.LogitsBound);
        // bf16: logits beyond its bound fail, ranks that disagree fail; only differing tokens are allowed.
        Assert.False(bf16.Judge(5e-2, true).Ok);
        Assert.False(bf16.Judge(1e-3, true, ranksIdentical: false).Ok);
        Assert.False(bf16.Judge(double.NaN, true).Ok);
        Assert.True(bf16.Judge(1e-3, false).Ok);
        Assert.False(f32.Judge(1e-5, false).Ok);
        Assert.False(f32.Judge(1e-3, true).Ok);
        Assert.True(f32.Judge(1e-5, true).Ok);
        // Whatever prints FAIL is not ok, and the other way round, for every dtype and outcome.
        foreach (var rule in new[] { f32, bf16 })
            foreach (double error in new[] { 0, 1e-5, 1e-3, 5e-2, double.NaN })
                foreach (bool tokens in new[] { true, false })
                    foreach (bool ranks in new[] { true, false })
                    {
                        var v = rule.Judge(error, tokens, ranks);
                        Assert.Equal(!v.Ok, v.Text.StartsWith("FAIL", StringComparison.Ordinal));
                        Assert.Equal(v.Ok, v.Text.StartsWith("ok", StringComparison.Ordinal));
                    }
    }

    [Theory]
    [InlineData("tp=3", "query heads (8) must divide by tp (3)")]
    [InlineData("tq=2", "unknown axis 'tq'")]
    [InlineData("tp=2,tp=4", "gives the tp axis twice")]
    [InlineData("tp=2;pp=two", "bad strategy part 'pp=two'")]
    [InlineData("dp=3", "must divide among 3 replicas")]
    [InlineData("sp=3", "must divide by sp (3)")]
    [InlineData("ep=3", "experts (4) must divide by ep (3)")]
    [InlineData("pp=3", "at least one of the 2 layers")]
    public void BadStrategiesExitTwoBeforeAnyWork(string strategy, string reason)
    {
        var clock = Stopwatch.StartNew();
        var (code, output) = Run("run", "--device", "cpu", "--strategy", strategy);
        Assert.True(code == 2, output);
        Assert.Contains(reason, output);
        Assert.DoesNotContain("prefill", output);
        Assert.DoesNotContain("model ", output);
        Assert.Single(output.Trim().Split('\n'));
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), $"refusing took {clock.Elapsed}");
    }

    [Fact]
    public void AFoldersStrategyIsRefusedBeforeItsWeightsAreRead()
    {
        string folder = SavedFolder(Dense, 5);
        try
        {
            // Without weights a run would fail reading them; the strategy is refused from config.json alone.
            File.Delete(Path.Combine(folder, "model.safetensors"));
            var (code, output) = Run("run", "--model", folder, "--device", "cpu", "--strategy", "tp=8");
            Assert.True(code == 2, output);
            Assert.Contains("query heads (4) must divide by tp (8)", output);
            Assert.Equal(2, Run("run", "--device", "cpu", "--dtype", "f16").Code);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }
}
