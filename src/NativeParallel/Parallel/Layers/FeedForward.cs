using NativeParallel.Tensors;

namespace NativeParallel.Parallel.Layers;

/// <summary>
/// A decoder layer's feed-forward half: x += FFN(normed). Inference calls <see cref="Forward"/>; training splits it
/// in two (<see cref="Activate"/> keeps what backward reads, <see cref="Project"/> adds the output to the residual,
/// which recomputation skips) and runs <see cref="Backward"/>, so the decoder layer trains a dense MLP and a MoE
/// FFN alike.
/// </summary>
internal interface IFeedForward : IDisposable
{
    long WeightBytes { get; }

    void Forward(ForwardPass pass, Tensor normed, Tensor x);

    /// <summary>Buffers for what this layer's backward reads, one micro-batch's worth.</summary>
    FeedForwardActivations Keep(TrainingPass pass);

    /// <summary>Training: everything backward reads from the residual rows <paramref name="normed"/>, into <paramref name="a"/>.</summary>
    void Activate(TrainingPass pass, Tensor normed, FeedForwardActivations a);

    /// <summary>Training: output = residual + FFN(normed), from what <see cref="Activate"/> kept.</summary>
    void Project(TrainingPass pass, FeedForwardActivations a, Tensor residual, Tensor output);

    /// <summary>
    /// Backward from ∂loss/∂(the block's output) in <see cref="TrainingPass.Dx"/>: accumulates the weights' gradients
    /// and returns ∂loss/∂<paramref name="normed"/> (this rank's residual rows).
    /// </summary>
    Tensor Backward(TrainingPass pass, Tensor normed, FeedForwardActivations a);
}

/// <summary>What a feed-forward layer's backward reads; each kind of layer has its own.</summary>
internal abstract record FeedForwardActivations;
