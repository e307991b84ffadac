using NativeParallel.Devices;
using NativeParallel.Tensors;

namespace NativeParallel.Parallel.Layers;

/// <summary>
/// The final norm and the LM head with its vocabulary split over the TP group (column-parallel): the logits of the
/// region's tokens for this rank's vocabulary rows; the caller gathers the vocabulary.
/// </summary>
internal sealed class LmHead(IDevice device, RmsNormLayer finalNorm, Tensor head) : IDisposable
{
    public long WeightBytes => finalNorm.WeightBytes + head.Bytes;

    /// <summary>Logits (region tokens, vocabulary shard) of the residual rows <paramref name="x"/>; the caller owns them.</summary>
    public Tensor Forward(ForwardPass pass, Tensor x)
    {
        finalNorm.Forward(x, pass.Normed);
        var logits = Tensor.Empty(device, pass.Config.DType, pass.RegionTokens, head.Dim(0));
        device.Kernels.Matmul(pass.Enter(pass.Normed), head, logits);
        return logits;
    }

    public void Dispose()
    {
        finalNorm.Dispose();
        head.Dispose();
    }
}
