using NativeParallel.Devices;
using NativeParallel.Models;
using NativeParallel.Tensors;

namespace NativeParallel.Parallel.Layers;

/// <summary>
/// Mixtral's MoE FFN, not TP-split: every rank runs it whole over its residual rows, with this rank's experts
/// (all of them, or its share of the EP group's, the tokens travelling by all-to-all). Counts the routings its
/// experts dropped for capacity.
/// </summary>
internal sealed class MoeLayer(IDevice device, MoeExperts experts) : IFeedForward
{
    public long WeightBytes => experts.WeightBytes;

    public long DroppedTokens { get; private set; }

    public void Forward(ForwardPass pass, Tensor normed, Tensor x)
    {
        var p = pass.Layout;
        long dropped = 0;
        using var mixed = p.Ep.Size > 1 ? experts.ForwardExpertParallel(normed, p.Ep, p.FirstExpert, out dropped) : experts.Forward(normed);
        DroppedTokens += dropped;
        device.Kernels.Add(x, mixed, x);
    }

    public void Dispose() => experts.Dispose();
}
