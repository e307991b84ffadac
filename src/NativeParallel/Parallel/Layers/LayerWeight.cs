using NativeParallel.Tensors;

namespace NativeParallel.Parallel.Layers;

/// <summary>
/// A layer's weight as forward reads it and, when the layer is trained, where backward accumulates its gradient.
/// An inference layer owns its weights (a plain tensor converts to a weight without a gradient); a trained layer
/// holds views of the trainer's flat buffers (the working copy and the gradient).
/// </summary>
internal readonly record struct LayerWeight(Tensor Value, Tensor? Grad = null)
{
    public static implicit operator LayerWeight(Tensor value) => new(value);

    /// <summary>The gradient backward accumulates into; a layer built for inference has none.</summary>
    public Tensor Gradient => Grad ?? throw new InvalidOperationException(
        $"backward needs a gradient for the weight {Value}: this layer was built for inference; build it from the trainer's parameters");

    public long Bytes => Value.Bytes;

    /// <summary>Disposes the value; a view of a trainer's buffer owns no storage, so this frees nothing there.</summary>
    public void Dispose() => Value.Dispose();
}
