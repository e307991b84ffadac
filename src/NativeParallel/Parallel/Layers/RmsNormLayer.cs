using NativeParallel.Devices;
using NativeParallel.Kernels.Ops;
using NativeParallel.Tensors;

namespace NativeParallel.Parallel.Layers;

/// <summary>RMSNorm over the hidden size, its weight replicated on every rank (it sees whole hidden states).</summary>
internal sealed class RmsNormLayer(IDevice device, LayerWeight weight, float eps) : IDisposable
{
    public long WeightBytes => weight.Bytes;

    /// <summary>output = x / rms(x) · weight, row by row.</summary>
    public void Forward(Tensor x, Tensor output) => device.Kernels.RmsNorm(x, weight.Value, output, eps);

    /// <summary>dx = ∂loss/∂x from <paramref name="dOutput"/>; the weight's gradient accumulates over these rows.</summary>
    public void Backward(Tensor x, Tensor dOutput, Tensor dx) => RmsNormBackward.Run(x, weight.Value, dOutput, dx, weight.Gradient, eps);

    public void Dispose() => weight.Dispose();
}
