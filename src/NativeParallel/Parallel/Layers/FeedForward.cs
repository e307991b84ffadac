using NativeParallel.Tensors;

namespace NativeParallel.Parallel.Layers;

/// <summary>A decoder layer's feed-forward half: x += FFN(normed).</summary>
internal interface IFeedForward : IDisposable
{
    long WeightBytes { get; }

    void Forward(ForwardPass pass, Tensor normed, Tensor x);
}
