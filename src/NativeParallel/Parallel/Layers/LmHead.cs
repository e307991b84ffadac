using NativeParallel.Devices;
using NativeParallel.Kernels.Ops;
using NativeParallel.Tensors;

namespace NativeParallel.Parallel.Layers;

/// <summary>
/// The final norm and the LM head with its vocabulary split over the TP group (column-parallel): the logits of the
/// region's tokens for this rank's vocabulary rows; the caller gathers the vocabulary (inference) or computes the
/// vocabulary-parallel loss (training).
/// </summary>
internal sealed class LmHead(IDevice device, RmsNormLayer finalNorm, LayerWeight head) : IDisposable
{
    public long WeightBytes => finalNorm.WeightBytes + head.Bytes;

    /// <summary>Logits (region tokens, vocabulary shard) of the residual rows <paramref name="x"/>; the caller owns them.</summary>
    public Tensor Forward(ForwardPass pass, Tensor x)
    {
        finalNorm.Forward(x, pass.Normed);
        var logits = Tensor.Empty(device, pass.Config.DType, pass.RegionTokens, head.Value.Dim(0));
        device.Kernels.Matmul(pass.Enter(pass.Normed), head.Value, logits);
        return logits;
    }

    /// <summary>Training: <paramref name="logits"/> (B·T, vocabulary shard) of the residual rows <paramref name="x"/>, keeping the norm's output in <paramref name="normed"/>.</summary>
    public void Forward(TrainingPass pass, Tensor x, Tensor normed, Tensor logits)
    {
        finalNorm.Forward(x, normed);
        device.Kernels.Matmul(pass.Enter(normed), head.Value, logits);
    }

    /// <summary>
    /// Training backward from ∂loss/∂logits: accumulates the head's and the norm's gradients and leaves ∂loss/∂x in
    /// <see cref="TrainingPass.Dx"/>.
    /// </summary>
    public void Backward(TrainingPass pass, Tensor x, Tensor normed, Tensor dLogits)
    {
        MatmulBackward.InputGrad(dLogits, head.Value, pass.DNormed);
        var dNormed = pass.Leave(pass.DNormed);  // vocabulary-parallel head: each rank's columns' share
        MatmulBackward.WeightGrad(dLogits, pass.Enter(normed), head.Gradient, accumulate: true);
        finalNorm.Backward(x, dNormed, pass.Dx);
    }

    public void Dispose()
    {
        finalNorm.Dispose();
        head.Dispose();
    }
}
