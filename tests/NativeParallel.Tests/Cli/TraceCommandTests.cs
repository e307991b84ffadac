using System.Globalization;
using NativeParallel.Cli.Commands;
using NativeParallel.Tests.Diagnostics;
using NativeParallel.Training;

namespace NativeParallel.Tests.Cli;

/// <summary>
/// <c>--trace FILE</c> on each command that takes it: the file parses, and holds the events that command promises;
/// for data-parallel training, the buckets' all-reduces overlap backward's kernels and the hidden share is printed.
/// </summary>
[Collection(nameof(Kernels.EnvironmentCollection))]
public sealed class TraceCommandTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("np-trace-").FullName;

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    private (TraceJson Trace, string Output) Traced(params string[] args)
    {
        string file = Path.Combine(_folder, "trace.json");
        var (code, output) = InProcessCli.Run([.. args, "--trace", file]);
        Assert.True(code == 0, output);
        Assert.Contains($"trace   {file}", output);
        return (TraceJson.Parse(File.ReadAllBytes(file)), output);
    }

    [Fact]
    public void DataParallelTrainingShowsBucketsDuringBackwardAndPrintsTheHiddenShare()
    {
        string shard = Path.Combine(_folder, "data.bin");
        var tokens = new int[5000];
        NativeParallel.Tensors.SeededRandom.Integers(9, tokens, 1000);
        TokenShard.Write(shard, tokens);
        // 0.05 MiB buckets cut the small model's 7 MiB of gradients into many, launched as backward goes.
        var (trace, output) = Traced("train", "--data", shard, "--dp", "2", "--bucket-mb", "0.05", "--steps", "2", "--batch", "4", "--seq", "16", "--device", "cpu");
        foreach (int rank in new[] { 0, 1 })
        {
            var mine = trace.Complete.Where(e => e.Pid == rank).ToList();
            var backward = mine.Where(e => e.Cat == "phase" && e.Name == "backward").ToList();
            Assert.Equal(2, backward.Count);
            var backwardKernels = mine.Where(e => e.Cat == "kernel" && backward.Any(b => e.Ts >= b.Ts && e.End <= b.End)).ToList();
            Assert.Contains(backwardKernels, e => e.Name == "matmul_bwd_weight");
            var buckets = mine.Where(e => e.Name == "all_reduce" && e.Args.GetProperty("async").GetBoolean()).ToList();
            Assert.NotEmpty(buckets);
            Assert.All(buckets, b => Assert.NotEqual(0, b.Tid)); // on a communication lane, not compute
            Assert.True(buckets.Any(b => backwardKernels.Any(k => k.Ts < b.End && b.Ts < k.End)),
                $"rank {rank}: none of {buckets.Count} bucket all-reduces overlaps any of {backwardKernels.Count} backward kernels");
        }
        string line = output.Split('\n').Single(l => l.StartsWith("overlap ", StringComparison.Ordinal));
        double share = double.Parse(line["overlap ".Length..line.IndexOf('%')].Trim(), CultureInfo.InvariantCulture);
        Assert.InRange(share, 0, 100);
        Assert.Contains("rank 1:", line);
    }

    [Fact]
    public void RunTracesEveryRanksKernelsAndCollectives()
    {
        var (trace, _) = Traced("run", "--device", "cpu", "--strategy", "tp=2", "--new-tokens", "2", "--prompt-tokens", "4");
        foreach (int rank in new[] { 0, 1 })
        {
            Assert.Contains(trace.Complete, e => e.Pid == rank && e.Cat == "kernel" && e.Name == "matmul" && e.Args.GetProperty("flops").GetInt64() > 0);
            Assert.Contains(trace.Complete, e => e.Pid == rank && e.Cat == "collective" && e.Name == "all_reduce" && e.Args.GetProperty("bytes").GetInt64() > 0);
        }
    }

    [Fact]
    public void BenchKernelsTracesItsKernels()
    {
        var (trace, _) = Traced("bench", "kernels", "--device", "cpu", "--repeats", "1", "--warmup", "0");
        Assert.Contains(trace.Complete, e => e.Cat == "kernel" && e.Name == "matmul_bwd_weight" && e.Args.GetProperty("bytes").GetInt64() > 0);
        Assert.All(trace.Complete, e => Assert.Equal(0, e.Pid));
    }

    [Fact]
    public void BenchCollectivesOnThreadRanksTracesEveryRanksCollectives()
    {
        var (trace, _) = Traced("bench", "collectives", "--ranks", "2", "--transport", "threads", "-b", "8", "-e", "64", "-n", "1", "-w", "0");
        foreach (int rank in new[] { 0, 1 })
        {
            var mine = trace.Complete.Where(e => e.Pid == rank && e.Name == "all_reduce").ToList();
            Assert.NotEmpty(mine);
            // Sequence numbers follow the group's one order on its lane.
            var seqs = mine.OrderBy(e => e.Ts).Select(e => e.Args.GetProperty("seq").GetInt64()).ToList();
            Assert.Equal(seqs.Order(), seqs);
        }
    }

    [Fact]
    public void ProcessRanksOfALaunchedJobWriteAFileEach()
    {
        string file = Path.Combine(_folder, "job.json");
        var (code, output) = Comm.ProcessCollectiveTests.Cli(null, "launch", "-n", "2", "--", "dotnet", Path.Combine(AppContext.BaseDirectory, "NativeParallel.Cli.dll"),
            "bench", "collectives", "-b", "1K", "-e", "1K", "-n", "1", "-w", "0", "--trace", file);
        Assert.True(code == 0, output);
        Assert.False(File.Exists(file), "a launched job wrote the unnumbered file");
        foreach (int rank in new[] { 0, 1 })
        {
            var trace = TraceJson.Parse(File.ReadAllBytes(TraceFile.ForRank(file, rank)));
            Assert.NotEmpty(trace.Complete);
            Assert.All(trace.Complete, e => Assert.Equal(rank, e.Pid));
            Assert.Contains(trace.Complete, e => e.Name == "all_reduce" && e.Args.GetProperty("transport").GetString() is "shm" or "tcp");
        }
    }

    [Fact]
    public void RankFileNamesAndAMissingFolderIsAUsageError()
    {
        Assert.Equal(Path.Combine("/tmp", "t.rank3.json"), TraceFile.ForRank("/tmp/t.json", 3));
        var (code, output) = InProcessCli.Run("bench", "collectives", "-b", "8", "-e", "8", "--trace", Path.Combine(_folder, "no", "t.json"));
        Assert.Equal(2, code);
        Assert.Contains("--trace", output);
    }
}
