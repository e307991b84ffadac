using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using NativeParallel.Models;

namespace NativeParallel.Tests.Cli;

/// <summary>
/// <c>run --requests FILE.jsonl --out FILE.jsonl</c>: one output line per request with its own prompt, max tokens and
/// sampling, the same tokens as <c>run --prompt</c> with those options, and bad lines named by file and line.
/// </summary>
[Collection(nameof(Kernels.EnvironmentCollection))]
public sealed class RunRequestsTests : IDisposable
{
    private static readonly LlamaConfig Config = new() { Vocab = TinyTokenizer.Size, Hidden = 64, Layers = 2, Heads = 4, KvHeads = 2, Ffn = 96 };
    private readonly string _folder = Path.Combine(Path.GetTempPath(), $"np-run-requests-{Guid.NewGuid():N}");

    public RunRequestsTests()
    {
        HuggingFaceCheckpoint.Save(new LlamaWeights(Config, 23), _folder);
        TinyTokenizer.Write(_folder);
    }

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    private string Requests(params string[] lines)
    {
        string path = Path.Combine(_folder, "requests.jsonl");
        File.WriteAllLines(path, lines);
        return path;
    }

    private int[] SingleRunTokens(params string[] args)
    {
        var (code, output) = InProcessCli.Run(["run", "--model", _folder, "--device", "cpu", .. args]);
        Assert.True(code == 0, output);
        return Regex.Match(output, @"(?m)^tokens  ([0-9 ]+?)\r?$").Groups[1].Value.Split(' ').Select(int.Parse).ToArray();
    }

    [Fact]
    public void EachRequestGetsItsOwnLineWithTheTokensOfTheSameSingleRun()
    {
        string requests = Requests(
            """{"id": "greedy", "prompt": "hello world", "max_tokens": 5}""",
            "",
            """{"prompt_ids": [104, 98, 103], "temperature": 0.9, "top_p": 0.95, "seed": 3, "max_tokens": 7}""",
            """{"id": 7, "prompt": "hello", "temperature": 1.5, "top_k": 1}""");
        string output = Path.Combine(_folder, "out", "results.jsonl");
        var (code, log) = InProcessCli.Run("run", "--model", _folder, "--device", "cpu", "--new-tokens", "6", "--requests", requests, "--out", output);
        Assert.True(code == 0, log);
        var lines = File.ReadAllLines(output).Select(l => JsonNode.Parse(l)!).ToArray();
        Assert.Equal(3, lines.Length);
        Assert.Equal(["greedy", "3", "7"], lines.Select(l => l["id"]!.ToJsonString().Trim('"')));
        int[] Tokens(JsonNode l) => l["tokens"]!.AsArray().Select(t => t!.GetValue<int>()).ToArray();

        Assert.Equal(SingleRunTokens("--prompt", "hello world", "--new-tokens", "5"), Tokens(lines[0]));
        Assert.Equal(SingleRunTokens("--prompt-ids", "104,98,103", "--new-tokens", "7", "--temperature", "0.9", "--top-p", "0.95", "--seed", "3"), Tokens(lines[1]));
        // top_k 1 is greedy whatever the temperature; max_tokens falls back to --new-tokens.
        Assert.Equal(SingleRunTokens("--prompt", "hello", "--new-tokens", "6"), Tokens(lines[2]));
        foreach (var l in lines)
        {
            Assert.Equal(TinyTokenizer.Text(Tokens(l)), l["text"]!.GetValue<string>());
            Assert.Equal(Tokens(l).Length, l["generated_tokens"]!.GetValue<int>());
            double first = l["time_to_first_token_ms"]!.GetValue<double>(), latency = l["latency_ms"]!.GetValue<double>();
            Assert.True(first > 0 && first <= latency, $"time to first token {first} ms, latency {latency} ms");
        }
        Assert.Equal([104, 98], lines[2]["prompt_ids"]!.AsArray().Select(t => t!.GetValue<int>()));
    }

    [Fact]
    public void WithoutOutTheLinesAreTheOnlyThingOnStdout()
    {
        string requests = Requests("""{"prompt_ids": [1, 2], "max_tokens": 2}""");
        var stdout = new StringWriter();
        var (previous, previousError) = (Console.Out, Console.Error);
        Console.SetOut(stdout);
        Console.SetError(TextWriter.Null);
        int code;
        try { code = NativeParallel.Cli.Entry.Run(["run", "--model", _folder, "--device", "cpu", "--requests", requests]); }
        finally { Console.SetOut(previous); Console.SetError(previousError); }
        Assert.Equal(0, code);
        var line = Assert.Single(stdout.ToString().Trim().Split('\n'));
        Assert.Equal(2, JsonNode.Parse(line)!["tokens"]!.AsArray().Count);
    }

    [Theory]
    [InlineData("""{"prompt": "hello", "max_token": 3}""", ":2: unknown key 'max_token'")]
    [InlineData("""{"max_tokens": 3}""", ":2: needs 'prompt' (text) or 'prompt_ids'")]
    [InlineData("""{"prompt_ids": [1, 200]}""", ":2: token id 200 is outside the model's vocabulary (0..105)")]
    [InlineData("""{"prompt": "hello", "top_p": 0}""", ":2: top_p must be in (0, 1]")]
    [InlineData("""{"prompt": "hello", "temperature": "hot"}""", ":2: 'temperature' must be a double")]
    [InlineData("not json", ":2: not valid JSON")]
    public void ABadLineIsNamedByFileAndLineBeforeAnyWork(string bad, string message)
    {
        string requests = Requests("""{"prompt": "hello"}""", bad);
        var (code, output) = InProcessCli.Run("run", "--model", _folder, "--device", "cpu", "--requests", requests);
        Assert.Equal(1, code);
        Assert.Single(output.Trim().Split('\n'));
        Assert.Contains(requests + message, output);
    }

    [Fact]
    public void OptionsThatCannotGoWithRequestsAreRefused()
    {
        string requests = Requests("""{"prompt": "hello"}""");
        var (code, output) = InProcessCli.Run("run", "--model", _folder, "--requests", requests, "--prompt", "hi");
        Assert.Equal(2, code);
        Assert.Contains("--requests takes its prompts from the file; --prompt goes without it", output);
        (code, output) = InProcessCli.Run("run", "--model", _folder, "--out", "x.jsonl");
        Assert.Equal(2, code);
        Assert.Contains("--out FILE.jsonl goes with --requests FILE.jsonl", output);
    }
}
