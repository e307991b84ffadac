using System.Diagnostics;
using System.Text.RegularExpressions;
using NativeParallel.Models;

namespace NativeParallel.Tests.Cli;

/// <summary>
/// <c>run --prompt</c>: text goes in through the folder's own tokenizer and comes out as text; <c>--prompt-ids</c> gives
/// the same tokens; sampling repeats with its seed, is checked against the reference, and is the same in a launched
/// job; missing tokenizers and bad sampling values are one-line errors with exit 2.
/// </summary>
[Collection(nameof(Kernels.EnvironmentCollection))]
public sealed class RunPromptTests : IDisposable
{
    private static readonly LlamaConfig Config = new() { Vocab = TinyTokenizer.Size, Hidden = 64, Layers = 2, Heads = 4, KvHeads = 2, Ffn = 96 };
    private readonly string _folder = Path.Combine(Path.GetTempPath(), $"np-run-prompt-{Guid.NewGuid():N}");

    public RunPromptTests()
    {
        HuggingFaceCheckpoint.Save(new LlamaWeights(Config, 21), _folder);
        TinyTokenizer.Write(_folder);
    }

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    private (int Code, string Output) Run(params string[] args) => InProcessCli.Run(["run", "--model", _folder, "--device", "cpu", "--new-tokens", "8", .. args]);

    private static int[] Tokens(string output, string prefix = "")
    {
        var m = Regex.Match(output, $@"(?m)^{Regex.Escape(prefix)}tokens  ([0-9 ]+?)\r?$");
        Assert.True(m.Success, $"no '{prefix}tokens' line in:\n{output}");
        return m.Groups[1].Value.Split(' ').Select(int.Parse).ToArray();
    }

    // The streamed text runs from "text    " to the line break written after the last token.
    private static string Text(string output, string prefix = "")
    {
        var m = Regex.Match(output, $@"(?m)^{Regex.Escape(prefix)}text    (.*)\r?$");
        Assert.True(m.Success, $"no '{prefix}text' line in:\n{output}");
        return m.Groups[1].Value;
    }

    [Fact]
    public void ATextPromptIsTokenizedByTheFolderAndTheContinuationPrintedAsItsText()
    {
        var (code, output) = Run("--prompt", "hello world");
        Assert.True(code == 0, output);
        Assert.Contains("prompt  \"hello world\" through tokenizer.json: byte-level BPE, 106 tokens: 3 tokens: 104 98 103", output);
        Assert.Contains("sample  greedy", output);
        Assert.Contains("check   greedy tokens vs host reference: 8/8 identical ok", output);
        var tokens = Tokens(output);
        Assert.Equal(8, tokens.Length);
        Assert.Equal(TinyTokenizer.Text(tokens), Text(output));
        // A prompt run is about its text: no strategy table unless asked for.
        Assert.DoesNotContain("strategies:", output);
    }

    [Fact]
    public void PromptIdsAndTheSameTokensAsTextGiveTheSameContinuation()
    {
        var (code, fromText) = Run("--prompt", "hello world", "--temperature", "0.9", "--seed", "3");
        Assert.True(code == 0, fromText);
        var (idsCode, fromIds) = Run("--prompt-ids", "104,98,103", "--temperature", "0.9", "--seed", "3");
        Assert.True(idsCode == 0, fromIds);
        Assert.Contains("prompt  3 tokens: 104 98 103", fromIds);
        Assert.Equal(Tokens(fromText), Tokens(fromIds));
        Assert.Equal(Text(fromText), Text(fromIds));
    }

    [Fact]
    public void SamplingRepeatsWithItsSeedAndIsCheckedAgainstTheReference()
    {
        string[] sampled = ["--prompt", "hello world", "--temperature", "1.2", "--top-k", "40", "--top-p", "0.95"];
        var (code, first) = Run([.. sampled, "--seed", "5"]);
        Assert.True(code == 0, first);
        Assert.Contains("sample  temperature 1.2, top-k 40, top-p 0.95, seed 5", first);
        Assert.Contains("check   sampled tokens vs host reference: 8/8 identical ok", first);
        var (_, again) = Run([.. sampled, "--seed", "5"]);
        Assert.Equal(Tokens(first), Tokens(again));
        // The weights are the folder's, so another seed changes only the draws.
        var (_, other) = Run([.. sampled, "--seed", "6"]);
        Assert.NotEqual(Tokens(first), Tokens(other));
        Assert.Equal(TinyTokenizer.Text(Tokens(other)), Text(other));
    }

    [Fact]
    public void AFolderWithoutATokenizerRefusesATextPromptNamingTheFolderAndTheFiles()
    {
        File.Delete(Path.Combine(_folder, "tokenizer.json"));
        var (code, output) = Run("--prompt", "hello");
        Assert.Equal(2, code);
        Assert.Single(output.Trim().Split('\n'));
        Assert.Contains($"--prompt: {_folder} has no tokenizer (neither tokenizer.json nor tokenizer.model)", output);
        // Exact ids still run, printed as ids only.
        (code, output) = Run("--prompt-ids", "1,2,3");
        Assert.True(code == 0, output);
        Assert.DoesNotContain("text    ", output);
    }

    [Theory]
    [InlineData("--temperature", "-1", "--temperature must be a number >= 0")]
    [InlineData("--temperature", "hot", "option --temperature expects a number")]
    [InlineData("--top-k", "-2", "--top-k must be >= 0")]
    [InlineData("--top-p", "0", "--top-p must be in (0, 1]")]
    [InlineData("--top-p", "1.5", "--top-p must be in (0, 1]")]
    [InlineData("--prompt-ids", "1,x", "--prompt-ids expects comma-separated token ids")]
    [InlineData("--prompt-ids", "1,106", "token id 106 is outside the model's vocabulary (0..105)")]
    public void BadValuesAreOneLineErrorsWithExitTwo(string option, string value, string message)
    {
        var (code, output) = Run(option, value);
        Assert.Equal(2, code);
        Assert.Single(output.Trim().Split('\n'));
        Assert.Contains(message, output);
    }

    [Fact]
    public void EveryStrategyOfTheTableSamplesTheSameTokensAsOneDevice()
    {
        var (code, output) = Run("--prompt", "hello world", "--temperature", "1.0", "--top-k", "50", "--seed", "4", "--strategy", "all");
        Assert.True(code == 0, output);
        Assert.Contains("check: f32 rule: logits rel err <= 1E-004, sampled tokens identical, ranks bitwise identical", output);
        // Nine layouts of the model and three of its mixture-of-experts twin, single-device rows included.
        var rows = Regex.Matches(output, @"(?m)^(\S+(?: \(moe\))?)\s+\d+ .*  (ok|FAIL).*$");
        Assert.True(rows.Count == 12, output);
        Assert.All(rows, row => Assert.Equal("ok", row.Groups[2].Value));
    }

    [Theory]
    [InlineData("tp=2")]
    [InlineData("pp=2")]
    public void ALaunchedRunSamplesTheSameTokensAsOneDevice(string strategy)
    {
        string[] common = ["--prompt", "hello world", "--temperature", "1.0", "--top-p", "0.9", "--seed", "8"];
        var (code, single) = Run(common);
        Assert.True(code == 0, single);
        string cli = Path.Combine(AppContext.BaseDirectory, "NativeParallel.Cli.dll");
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string a in new[] { cli, "launch", "-n", "2", "--", "dotnet", cli, "run", "--model", _folder, "--device", "cpu", "--new-tokens", "8", "--strategy", strategy }.Concat(common))
            info.ArgumentList.Add(a);
        using var process = Process.Start(info)!;
        var error = process.StandardError.ReadToEndAsync();
        string launched = process.StandardOutput.ReadToEnd();
        Assert.True(process.WaitForExit(TimeSpan.FromMinutes(3)), "the launched run did not finish in 3 minutes");
        launched += error.Result;
        Assert.True(process.ExitCode == 0, launched);
        Assert.Contains("sampled tokens identical, ranks bitwise identical: ok", launched);
        Assert.Equal(Tokens(single), Tokens(launched, "[rank 0] "));
        Assert.Equal(Text(single), Text(launched, "[rank 0] "));
    }
}
