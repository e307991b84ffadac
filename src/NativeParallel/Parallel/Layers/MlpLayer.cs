using NativeParallel.Devices;
using NativeParallel.Tensors;

namespace NativeParallel.Parallel.Layers;

/// <summary>
/// The SwiGLU MLP over this rank's columns: gate and up column-parallel (a block of the MLP width), down
/// row-parallel, whose partial sums leave the TP region.
/// </summary>
internal sealed class MlpLayer(IDevice device, Tensor gate, Tensor up, Tensor down) : IFeedForward
{
    public long WeightBytes => gate.Bytes + up.Bytes + down.Bytes;

    public void Forward(ForwardPass pass, Tensor normed, Tensor x)
    {
        var kernels = device.Kernels;
        var input = pass.Enter(normed);
        kernels.Matmul(input, gate, pass.Gate!);
        kernels.Matmul(input, up, pass.Up!);
        kernels.SwiGlu(pass.Gate!, pass.Up!, pass.Gate!);
        kernels.Matmul(pass.Gate!, down, pass.Partial);
        kernels.Add(x, pass.LeavePartial(), x); // row-parallel down_proj
    }

    public void Dispose()
    {
        gate.Dispose();
        up.Dispose();
        down.Dispose();
    }
}
