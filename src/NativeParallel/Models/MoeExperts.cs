using NativeParallel.Comm;
using NativeParallel.Devices;
using NativeParallel.Kernels.Ops;
using NativeParallel.Parallel.Layers;
using NativeParallel.Tensors;

namespace NativeParallel.Models;

/// <summary>
/// The experts of one MoE layer that live on one device (all of them, or an expert-parallel rank's share), the
/// router, and the MoE FFN over them, on the device from end to end: the router's top-k and softmax, the token
/// permutation (<see cref="MoePlan"/>, <see cref="GatherRows"/>), each expert's SwiGLU MLP over its contiguous
/// rows, the all-to-alls of expert parallelism on device buffers, and the weighted combine in top-k order
/// (<see cref="MoeCombine"/>). Only the row counts per expert (and per rank) are read by the host: they size the
/// experts' GEMMs and the all-to-all splits. Routing follows <see cref="MoeRouting"/>'s rule (top-k by logit, lower
/// index first on ties, softmax over the k logits), which the float64 reference computes on its own.
/// </summary>
public sealed partial class MoeExperts : IDisposable
{
    private readonly IDevice _device;
    private readonly LlamaConfig _c;
    private readonly LayerWeight _router;
    private readonly Dictionary<int, (LayerWeight Gate, LayerWeight Up, LayerWeight Down)> _experts = new();

    /// <summary>Uploads the router and experts <paramref name="owned"/> of <paramref name="layer"/>.</summary>
    public MoeExperts(IDevice device, LlamaConfig config, LlamaWeights.Layer layer, IEnumerable<int> owned)
    {
        _device = device;
        _c = config;
        var dt = config.DType;
        _router = Tensor.FromFloats(device, layer.Router, dt, config.Experts, config.Hidden);
        foreach (int e in owned)
        {
            var x = layer.Experts[e];
            _experts[e] = (Tensor.FromFloats(device, x.Gate, dt, config.Ffn, config.Hidden), Tensor.FromFloats(device, x.Up, dt, config.Ffn, config.Hidden),
                Tensor.FromFloats(device, x.Down, dt, config.Hidden, config.Ffn));
        }
    }

    /// <summary>
    /// A trained layer's experts: the router and each expert's weights are views of the trainer's buffers (values
    /// and gradients), the experts keyed by their index in the layer.
    /// </summary>
    internal MoeExperts(IDevice device, LlamaConfig config, LayerWeight router, IReadOnlyDictionary<int, (LayerWeight Gate, LayerWeight Up, LayerWeight Down)> experts)
    {
        _device = device;
        _c = config;
        _router = router;
        foreach (var (e, w) in experts) _experts[e] = w;
    }

    /// <summary>Bytes of router and expert weights here.</summary>
    public long WeightBytes => _router.Bytes + _experts.Values.Sum(e => e.Gate.Bytes + e.Up.Bytes + e.Down.Bytes);

    /// <summary>
    /// The whole MoE FFN with every expert here: route each token of <paramref name="normed"/> (tokens, hidden), run
    /// each expert over its tokens, and combine each token's outputs in top-k order. Returns (tokens, hidden).
    /// </summary>
    public Tensor Forward(Tensor normed)
    {
        int tokens = normed.Dim(0), k = _c.ExpertsPerToken, slots = tokens * k;
        using var route = Route(normed);
        using var plan = Plan.Make(_device, route.Experts.View(slots), 0, 1, _c.Experts);
        using var rows = Tensor.Empty(_device, _c.DType, slots, _c.Hidden);
        GatherRows.Run(normed, plan.Order, k, rows);
        using var y = Tensor.Empty(_device, _c.DType, slots, _c.Hidden);
        RunExperts(rows, y, plan.HostCounts, firstExpert: 0, capacity: long.MaxValue);
        var mixed = Tensor.Empty(_device, _c.DType, tokens, _c.Hidden);
        MoeCombine.Run(y, plan.Position, route.Weights, mixed);
        return mixed;
    }

    /// <summary>
    /// The MoE FFN with experts spread over <paramref name="ep"/> (this rank holds experts
    /// [<paramref name="firstExpert"/>, + expertsPerRank)): route locally; all-to-all each (token, slot) row, and its
    /// expert id, to the rank owning the expert; each expert takes at most its capacity (a share of every rank's
    /// routed rows this call, from the config's capacity factor) in arrival order (by sending rank, then slot), the
    /// rest dropped and counted in <paramref name="dropped"/>; all-to-all the results back (dropped rows as zeros);
    /// combine each token's outputs in top-k order. Returns (tokens, hidden).
    /// </summary>
    public Tensor ForwardExpertParallel(Tensor normed, ProcessGroup ep, int firstExpert, out long dropped)
    {
        int tokens = normed.Dim(0), k = _c.ExpertsPerToken, slots = tokens * k, h = _c.Hidden, n = ep.Size;
        int perRank = _c.Experts / n;
        using var route = Route(normed);
        using var dispatch = Plan.Make(_device, route.Experts.View(slots), 0, perRank, n);

        // Every rank's row count to every rank (metadata, on the host): receive splits and the capacity's base.
        long[] sendRows = Array.ConvertAll(dispatch.HostCounts, c => (long)c);
        using var mine = Tensor.FromLongs(CpuDevice.Instance, sendRows, n);
        using var everyone = Tensor.Empty(CpuDevice.Instance, DType.I64, n * n);
        ep.AllGather(mine, everyone);
        long[] matrix = everyone.ToLongs();
        long[] receiveRows = Enumerable.Range(0, n).Select(p => matrix[p * n + ep.Rank]).ToArray();
        int received = (int)receiveRows.Sum();

        // Rows and their expert ids, sorted by destination rank, slot order within a rank.
        using var rows = Tensor.Empty(_device, _c.DType, slots, h);
        GatherRows.Run(normed, dispatch.Order, k, rows);
        using var ids = Tensor.Empty(_device, DType.I32, slots, 1);
        GatherRows.Run(route.Experts.View(slots, 1), dispatch.Order, 1, ids);
        using var arrived = Tensor.Empty(_device, _c.DType, received, h);
        using var arrivedIds = Tensor.Empty(_device, DType.I32, received, 1);
        ep.AllToAll(rows, Scaled(sendRows, h), arrived, Scaled(receiveRows, h));
        ep.AllToAll(ids, sendRows, arrivedIds, receiveRows);

        // This rank's experts, each over its arrivals in order, up to the capacity.
        long routed = matrix.Sum();
        long capacity = _c.CapacityFactor > 0 ? (long)Math.Ceiling(_c.CapacityFactor * routed / _c.Experts) : long.MaxValue;
        using var local = Plan.Make(_device, arrivedIds.View(received), firstExpert, 1, perRank);
        using var expertRows = Tensor.Empty(_device, _c.DType, received, h);
        GatherRows.Run(arrived, local.Order, 1, expertRows);
        using var y = Tensor.Empty(_device, _c.DType, received, h);
        y.FillBytes(0); // dropped rows go back as zeros
        dropped = RunExperts(expertRows, y, local.HostCounts, firstExpert, capacity);

        // Results back to arrival order, then home, then combined.
        using var back = Tensor.Empty(_device, _c.DType, received, h);
        GatherRows.Run(y, local.Position, 1, back);
        using var returned = Tensor.Empty(_device, _c.DType, slots, h);
        ep.AllToAll(back, Scaled(receiveRows, h), returned, Scaled(sendRows, h));
        var mixed = Tensor.Empty(_device, _c.DType, tokens, h);
        MoeCombine.Run(returned, dispatch.Position, route.Weights, mixed);
        return mixed;
    }

    private static long[] Scaled(long[] rows, int width) => Array.ConvertAll(rows, r => r * width);

    // Top-k experts per token by router logit, and the softmax of those k logits as their weights.
    private Routed Route(Tensor normed)
    {
        int tokens = normed.Dim(0), k = _c.ExpertsPerToken;
        var kernels = _device.Kernels;
        using var logits = Tensor.Empty(_device, _c.DType, tokens, _c.Experts);
        kernels.Matmul(normed, _router.Value, logits);
        using var values = Tensor.Empty(_device, DType.F32, tokens, k);
        var experts = Tensor.Empty(_device, DType.I32, tokens, k);
        var weights = Tensor.Empty(_device, DType.F32, tokens, k);
        if (tokens > 0)
        {
            kernels.TopK(logits, k, values, experts);
            kernels.Softmax(values, weights, 1f);
        }
        return new Routed(experts, weights);
    }

    // Expert firstExpert + i over rows [start_i, start_i + min(count_i, capacity)) of x, into the same rows of y;
    // returns the rows left out for capacity.
    private long RunExperts(Tensor x, Tensor y, int[] counts, int firstExpert, long capacity)
    {
        var kernels = _device.Kernels;
        int start = 0, widest = counts.Length == 0 ? 0 : counts.Max();
        long dropped = 0;
        using var gate = Tensor.Empty(_device, _c.DType, widest, _c.Ffn);
        using var up = Tensor.Empty(_device, _c.DType, widest, _c.Ffn);
        for (int i = 0; i < counts.Length; i++)
        {
            int kept = (int)Math.Min(counts[i], capacity);
            dropped += counts[i] - kept;
            if (kept > 0)
            {
                var (w1, w3, w2) = _experts[firstExpert + i];
                var rows = x.Narrow(0, start, kept);
                var g = gate.Narrow(0, 0, kept);
                var u = up.Narrow(0, 0, kept);
                kernels.Matmul(rows, w1.Value, g);
                kernels.Matmul(rows, w3.Value, u);
                kernels.SwiGlu(g, u, g);
                kernels.Matmul(g, w2.Value, y.Narrow(0, start, kept));
            }
            start += counts[i];
        }
        return dropped;
    }

    private sealed record Routed(Tensor Experts, Tensor Weights) : IDisposable
    {
        public void Dispose()
        {
            Experts.Dispose();
            Weights.Dispose();
        }
    }

    // A token permutation planned on the device (MoePlan), with its bucket counts read back to the host.
    private sealed record Plan(Tensor Counts, Tensor Position, Tensor Order, int[] HostCounts) : IDisposable
    {
        public static Plan Make(IDevice device, Tensor keys, int keyBase, int divisor, int buckets)
        {
            int n = (int)keys.Count;
            var counts = Tensor.Empty(device, DType.I32, buckets);
            var position = Tensor.Empty(device, DType.I32, n);
            var order = Tensor.Empty(device, DType.I32, n);
            MoePlan.Run(keys, keyBase, divisor, counts, position, order);
            return new Plan(counts, position, order, counts.ToInts());
        }

        public void Dispose()
        {
            Counts.Dispose();
            Position.Dispose();
            Order.Dispose();
        }
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        _router.Dispose();
        foreach (var (g, u, d) in _experts.Values) { g.Dispose(); u.Dispose(); d.Dispose(); }
    }
}
