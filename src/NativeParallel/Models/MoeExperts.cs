using NativeParallel.Devices;
using NativeParallel.Tensors;

namespace NativeParallel.Models;

/// <summary>
/// The experts of one MoE layer that live on one device (all of them, or an expert-parallel rank's share), the
/// router, and the two halves of the MoE FFN: routing tokens (<see cref="Route"/>) and running one expert over the
/// rows sent to it (<see cref="RunExpert"/>). Tokens are gathered and scattered on the host; the expert MLPs and
/// the router run as device kernels.
/// </summary>
public sealed class MoeExperts : IDisposable
{
    private readonly IDevice _device;
    private readonly LlamaConfig _c;
    private readonly Tensor _router;
    private readonly Dictionary<int, (Tensor Gate, Tensor Up, Tensor Down)> _experts = new();

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

    /// <summary>Bytes of router and expert weights here.</summary>
    public long WeightBytes => _router.Bytes + _experts.Values.Sum(e => e.Gate.Bytes + e.Up.Bytes + e.Down.Bytes);

    /// <summary>Each token's experts and weights, from the router over <paramref name="normed"/> (tokens, hidden).</summary>
    public MoeRouting.Route[] Route(Tensor normed)
    {
        using var logits = Tensor.Empty(_device, _c.DType, normed.Dim(0), _c.Experts);
        _device.Kernels.Matmul(normed, _router, logits);
        return MoeRouting.Select(logits.ToFloats(), _c.Experts, _c.ExpertsPerToken);
    }

    /// <summary>Expert <paramref name="expert"/>'s SwiGLU MLP over <paramref name="rows"/> (n × hidden floats); returns n × hidden.</summary>
    public float[] RunExpert(int expert, float[] rows)
    {
        int n = rows.Length / _c.Hidden;
        if (n == 0) return [];
        var (gate, up, down) = _experts[expert];
        var k = _device.Kernels;
        using var x = Tensor.FromFloats(_device, rows, _c.DType, n, _c.Hidden);
        using var g = Tensor.Empty(_device, _c.DType, n, _c.Ffn);
        using var u = Tensor.Empty(_device, _c.DType, n, _c.Ffn);
        using var y = Tensor.Empty(_device, _c.DType, n, _c.Hidden);
        k.Matmul(x, gate, g);
        k.Matmul(x, up, u);
        k.SwiGlu(g, u, g);
        k.Matmul(g, down, y);
        return y.ToFloats();
    }

    /// <summary>
    /// The whole MoE FFN with every expert here: route, run each expert over its tokens, and combine each token's
    /// outputs in its top-k order (Σ w_j · y_j), the order every layout uses.
    /// </summary>
    public float[] Forward(Tensor normed)
    {
        var routes = Route(normed);
        var x = normed.ToFloats();
        int h = _c.Hidden, tokens = routes.Length;
        var outputs = new float[tokens][][];
        for (int t = 0; t < tokens; t++) outputs[t] = new float[routes[t].Experts.Length][];
        for (int e = 0; e < _c.Experts; e++)
        {
            var slots = new List<(int Token, int Slot)>();
            for (int t = 0; t < tokens; t++)
                for (int j = 0; j < routes[t].Experts.Length; j++)
                    if (routes[t].Experts[j] == e) slots.Add((t, j));
            if (slots.Count == 0) continue;
            var rows = new float[slots.Count * h];
            for (int i = 0; i < slots.Count; i++) x.AsSpan(slots[i].Token * h, h).CopyTo(rows.AsSpan(i * h));
            var y = RunExpert(e, rows);
            for (int i = 0; i < slots.Count; i++) outputs[slots[i].Token][slots[i].Slot] = y.AsSpan(i * h, h).ToArray();
        }
        return Combine(routes, outputs, h);
    }

    /// <summary>out[t] = Σ_j w_j · y_(t,j) in top-k order; a dropped slot (null) contributes nothing.</summary>
    public static float[] Combine(MoeRouting.Route[] routes, float[]?[][] outputs, int hidden)
    {
        var result = new float[routes.Length * hidden];
        for (int t = 0; t < routes.Length; t++)
            for (int j = 0; j < routes[t].Experts.Length; j++)
            {
                if (outputs[t][j] is not { } y) continue;
                float w = routes[t].Weights[j];
                var row = result.AsSpan(t * hidden, hidden);
                for (int i = 0; i < hidden; i++) row[i] += w * y[i];
            }
        return result;
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        _router.Dispose();
        foreach (var (g, u, d) in _experts.Values) { g.Dispose(); u.Dispose(); d.Dispose(); }
    }
}
