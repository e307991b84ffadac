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
    /// everything backward reads, the experts' outputs included (dropped rows zero). <see cref="Combine(MoeActivations, Tensor)"/> finishes it.
    /// </summary>
    internal void Activate(Tensor normed, MoeActivations a, MoeScratch s)
    {
        int tokens = normed.Dim(0), k = _c.ExpertsPerToken, slots = tokens * k;
        RouteInto(normed, a.Experts, a.Weights, s);
        MoePlan.Run(a.Experts.View(slots), 0, 1, a.Counts, a.Position, a.Order);
        a.Counts.ToInts().CopyTo(a.HostCounts, 0); // the one host read: it sizes the experts' GEMMs
        GatherRows.Run(normed, a.Order, k, a.Rows);
        a.Y.FillBytes(0); // a dropped routing combines as zero
        ExpertsForward(a.Rows, a.Gate, a.Up, a.Act, a.Y, a.HostCounts, a.Kept, firstExpert: 0, Capacity(slots));
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
        int slots = a.Y.Dim(0);
        var dY = s.DY.Narrow(0, 0, slots);
        var dRows = s.DRows.Narrow(0, 0, slots);
        // Combine: each kept slot's output gradient, and each combine weight's.
        MoeCombineBackward.Run(dOut, a.Y, a.Position, a.Weights, dY, s.DWeights);
        ExpertsBackward(a.Rows, a.Gate, a.Up, a.Act, dY, dRows, s, a.HostCounts, a.Kept, firstExpert: 0);
        // Gather: each token's rows summed back in top-k order.
        MoeCombine.Run(dRows, a.Position, s.Ones, dNormed);
        RouterBackward(normed, a.Experts, a.Weights, s, dNormed, dNormed2);
    }

    // Top-k experts per token by router logit, and the softmax of those k logits as their weights.
    private void RouteInto(Tensor normed, Tensor experts, Tensor weights, MoeScratch s)
    {
        var kernels = _device.Kernels;
        kernels.Matmul(normed, _router.Value, s.Logits);
        kernels.TopK(s.Logits, _c.ExpertsPerToken, s.Values, experts);
        kernels.Softmax(s.Values, weights, 1f);
    }

    // Expert firstExpert + i over its first min(counts[i], capacity) rows of its block of rows (blocks in expert
    // order), keeping gate, up and act of those rows and writing their outputs into y; records what each kept.
    private void ExpertsForward(Tensor rows, Tensor gate, Tensor up, Tensor act, Tensor y, int[] counts, int[] kept, int firstExpert, long capacity)
    {
        var kernels = _device.Kernels;
        int start = 0;
        for (int i = 0; i < counts.Length; i++)
        {
            int n = kept[i] = (int)Math.Min(counts[i], capacity);
            if (n > 0)
            {
                var (w1, w3, w2) = _experts[firstExpert + i];
                Tensor R(Tensor t) => t.Narrow(0, start, n);
                kernels.Matmul(R(rows), w1.Value, R(gate));
                kernels.Matmul(R(rows), w3.Value, R(up));
                kernels.SwiGlu(R(gate), R(up), R(act));
                kernels.Matmul(R(act), w2.Value, R(y));
            }
            start += counts[i];
        }
    }

    // Each expert's backward over its kept rows: accumulates its weights' gradients and writes the gradient of its
    // input rows into dRows (zero for dropped rows).
    private void ExpertsBackward(Tensor rows, Tensor gate, Tensor up, Tensor act, Tensor dY, Tensor dRows, MoeScratch s, int[] counts, int[] kept, int firstExpert)
    {
        var kernels = _device.Kernels;
        dRows.FillBytes(0);
        int start = 0;
        for (int i = 0; i < counts.Length; i++)
        {
            int n = kept[i];
            if (n > 0)
            {
                var (w1, w3, w2) = _experts[firstExpert + i];
                Tensor R(Tensor t) => t.Narrow(0, start, n);
                MatmulBackward.InputGrad(R(dY), w2.Value, R(s.DAct));
                MatmulBackward.WeightGrad(R(dY), R(act), w2.Gradient, accumulate: true);
                SwiGluBackward.Run(R(gate), R(up), R(s.DAct), R(s.DGate), R(s.DUp));
                MatmulBackward.InputGrad(R(s.DGate), w1.Value, R(dRows));
                MatmulBackward.InputGrad(R(s.DUp), w3.Value, R(s.DRows2));
                kernels.Add(R(dRows), R(s.DRows2), R(dRows));
                MatmulBackward.WeightGrad(R(s.DGate), R(rows), w1.Gradient, accumulate: true);
                MatmulBackward.WeightGrad(R(s.DUp), R(rows), w3.Gradient, accumulate: true);
            }
            start += counts[i];
        }
    }

    // Router: through the softmax over the chosen logits, then the router matmul; adds its term to dNormed.
    private void RouterBackward(Tensor normed, Tensor experts, Tensor weights, MoeScratch s, Tensor dNormed, Tensor dNormed2)
    {
        MoeRouterBackward.Run(weights, s.DWeights, experts, s.DLogits);
        MatmulBackward.InputGrad(s.DLogits, _router.Value, dNormed2);
        _device.Kernels.Add(dNormed, dNormed2, dNormed);
        MatmulBackward.WeightGrad(s.DLogits, normed, _router.Gradient, accumulate: true);
    }
}
