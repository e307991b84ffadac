using NativeParallel.Devices;
using NativeParallel.Kernels.Ops;
using NativeParallel.Tensors;

namespace NativeParallel.Parallel.Layers;

/// <summary>
/// The SwiGLU MLP over this rank's columns: gate and up column-parallel (a block of the MLP width), down
/// row-parallel, whose partial sums leave the TP region. Training keeps gate, up and their product for backward
/// (<see cref="MlpActivations"/>) and accumulates the weights' gradients.
/// </summary>
internal sealed class MlpLayer(IDevice device, LayerWeight gate, LayerWeight up, LayerWeight down) : IFeedForward
{
    public long WeightBytes => gate.Bytes + up.Bytes + down.Bytes;

    public void Forward(ForwardPass pass, Tensor normed, Tensor x)
    {
        var kernels = device.Kernels;
        var input = pass.Enter(normed);
        kernels.Matmul(input, gate.Value, pass.Gate!);
        kernels.Matmul(input, up.Value, pass.Up!);
        kernels.SwiGlu(pass.Gate!, pass.Up!, pass.Gate!);
        kernels.Matmul(pass.Gate!, down.Value, pass.Partial);
        kernels.Add(x, pass.LeavePartial(), x); // row-parallel down_proj
    }

    public FeedForwardActivations Keep(TrainingPass pass)
    {
        Tensor A() => pass.Allocate(pass.DType, [pass.Tokens, pass.FfnShard]);
        return new MlpActivations(A(), A(), A());
    }

    /// <summary>Training: gate, up and swiglu(gate, up) of the residual rows <paramref name="normed"/>, kept in <paramref name="kept"/>.</summary>
    public void Activate(TrainingPass pass, Tensor normed, FeedForwardActivations kept)
    {
        var a = (MlpActivations)kept;
        var kernels = device.Kernels;
        var input = pass.Enter(normed);
        kernels.Matmul(input, gate.Value, a.Gate);
        kernels.Matmul(input, up.Value, a.Up);
        kernels.SwiGlu(a.Gate, a.Up, a.Act);
    }

    /// <summary>Training: output = residual + down(act), the row-parallel partial sums leaving the region.</summary>
    public void Project(TrainingPass pass, FeedForwardActivations kept, Tensor residual, Tensor output)
    {
        var a = (MlpActivations)kept;
        var kernels = device.Kernels;
        kernels.Matmul(a.Act, down.Value, pass.Projected);
        kernels.Add(residual, pass.Leave(pass.Projected), output);
    }

    /// <summary>
    /// Backward from ∂loss/∂(the block's output) in <see cref="TrainingPass.Dx"/>: accumulates the gate, up and down
    /// gradients and returns ∂loss/∂<paramref name="normed"/> (this rank's residual rows, summed over the group).
    /// </summary>
    public Tensor Backward(TrainingPass pass, Tensor normed, FeedForwardActivations kept)
    {
        var a = (MlpActivations)kept;
        var kernels = device.Kernels;
        var dOutput = pass.Enter(pass.Dx);
        MatmulBackward.InputGrad(dOutput, down.Value, pass.DAct);
        MatmulBackward.WeightGrad(dOutput, a.Act, down.Gradient, accumulate: true);
        SwiGluBackward.Run(a.Gate, a.Up, pass.DAct, pass.DGate, pass.DUp);
        MatmulBackward.InputGrad(pass.DGate, gate.Value, pass.DNormed);
        MatmulBackward.InputGrad(pass.DUp, up.Value, pass.DNormed2);
        kernels.Add(pass.DNormed, pass.DNormed2, pass.DNormed);
        var dNormed = pass.Leave(pass.DNormed);  // column-parallel gate/up: each rank's share of ∂/∂normed
        var input = pass.Enter(normed);
        MatmulBackward.WeightGrad(pass.DGate, input, gate.Gradient, accumulate: true);
        MatmulBackward.WeightGrad(pass.DUp, input, up.Gradient, accumulate: true);
        return dNormed;
    }

    public void Dispose()
    {
        gate.Dispose();
        up.Dispose();
        down.Dispose();
    }
}

/// <summary>What the MLP's backward reads: gate and up (B·T, this rank's MLP width) and swiglu(gate, up).</summary>
internal sealed record MlpActivations(Tensor Gate, Tensor Up, Tensor Act) : FeedForwardActivations;
