using NativeParallel.Training;

namespace NativeParallel.Tests.Training;

public sealed class TokenShardTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("np-shards-").FullName;

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    private string Shard(string name, int count, int first = 0)
    {
        string path = Path.Combine(_folder, name);
        TokenShard.Write(path, Enumerable.Range(first, count).Select(i => i % 60000).ToArray());
        return path;
    }

    [Fact]
    public void RoundTripsTheLlmcFormat()
    {
        string path = Shard("a.bin", 1001);
        var bytes = File.ReadAllBytes(path);
        Assert.Equal(1024 + 2 * 1001, bytes.Length);
        Assert.Equal(20240520, BitConverter.ToInt32(bytes, 0));
        Assert.Equal(1, BitConverter.ToInt32(bytes, 4));
        Assert.Equal(1001, BitConverter.ToInt32(bytes, 8));
        Assert.Equal(Enumerable.Range(0, 1001).Select(i => (ushort)i), TokenShard.Read(path));
    }

    [Fact]
    public void RejectsBadHeadersNamingTheFile()
    {
        string path = Shard("bad.bin", 10);
        var bytes = File.ReadAllBytes(path);
        bytes[0] ^= 1;
        File.WriteAllBytes(path, bytes);
        var e = Assert.Throws<InvalidDataException>(() => TokenShard.Read(path));
        Assert.Contains("bad.bin", e.Message);
        Assert.Contains("magic", e.Message);
        // The loader reads the header before it trusts the length.
        Assert.Contains("magic", Assert.Throws<InvalidDataException>(() => new TokenLoader([path], 1, 1)).Message);

        path = Shard("short.bin", 10);
        File.WriteAllBytes(path, File.ReadAllBytes(path)[..^2]);
        Assert.Contains("header says 10 tokens", Assert.Throws<InvalidDataException>(() => TokenShard.Read(path)).Message);
        Assert.Throws<ArgumentException>(() => TokenShard.Write(Path.Combine(_folder, "x.bin"), [70000]));
    }

    [Fact]
    public void LoaderAdvancesByBatchAndWrapsBeforeThePastTheEndRead()
    {
        // 2×3 batches need 7 tokens; 20 tokens give reads at 0, 6 and 12 (12 + 7 ≤ 20), then back to 0.
        var loader = new TokenLoader([Shard("a.bin", 20, first: 100)], batch: 2, sequence: 3);
        var inputs = new int[6];
        var targets = new int[6];
        foreach (int start in new[] { 0, 6, 12, 0, 6 })
        {
            Assert.Equal(start, loader.Position);
            loader.Next(inputs, targets);
            Assert.Equal(Enumerable.Range(100 + start, 6), inputs);
            Assert.Equal(Enumerable.Range(101 + start, 6), targets);
        }
    }

    [Fact]
    public void LoaderMovesThroughShardsOfAGlobInNameOrder()
    {
        Shard("part_1.bin", 10, first: 1000);
        Shard("part_0.bin", 10, first: 0);
        var files = TokenShard.Expand(Path.Combine(_folder, "part_*.bin"));
        Assert.EndsWith("part_0.bin", files[0]);
        var loader = new TokenLoader(files, batch: 1, sequence: 4);
        var inputs = new int[4];
        var targets = new int[4];
        var firsts = new List<int>();
        for (int i = 0; i < 5; i++)
        {
            loader.Next(inputs, targets);
            firsts.Add(inputs[0]);
        }
        // Each 10-token shard gives reads at 0 and 4 (4 + 5 ≤ 10; 8 + 5 > 10), then the next shard, then the first again.
        Assert.Equal([0, 4, 1000, 1004, 0], firsts);
        Assert.Throws<FileNotFoundException>(() => TokenShard.Expand(Path.Combine(_folder, "none_*.bin")));
        Assert.Throws<InvalidDataException>(() => new TokenLoader(files, batch: 3, sequence: 4));
    }

    [Fact]
    public void ScheduleWarmsUpLinearlyAndDecaysByCosine()
    {
        var constant = new LearningRateSchedule(1e-3f);
        Assert.Equal(1e-3f, constant.At(0));
        Assert.Equal(1e-3f, constant.At(500));
        var schedule = new LearningRateSchedule(1f, WarmupSteps: 4, Cosine: true, MinLearningRate: 0.1f, TotalSteps: 14);
        Assert.Equal([0.25f, 0.5f, 0.75f, 1f], Enumerable.Range(0, 4).Select(schedule.At));
        Assert.Equal(0.1 + 0.45 * (1 + Math.Cos(Math.PI * 4 / 9)), schedule.At(8), 1e-6);
        Assert.Equal(0.1f, schedule.At(13), 1e-6f);
    }
}
