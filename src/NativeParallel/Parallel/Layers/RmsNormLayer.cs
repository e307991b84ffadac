using NativeParallel.Devices;
using NativeParallel.Tensors;

namespace NativeParallel.Parallel.Layers;

/// <summary>RMSNorm over the hidden size, its weight replicated on every rank (it sees whole hidden states).</summary>
internal sealed class RmsNormLayer(IDevice device, Tensor weight, float eps) : IDisposable
{
    public long WeightBytes => weight.Bytes;

    /// <summary>output = x / rms(x) · weight, row by row.</summary>
    public void Forward(Tensor x, Tensor output) => device.Kernels.RmsNorm(x, weight, output, eps);

    public void Dispose() => weight.Dispose();
}
