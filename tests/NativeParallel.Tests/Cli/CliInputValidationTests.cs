using System.Buffers.Binary;
using System.Diagnostics;
using System.Text;
using System.Text.Json.Nodes;
using NativeParallel.Models;
using NativeParallel.Training;

namespace NativeParallel.Tests.Cli;

/// <summary>
/// Bad input files end the command with exit code 1 and bad option values with exit code 2, each as one line on
/// stderr naming what was wrong: never "Unhandled exception", a stack trace, or work started on a value out of range.
/// The file cases run the real command as a process, so the exit code is the process's own.
/// </summary>
public sealed class CliInputValidationTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("np-cli-input-").FullName;

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    private static readonly LlamaConfig Tiny = new() { Vocab = 16, Hidden = 8, Layers = 1, Heads = 2, KvHeads = 1, Ffn = 8, MaxSequence = 8 };

    private static (int Code, string Error) Process(params string[] args)
    {
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        info.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "NativeParallel.Cli.dll"));
        foreach (string a in args) info.ArgumentList.Add(a);
        info.Environment.Remove("NATIVEPARALLEL_DEBUG");
        using var process = System.Diagnostics.Process.Start(info)!;
        var output = process.StandardOutput.ReadToEndAsync();
        string error = process.StandardError.ReadToEnd();
        if (!process.WaitForExit(TimeSpan.FromSeconds(60)))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"nativeparallel {string.Join(' ', args)} did not exit within 60 s");
        }
        _ = output.Result;
        return (process.ExitCode, error);
    }

    /// <summary>Exactly one line, "nativeparallel: ...", with no trace of an unhandled exception.</summary>
    private static string OneLine(string error)
    {
        Assert.DoesNotContain("Unhandled exception", error);
        Assert.DoesNotContain("   at ", error);
        var lines = error.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length == 1, $"expected one line on stderr, got {lines.Length}:\n{error}");
        Assert.StartsWith("nativeparallel: ", lines[0]);
        return lines[0];
    }

    private string Model()
    {
        string folder = Path.Combine(_folder, $"model-{Guid.NewGuid():N}");
        HuggingFaceCheckpoint.Save(new LlamaWeights(Tiny, 2), folder);
        return folder;
    }

    private static void EditConfig(string folder, Action<JsonObject> edit)
    {
        string path = Path.Combine(folder, "config.json");
        var config = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        edit(config);
        File.WriteAllText(path, config.ToJsonString());
    }

    private static string[] RunArgs(string folder) => ["run", "--model", folder, "--device", "cpu", "--prompt-tokens", "2", "--new-tokens", "1", "--strategy", "none"];

    [Fact]
    public void ABadModelFileExitsOneNamingTheFileAndTheTensor()
    {
        string folder = Model();
        string file = Path.Combine(folder, "model.safetensors");
        byte[] bytes = File.ReadAllBytes(file);
        // The header's first data_offsets begin moved past the end of the file.
        int length = (int)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        string header = Encoding.UTF8.GetString(bytes, 8, length);
        string moved = System.Text.RegularExpressions.Regex.Replace(header, "\"data_offsets\":\\[0,", "\"data_offsets\":[9999999,", default, TimeSpan.FromSeconds(1));
        Assert.NotEqual(header, moved);
        byte[] json = Encoding.UTF8.GetBytes(moved);
        var edited = new byte[8 + json.Length + bytes.Length - 8 - length];
        BinaryPrimitives.WriteUInt64LittleEndian(edited, (ulong)json.Length);
        json.CopyTo(edited, 8);
        bytes.AsSpan(8 + length).CopyTo(edited.AsSpan(8 + json.Length));
        File.WriteAllBytes(file, edited);
        var (code, error) = Process(RunArgs(folder));
        Assert.Equal(1, code);
        string line = OneLine(error);
        Assert.StartsWith($"nativeparallel: InvalidDataException: {file}: tensor '", line);
        Assert.Contains("data_offsets", line);
    }

    [Fact]
    public void ABadConfigExitsOneNamingTheField()
    {
        string folder = Model();
        EditConfig(folder, c => c["num_attention_heads"] = 0);
        var (code, error) = Process(RunArgs(folder));
        Assert.Equal(1, code);
        Assert.Equal($"nativeparallel: InvalidDataException: {Path.Combine(folder, "config.json")}: 'num_attention_heads' is 0, must be at least 1", OneLine(error).TrimEnd());
    }

    [Fact]
    public void ATokenOutsideTheVocabularyExitsOneNamingTheShard()
    {
        string shard = Path.Combine(_folder, "shard.bin");
        TokenShard.Write(shard, Enumerable.Range(0, 40).ToArray());
        var (code, error) = Process("train", "--data", shard, "--vocab", "20", "--batch", "1", "--seq", "8", "--steps", "1", "--device", "cpu");
        Assert.Equal(1, code);
        Assert.Contains($"{shard}: the token at index 20 is 20, outside the model's vocabulary of 20", OneLine(error));
    }

    [Fact]
    public void ABadResumeStateExitsOneNamingTheField()
    {
        string folder = Model();
        Directory.CreateDirectory(Path.Combine(folder, "training"));
        File.WriteAllText(TrainingCheckpoint.StatePath(folder), "{\"step\": 1, \"shard\": 0, \"position\": \"start\", \"batch\": 1, \"sequence\": 8}");
        string shard = Path.Combine(_folder, "resume.bin");
        TokenShard.Write(shard, Enumerable.Range(0, 40).Select(i => i % 16).ToArray());
        var (code, error) = Process("train", "--data", shard, "--resume", folder, "--batch", "1", "--seq", "8", "--steps", "2", "--device", "cpu");
        Assert.Equal(1, code);
        Assert.Contains($"{TrainingCheckpoint.StatePath(folder)}: field 'position' is \"start\", not an integer", OneLine(error));
    }

    [Theory]
    [InlineData("--ranks must be from 1 to 256", "bench", "collectives", "--ranks", "0")]
    [InlineData("--ranks must be from 1 to 256", "bench", "collectives", "--ranks", "-3")]
    [InlineData("-r (root) must be a rank from 0 to 1", "bench", "collectives", "--ranks", "2", "--transport", "threads", "-r", "2")]
    [InlineData("--soak must be a number of collectives from 1", "bench", "collectives", "--soak", "0")]
    [InlineData("-f 1 steps about a byte at a time", "bench", "collectives", "-f", "1", "-b", "0", "-e", "64M")]
    [InlineData("launch needs -n N with 1 <= N <= 256", "launch", "-n", "0", "--", "true")]
    [InlineData("launch needs -n N with 1 <= N <= 256", "launch", "-n", "100000", "--", "true")]
    [InlineData("--transport must be shm or tcp", "launch", "-n", "2", "--transport", "carrier-pigeon", "--", "true")]
    [InlineData("--prompt-tokens and --new-tokens must be at least 1", "run", "--new-tokens", "-1")]
    [InlineData("the KV cache holds at most 65536 tokens", "run", "--prompt-tokens", "100000000")]
    [InlineData("option --new-tokens is 4294967297, outside", "run", "--new-tokens", "4294967297")]
    [InlineData("--strategy tp=3: query heads (8) must divide by tp (3)", "run", "--strategy", "tp=3")]
    [InlineData("--vocab must be from 1 to 1048576", "train", "--data", "x.bin", "--vocab", "-5")]
    [InlineData("--seq must be at most 65536", "train", "--data", "x.bin", "--seq", "2000000000")]
    [InlineData("--batch, --seq and --steps must be at least 1", "train", "--data", "x.bin", "--batch", "0")]
    public void AnOptionOutOfRangeExitsTwoBeforeAnyWork(string expected, params string[] args)
    {
        // In this process: a check that regressed would start the work it guards, which the output would show.
        var (code, output) = InProcessCli.Run(args);
        Assert.Equal(2, code);
        Assert.Contains(expected, OneLine(output));
    }

    [Fact]
    public void ZeroRanksAsAProcessExitsTwo()
    {
        var (code, error) = Process("bench", "collectives", "--ranks", "0");
        Assert.Equal(2, code);
        Assert.Contains("--ranks must be from 1 to 256", OneLine(error));
    }
}
