using NativeParallel.Comm;
using NativeParallel.Devices;
using NativeParallel.Models;
using NativeParallel.Tensors;

namespace NativeParallel.Parallel.Layers;

/// <summary>
/// Mixtral's MoE FFN, not TP-split: every rank runs it whole over its residual rows, with this rank's experts
/// (all of them, or its share of the EP group's, the tokens travelling by all-to-all). Counts the routings its
/// experts dropped for capacity. Trains with every expert here (<see cref="MoeActivations"/>), or with this rank's
/// share of the experts of <paramref name="trainingEp"/>, starting at <paramref name="trainingFirstExpert"/>
/// (<see cref="MoeParallelActivations"/>).
/// </summary>
internal sealed class MoeLayer(IDevice device, MoeExperts experts, ProcessGroup? trainingEp = null, int trainingFirstExpert = 0) : IFeedForward
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

    public FeedForwardActivations Keep(TrainingPass pass)
    {
        Require(pass);
        return trainingEp is null ? MoeActivations.Allocate(pass) : MoeParallelActivations.Allocate(pass, trainingEp.Size);
    }

    public void Activate(TrainingPass pass, Tensor normed, FeedForwardActivations a)
    {
        if (a is MoeParallelActivations parallel) experts.ActivateExpertParallel(normed, parallel, Scratch(pass), trainingEp!, trainingFirstExpert);
        else experts.Activate(normed, (MoeActivations)a, Scratch(pass));
    }

    public void Project(TrainingPass pass, FeedForwardActivations a, Tensor residual, Tensor output)
    {
        if (a is MoeParallelActivations parallel) MoeExperts.Combine(parallel, pass.Projected);
        else MoeExperts.Combine((MoeActivations)a, pass.Projected);
        device.Kernels.Add(residual, pass.Projected, output);
    }

    public Tensor Backward(TrainingPass pass, Tensor normed, FeedForwardActivations a)
    {
        if (a is MoeParallelActivations parallel)
            experts.BackwardExpertParallel(pass.Dx, normed, parallel, Scratch(pass), trainingEp!, trainingFirstExpert, pass.DNormed, pass.DNormed2);
        else experts.Backward(pass.Dx, normed, (MoeActivations)a, Scratch(pass), pass.DNormed, pass.DNormed2);
        return pass.DNormed;
    }

    private static MoeScratch Scratch(TrainingPass pass) =>
        pass.Moe ?? throw new InvalidOperationException("this training pass was built for a dense model: it has no MoE scratch");

    // The experts are not cut by tensor parallelism: each token row must be whole on this rank.
    private static void Require(TrainingPass pass)
    {
        if (pass.Rows != pass.Tokens || pass.Region.TokenSliced)
            throw new NotSupportedException("a MoE layer trains over whole token rows: tensor and sequence parallelism do not split its experts; use dp, pp or ep");
    }

    public void Dispose() => experts.Dispose();
}
