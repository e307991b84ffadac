using NativeParallel.Devices;
using NativeParallel.Models;
using NativeParallel.Parallel;
using NativeParallel.Tensors;

namespace NativeParallel.Tests.Parallel;

/// <summary>A Mixtral-style MoE model: the single-device MoE against the reference, and expert parallelism (alone and composed) against the single-device run.</summary>
public sealed class ExpertParallelTests
{
    private static readonly LlamaConfig Moe = new()
    {
        Vocab = 96, Hidden = 64, Layers = 2, Heads = 4, KvHeads = 2, Ffn = 48, MaxSequence = 32, Experts = 4, ExpertsPerToken = 2,
    };

    private static readonly Lazy<(LlamaWeights Weights, int[][] Prompts, (float[][], int[][]) Reference)> s_setup = new(() =>
    {
        var weights = new LlamaWeights(Moe, 9);
        var prompts = Enumerable.Range(0, 4).Select(p =>
        {
            var ids = new int[8];
            SeededRandom.Integers((ulong)(300 + p), ids, Moe.Vocab);
            return ids;
        }).ToArray();
        var single = StrategyRun.Single(CpuDevice.Instance, weights, prompts, 4);
        return (weights, prompts, (single.Logits, single.Tokens));
    });

    [Fact]
    public void TheSingleDeviceMoeMatchesTheReference()
    {
        var (weights, prompts, reference) = s_setup.Value;
        var expected = LlamaReference.Logits(weights, prompts[0]);
        double error = NativeParallel.Kernels.Check.ErrorBounds.RelativeError(reference.Item1[0], Array.ConvertAll(expected, v => (double)v));
        Assert.True(error <= 1e-5, $"MoE logits differ from the reference by {error:E2}");
    }

    [Theory]
    [InlineData("ep=2")]
    [InlineData("ep=4")]
    [InlineData("dp=2,ep=2")]
    [InlineData("tp=2,ep=2")]
    [InlineData("pp=2,ep=2")]
    [InlineData("tp=2")]
    [InlineData("tp+sp=2,ep=2")]
    public void ExpertParallelRunsMatchTheSingleDeviceRun(string layout)
    {
        var (weights, prompts, reference) = s_setup.Value;
        var result = StrategyRun.Run(weights, Strategy.Parse(layout), prompts, 4, reference, TimeSpan.FromSeconds(60));
        Assert.True(result.MaxLogitsError <= 1e-5, $"{layout}: logits differ by {result.MaxLogitsError:E2}");
        Assert.True(result.TokensIdentical, $"{layout}: greedy tokens differ");
        Assert.Equal(0, result.DroppedTokens);
    }

    [Fact]
    public void ExpertsSplitAcrossRanksAndCapacityDropsAreCounted()
    {
        var (weights, prompts, reference) = s_setup.Value;
        var whole = StrategyRun.Run(weights, new Strategy(), prompts, 2, reference);
        var ep4 = StrategyRun.Run(weights, Strategy.Parse("ep=4"), prompts, 2, reference);
        Assert.True(ep4.WeightBytesPerRank < whole.WeightBytesPerRank * 0.6, $"ep=4 holds {ep4.WeightBytesPerRank} of {whole.WeightBytesPerRank} bytes");
        var tight = new LlamaWeights(Moe with { CapacityFactor = 0.5 }, 9);
        var dropped = StrategyRun.Run(tight, Strategy.Parse("ep=2"), prompts, 2, reference);
        Assert.True(dropped.DroppedTokens > 0, "a capacity factor of 0.5 must drop routings");
    }
}
