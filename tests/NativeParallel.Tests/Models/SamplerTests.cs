using NativeParallel.Models;
using NativeParallel.Tensors;

namespace NativeParallel.Tests.Models;

/// <summary>
/// The sampler against its definition: top-k 1 and temperature 0 are greedy, top-p keeps the smallest set reaching p,
/// draws follow the softmax, the same seed repeats every draw, and bad values are refused.
/// </summary>
public sealed class SamplerTests
{
    private static float[] RandomLogits(ulong seed, int vocab)
    {
        var logits = new float[vocab];
        SeededRandom.Normal(seed, logits, std: 3f);
        return logits;
    }

    // Softmax of logits / temperature over the tokens in keep, written out here rather than taken from the sampler.
    private static double[] Softmax(float[] logits, double temperature, IEnumerable<int>? keep = null)
    {
        var kept = (keep ?? Enumerable.Range(0, logits.Length)).ToArray();
        double max = kept.Max(i => (double)logits[i]);
        var p = new double[logits.Length];
        foreach (int i in kept) p[i] = Math.Exp((logits[i] - max) / temperature);
        double sum = p.Sum();
        return p.Select(v => v / sum).ToArray();
    }

    [Theory]
    [InlineData(1ul)]
    [InlineData(2ul)]
    [InlineData(3ul)]
    public void TopKOneIsGreedy(ulong seed)
    {
        var logits = RandomLogits(seed, 50);
        int greedy = Array.IndexOf(logits, logits.Max());
        var sampler = new Sampler(new SamplingOptions(Temperature: 1.5, TopK: 1, Seed: seed));
        for (int step = 0; step < 200; step++) Assert.Equal(greedy, sampler.Next(logits, step));
    }

    [Fact]
    public void GreedyTakesTheLowestIndexOnTies()
    {
        float[] logits = [0f, 2f, 1f, 2f];
        Assert.Equal(1, new Sampler(SamplingOptions.Greedy).Next(logits, 0));
        Assert.Equal(1, new Sampler(new SamplingOptions(Temperature: 1, TopK: 1)).Next(logits, 0));
    }

    [Fact]
    public void TemperatureTowardsZeroIsGreedy()
    {
        // Logits a step apart: at temperature 1e-3 every other token's weight is exp(-100) of the best one.
        var logits = Enumerable.Range(0, 40).Select(i => (float)((i * 17 % 40) * 0.1)).ToArray();
        int greedy = Array.IndexOf(logits, logits.Max());
        foreach (double t in new[] { 0.0, 1e-3, 1e-6 })
        {
            var sampler = new Sampler(new SamplingOptions(Temperature: t, Seed: 9));
            for (int step = 0; step < 500; step++) Assert.Equal(greedy, sampler.Next(logits, step));
        }
    }

    [Fact]
    public void TopPKeepsTheSmallestSetWhoseMassReachesP()
    {
        // Probabilities 0.5, 0.25, 0.125, 0.0625, 0.0625 (in a shuffled order of ids).
        int[] ids = [3, 0, 4, 1, 2];
        double[] probability = [0.5, 0.25, 0.125, 0.0625, 0.0625];
        var logits = new float[5];
        for (int i = 0; i < 5; i++) logits[ids[i]] = (float)Math.Log(probability[i]);
        (double TopP, int Kept)[] cases = [(0.4, 1), (0.7, 2), (0.8, 3), (0.9, 4), (1.0, 5)];
        foreach (var (topP, kept) in cases)
        {
            var d = Sampler.Distribution(logits, new SamplingOptions(Temperature: 1, TopP: topP));
            var expected = Softmax(logits, 1, ids.Take(kept));
            for (int v = 0; v < 5; v++) Assert.True(Math.Abs(d[v] - expected[v]) < 1e-6, $"top-p {topP}: token {v} has {d[v]}, expected {expected[v]}");
            var sampler = new Sampler(new SamplingOptions(Temperature: 1, TopP: topP, Seed: 4));
            for (int step = 0; step < 300; step++) Assert.Contains(sampler.Next(logits, step), ids.Take(kept));
        }
    }

    [Fact]
    public void TopKKeepsTheKMostLikelyAndTopPCutsWhatTopKLeft()
    {
        var logits = RandomLogits(11, 30);
        var byLogit = Enumerable.Range(0, 30).OrderByDescending(i => logits[i]).ToArray();
        var d = Sampler.Distribution(logits, new SamplingOptions(Temperature: 0.7, TopK: 5));
        var expected = Softmax(logits, 0.7, byLogit.Take(5));
        for (int v = 0; v < 30; v++) Assert.True(Math.Abs(d[v] - expected[v]) < 1e-9, $"token {v}: {d[v]} vs {expected[v]}");

        // Top-p applies to the top-k distribution, renormalised: Hugging Face's order of warpers.
        double cumulative = 0;
        int reach = 0;
        while (cumulative < 0.6) cumulative += expected[byLogit[reach++]];
        var both = Sampler.Distribution(logits, new SamplingOptions(Temperature: 0.7, TopK: 5, TopP: 0.6));
        Assert.Equal(reach, both.Count(p => p > 0));
        Assert.True(Math.Abs(both.Sum() - 1) < 1e-12);
    }

    [Theory]
    [InlineData(1.0, 0, 1.0)]
    [InlineData(0.7, 0, 1.0)]
    [InlineData(1.3, 4, 1.0)]
    [InlineData(1.0, 0, 0.8)]
    public void DrawsFollowTheSoftmax(double temperature, int topK, double topP)
    {
        float[] logits = [1.0f, 0.2f, -0.5f, 2.0f, 0.0f, 1.5f, -1.0f];
        var options = new SamplingOptions(temperature, topK, topP, Seed: 2026);
        // The expected distribution written out: sorted tokens, the top-k cut, softmax, the top-p cut, renormalised.
        var order = Enumerable.Range(0, logits.Length).OrderByDescending(i => logits[i]).ToArray();
        var keep = order.Take(topK == 0 ? logits.Length : topK).ToList();
        var p = Softmax(logits, temperature, keep);
        if (topP < 1)
        {
            double mass = 0;
            keep = keep.TakeWhile(i => { bool take = mass < topP; mass += p[i]; return take; }).ToList();
            p = Softmax(logits, temperature, keep);
        }
        const int Draws = 40_000;
        var counts = new int[logits.Length];
        var sampler = new Sampler(options, stream: 3);
        for (int step = 0; step < Draws; step++) counts[sampler.Next(logits, step)]++;
        for (int v = 0; v < logits.Length; v++)
        {
            double frequency = (double)counts[v] / Draws;
            // Five standard deviations of a binomial frequency (0.0125 at p = 1/2): the draws are fixed by the seed,
            // so this either always passes or shows a biased sampler.
            double bound = 5 * Math.Sqrt(p[v] * (1 - p[v]) / Draws) + 1e-9;
            Assert.True(Math.Abs(frequency - p[v]) <= bound, $"token {v}: frequency {frequency:F4}, softmax {p[v]:F4} (bound {bound:F4})");
        }
    }

    [Fact]
    public void TheSameSeedRepeatsEveryDrawAndStreamsAndSeedsDiffer()
    {
        var logits = RandomLogits(5, 64);
        int[] Draw(ulong seed, int stream)
        {
            var s = new Sampler(new SamplingOptions(Temperature: 1.0, Seed: seed), stream);
            return Enumerable.Range(0, 64).Select(step => s.Next(logits, step)).ToArray();
        }
        Assert.Equal(Draw(7, 0), Draw(7, 0));
        Assert.NotEqual(Draw(7, 0), Draw(7, 1));
        Assert.NotEqual(Draw(7, 0), Draw(8, 0));
    }

    [Theory]
    [InlineData(-0.1, 0, 1.0, "temperature")]
    [InlineData(double.NaN, 0, 1.0, "temperature")]
    [InlineData(1.0, -1, 1.0, "top-k")]
    [InlineData(1.0, 0, 0.0, "top-p")]
    [InlineData(1.0, 0, 1.5, "top-p")]
    public void BadValuesAreRefusedNamingTheOption(double temperature, int topK, double topP, string option)
    {
        var options = new SamplingOptions(temperature, topK, topP);
        Assert.StartsWith(option + " must be", options.Problem());
        Assert.Throws<ArgumentException>(() => new Sampler(options));
    }
}
