using NativeParallel.Comm;
using NativeParallel.Devices;
using NativeParallel.Models;
using NativeParallel.Tensors;

namespace NativeParallel.Tests.Models;

/// <summary>
/// The MoE FFN on the device (routing, permutation, experts, all-to-alls, combine) with expert parallelism and a
/// tight capacity, against a host model of the same rule: each rank's routings from its router logits, arrivals at
/// each expert by sending rank then slot, the first `capacity` kept. The dropped counts must be exact, and every
/// token's output must equal the float64 sum of its kept experts' MLPs, weighted by the softmax of its top-k logits.
/// Ranks route different numbers of tokens, so the all-to-all splits are uneven.
/// </summary>
public sealed class MoeOnDeviceTests
{
    private static readonly Lazy<EmuDevice> s_emu = new(() => new EmuDevice());

    private static readonly LlamaConfig Moe = new()
    {
        Vocab = 16, Hidden = 32, Layers = 1, Heads = 2, KvHeads = 2, Ffn = 24, MaxSequence = 16, Experts = 4, ExpertsPerToken = 2,
        CapacityFactor = 0.5,
    };

    [Theory]
    [InlineData("cpu", 2)]
    [InlineData("cpu", 4)]
    [InlineData("emu", 2)]
    public void ExpertParallelKeepsExactlyEachExpertsFirstArrivalsUpToCapacity(string deviceName, int ranks)
    {
        if (deviceName == "emu") Hardware.RequireEmu();
        Check(deviceName == "emu" ? s_emu.Value : CpuDevice.Instance, ranks, deviceDirect: deviceName == "emu");
    }

    /// <summary>The check on <paramref name="device"/>; device-direct ranks must move every row on device buffers.</summary>
    internal static void Check(IDevice device, int ranks, bool deviceDirect)
    {
        var weights = new LlamaWeights(Moe, 21);
        var layer = weights.Layers[0];
        int h = Moe.Hidden, k = Moe.ExpertsPerToken, perRank = Moe.Experts / ranks;
        var inputs = Enumerable.Range(0, ranks).Select(r =>
        {
            var x = new float[(5 + 3 * r) * h];
            SeededRandom.Uniform(Hardware.Seed + (ulong)r, x, -1f, 1f);
            return x;
        }).ToArray();
        var logits = new float[ranks][];
        var outputs = new float[ranks][];
        var dropped = new long[ranks];
        ProcessGroup.RunOnThreadRanks(ranks, ep =>
        {
            int r = ep.Rank, tokens = inputs[r].Length / h;
            using var experts = new MoeExperts(device, Moe, layer, Enumerable.Range(r * perRank, perRank));
            using var normed = Tensor.FromFloats(device, inputs[r], DType.F32, tokens, h);
            using var mixed = experts.ForwardExpertParallel(normed, ep, r * perRank, out dropped[r]);
            outputs[r] = mixed.ToFloats();
            if (deviceDirect)
            {
                // The rows, their expert ids and the results crossed on device buffers, nothing through the host.
                Assert.Equal(3, ep.DeviceDirectCalls);
                Assert.Equal(0, ep.StagedBytes);
            }
            // The router's logits by the same kernel the layer used: the host model routes exactly as it did.
            using var router = Tensor.FromFloats(device, layer.Router, DType.F32, Moe.Experts, h);
            using var scores = Tensor.Empty(device, DType.F32, tokens, Moe.Experts);
            device.Kernels.Matmul(normed, router, scores);
            logits[r] = scores.ToFloats();
        }, timeout: TimeSpan.FromSeconds(120));

        // The host model: arrivals per expert in (sending rank, slot) order; the first `capacity` are kept.
        var routes = logits.Select(l => MoeRouting.Select(l, Moe.Experts, k)).ToArray();
        long routed = routes.Sum(r => (long)r.Length * k);
        long capacity = (long)Math.Ceiling(Moe.CapacityFactor * routed / Moe.Experts);
        var arrivals = new int[Moe.Experts];
        var kept = routes.Select(r => r.Select(_ => new bool[k]).ToArray()).ToArray();
        for (int src = 0; src < ranks; src++)
            for (int t = 0; t < routes[src].Length; t++)
                for (int j = 0; j < k; j++)
                    kept[src][t][j] = arrivals[routes[src][t].Experts[j]]++ < capacity;
        for (int owner = 0; owner < ranks; owner++)
        {
            long expected = Enumerable.Range(owner * perRank, perRank).Sum(e => Math.Max(0, arrivals[e] - capacity));
            Assert.Equal(expected, dropped[owner]);
        }
        Assert.InRange(dropped.Sum(), 1, routed - 1); // the case must both keep and drop

        for (int src = 0; src < ranks; src++)
        {
            var expected = new double[outputs[src].Length];
            for (int t = 0; t < routes[src].Length; t++)
                for (int j = 0; j < k; j++)
                {
                    if (!kept[src][t][j]) continue;
                    var y = ExpertMlp(layer.Experts[routes[src][t].Experts[j]], inputs[src].AsSpan(t * h, h));
                    for (int i = 0; i < h; i++) expected[t * h + i] += routes[src][t].Weights[j] * y[i];
                }
            double error = NativeParallel.Kernels.Check.ErrorBounds.RelativeError(outputs[src], expected);
            Assert.True(error <= 1e-5, $"rank {src}: MoE output differs from the float64 model by {error:E2}");
        }
    }

    // down · (silu(gate · x) ⊙ (up · x)) in float64.
    private static double[] ExpertMlp(LlamaWeights.Expert expert, ReadOnlySpan<float> x)
    {
        int h = x.Length, f = expert.Gate.Length / h;
        var hidden = new double[f];
        for (int i = 0; i < f; i++)
        {
            double g = 0, u = 0;
            for (int c = 0; c < h; c++)
            {
                g += (double)expert.Gate[i * h + c] * x[c];
                u += (double)expert.Up[i * h + c] * x[c];
            }
            hidden[i] = g / (1 + Math.Exp(-g)) * u;
        }
        var y = new double[h];
        for (int o = 0; o < h; o++)
            for (int i = 0; i < f; i++) y[o] += expert.Down[o * f + i] * hidden[i];
        return y;
    }
}

/// <summary>The same check on the GPU: thread ranks sharing it, the all-to-alls device-direct (the device check runs it).</summary>
public sealed class CudaMoeOnDeviceTests
{
    [Fact]
    public void ExpertParallelOnTheGpuKeepsExactlyEachExpertsFirstArrivalsUpToCapacity()
    {
        Hardware.RequireCuda();
        MoeOnDeviceTests.Check(DeviceRegistry.Open("cuda"), 2, deviceDirect: true);
    }
}
