using NativeParallel.Devices;
using NativeParallel.Models;
using NativeParallel.Parallel;
using NativeParallel.Tensors;

namespace NativeParallel.Tests.Parallel;

/// <summary>
/// Every strategy and composition, with 2 and 4 ranks as threads, against the single-device run: prefill logits
/// within the f32 bound, identical greedy tokens, bitwise identical logits on every rank that holds them.
/// </summary>
public sealed class StrategyEquivalenceTests
{
    private static readonly LlamaConfig Tiny = new() { Vocab = 96, Hidden = 64, Layers = 4, Heads = 4, KvHeads = 2, Ffn = 96, MaxSequence = 32 };
    private static readonly Lazy<(LlamaWeights Weights, int[][] Prompts, (float[][], int[][]) Reference)> s_setup = new(() =>
    {
        var weights = new LlamaWeights(Tiny, 3);
        var prompts = Enumerable.Range(0, 4).Select(p =>
        {
            var ids = new int[8];
            SeededRandom.Integers((ulong)(100 + p), ids, Tiny.Vocab);
            return ids;
        }).ToArray();
        var single = StrategyRun.Single(CpuDevice.Instance, weights, prompts, NewTokens);
        return (weights, prompts, (single.Logits, single.Tokens));
    });

    private const int NewTokens = 5;

    [Theory]
    [InlineData("tp=2")]
    [InlineData("tp=4")]
    [InlineData("pp=2")]
    [InlineData("pp=4")]
    [InlineData("sp=2")]
    [InlineData("sp=4")]
    [InlineData("dp=2")]
    [InlineData("tp=2,pp=2")]
    [InlineData("tp=2,dp=2")]
    [InlineData("tp=2,sp=2")]
    [InlineData("pp=2,dp=2")]
    [InlineData("tp+sp=2")]
    [InlineData("tp+sp=4")]
    [InlineData("tp+sp=2,pp=2")]
    public void MatchesTheSingleDeviceRun(string layout)
    {
        var (weights, prompts, reference) = s_setup.Value;
        var result = StrategyRun.Run(weights, Strategy.Parse(layout), prompts, NewTokens, reference, TimeSpan.FromSeconds(60));
        Assert.True(result.MaxLogitsError <= 1e-5, $"{layout}: logits differ from the single-device run by {result.MaxLogitsError:E2}");
        Assert.True(result.TokensIdentical, $"{layout}: greedy tokens differ from the single-device run");
        Assert.True(result.RanksIdentical, $"{layout}: ranks holding logits do not agree bitwise");
    }

    [Fact]
    public void ShardsSplitTheWeights()
    {
        var (weights, prompts, reference) = s_setup.Value;
        var single = StrategyRun.Run(weights, new Strategy(), prompts, 2, reference);
        var tp = StrategyRun.Run(weights, Strategy.Parse("tp=4"), prompts, 2, reference);
        var pp = StrategyRun.Run(weights, Strategy.Parse("pp=4"), prompts, 2, reference);
        Assert.True(tp.WeightBytesPerRank < single.WeightBytesPerRank / 3, $"tp=4 holds {tp.WeightBytesPerRank} of {single.WeightBytesPerRank} bytes per rank");
        Assert.True(pp.WeightBytesPerRank < single.WeightBytesPerRank * 0.6, $"pp=4 holds {pp.WeightBytesPerRank} of {single.WeightBytesPerRank} bytes per rank");
        Assert.Equal(0, single.BytesSentPerToken);
        Assert.True(tp.BytesSentPerToken > 0);
    }

    [Fact]
    public void LayoutsThatDoNotFitAreRejected()
    {
        Assert.Throws<ArgumentException>(() => Strategy.Parse("xp=2"));
        var (weights, prompts, reference) = s_setup.Value;
        var e = Assert.Throws<InvalidOperationException>(() => StrategyRun.Run(weights, Strategy.Parse("tp=3"), prompts, 2, reference));
        Assert.Contains("must divide by tp (3)", e.Message);
    }
}
