using NativeParallel.Kernels.Ops;
using NativeParallel.Parallel.Layers;
using NativeParallel.Tensors;

namespace NativeParallel.Models;

// Training on one device: the forward that keeps what backward reads, and backward, one backward op per forward op
// in reverse: the combine (moe_combine_bwd), each expert's SwiGLU MLP over its kept rows, the gather (moe_combine
// with unit weights: the transpose of a gather by the plan), and the router (moe_router_bwd, then the matmul's).
public sealed partial class MoeExperts
{
    /// <summary>
    /// The most rows each expert takes from one call's <paramref name="routed"/> routings: ceil(factor × routed /
    /// experts) with the config's capacity factor (the rule <see cref="ForwardExpertParallel"/> applies), unlimited
    /// when the factor is 0. Each expert keeps its first routings in slot order.
    /// </summary>
    internal long Capacity(long routed) => _c.CapacityFactor > 0 ? (long)Math.Ceiling(_c.CapacityFactor * routed / _c.Experts) : long.MaxValue;

    /// <summary>
    /// Training forward over every expert here: routes <paramref name="normed"/> (tokens, hidden), plans the
    /// permutation, runs each expert over its first rows up to the capacity and keeps, in <paramref name="a"/>,
    /// everything backward reads, the experts' outputs included (dropped rows zero). <see cref="Combine"/> finishes it.
    /// </summary>
    internal void Activate(Tensor normed, MoeActivations a, MoeScratch s)
    {
        var kernels = _device.Kernels;
        int tokens = normed.Dim(0), k = _c.ExpertsPerToken, slots = tokens * k;
        kernels.Matmul(normed, _router.Value, s.Logits);
        kernels.TopK(s.Logits, k, s.Values, a.Experts);
        kernels.Softmax(s.Values, a.Weights, 1f);
        MoePlan.Run(a.Experts.View(slots), 0, 1, a.Counts, a.Position, a.Order);
        a.Counts.ToInts().CopyTo(a.HostCounts, 0); // the one host read: it sizes the experts' GEMMs
        GatherRows.Run(normed, a.Order, k, a.Rows);
        a.Y.FillBytes(0); // a dropped routing combines as zero
        long capacity = Capacity(slots);
        int start = 0;
        for (int i = 0; i < a.HostCounts.Length; i++)
        {
            int kept = a.Kept[i] = (int)Math.Min(a.HostCounts[i], capacity);
            if (kept > 0)
            {
                var (w1, w3, w2) = _experts[i];
                var rows = a.Rows.Narrow(0, start, kept);
                var gate = a.Gate.Narrow(0, start, kept);
                var up = a.Up.Narrow(0, start, kept);
                var act = a.Act.Narrow(0, start, kept);
                kernels.Matmul(rows, w1.Value, gate);
                kernels.Matmul(rows, w3.Value, up);
                kernels.SwiGlu(gate, up, act);
                kernels.Matmul(act, w2.Value, a.Y.Narrow(0, start, kept));
            }
            start += a.HostCounts[i];
        }
    }

    /// <summary>Each token's expert outputs, weighted and summed in top-k order, into <paramref name="mixed"/> (tokens, hidden).</summary>
    internal static void Combine(MoeActivations a, Tensor mixed) => MoeCombine.Run(a.Y, a.Position, a.Weights, mixed);

    /// <summary>
    /// Backward from ∂loss/∂(the FFN's output) <paramref name="dOut"/> (tokens, hidden): accumulates the router's and
    /// every expert's weight gradients and writes ∂loss/∂<paramref name="normed"/> into <paramref name="dNormed"/>,
    /// using <paramref name="dNormed2"/> for the router's term.
    /// </summary>
    internal void Backward(Tensor dOut, Tensor normed, MoeActivations a, MoeScratch s, Tensor dNormed, Tensor dNormed2)
    {
        var kernels = _device.Kernels;
        // Combine: each kept slot's output gradient, and each combine weight's.
        MoeCombineBackward.Run(dOut, a.Y, a.Position, a.Weights, s.DY, s.DWeights);
        // Experts, each over its kept rows; a dropped row's input gradient stays zero.
        s.DRows.FillBytes(0);
        int start = 0;
        for (int i = 0; i < a.HostCounts.Length; i++)
        {
            int kept = a.Kept[i];
            if (kept > 0)
            {
                var (w1, w3, w2) = _experts[i];
                Tensor R(Tensor t) => t.Narrow(0, start, kept);
                var dY = R(s.DY);
                MatmulBackward.InputGrad(dY, w2.Value, R(s.DAct));
                MatmulBackward.WeightGrad(dY, R(a.Act), w2.Gradient, accumulate: true);
                SwiGluBackward.Run(R(a.Gate), R(a.Up), R(s.DAct), R(s.DGate), R(s.DUp));
                MatmulBackward.InputGrad(R(s.DGate), w1.Value, R(s.DRows));
                MatmulBackward.InputGrad(R(s.DUp), w3.Value, R(s.DRows2));
                kernels.Add(R(s.DRows), R(s.DRows2), R(s.DRows));
                MatmulBackward.WeightGrad(R(s.DGate), R(a.Rows), w1.Gradient, accumulate: true);
                MatmulBackward.WeightGrad(R(s.DUp), R(a.Rows), w3.Gradient, accumulate: true);
            }
            start += a.HostCounts[i];
        }
        // Gather: each token's rows summed back in top-k order.
        MoeCombine.Run(s.DRows, a.Position, s.Ones, dNormed);
        // Router: through the softmax over the chosen logits, then the router matmul.
        MoeRouterBackward.Run(a.Weights, s.DWeights, a.Experts, s.DLogits);
        MatmulBackward.InputGrad(s.DLogits, _router.Value, dNormed2);
        kernels.Add(dNormed, dNormed2, dNormed);
        MatmulBackward.WeightGrad(s.DLogits, normed, _router.Gradient, accumulate: true);
    }
}
