using NativeParallel.Tensors;

namespace NativeParallel.Parallel.Layers;

/// <summary>
/// What a MoE layer's backward reads, one micro-batch's worth: each token's chosen experts and their weights (the
/// softmax over the top-k logits), the plan of the token permutation (per-expert counts, slot → sorted row and back),
/// the gathered rows each expert ran over, each expert's gate, up and swiglu(gate, up) of them, and the experts'
/// outputs in sorted-row order (zero where a routing was dropped for capacity). <see cref="HostCounts"/> are the
/// plan's counts as the host read them in forward, and <see cref="Kept"/> how many rows of each expert ran: they
/// size backward's per-expert GEMMs without another read.
/// </summary>
internal sealed record MoeActivations(Tensor Experts, Tensor Weights, Tensor Counts, Tensor Position, Tensor Order, Tensor Rows, Tensor Gate, Tensor Up,
    Tensor Act, Tensor Y, int[] HostCounts, int[] Kept) : FeedForwardActivations
{
    public static MoeActivations Allocate(TrainingPass pass)
    {
        var c = pass.Config;
        int n = pass.Tokens, k = c.ExpertsPerToken, slots = n * k;
        Tensor A(DType t, params int[] shape) => pass.Allocate(t, shape);
        return new MoeActivations(A(DType.I32, n, k), A(DType.F32, n, k), A(DType.I32, c.Experts), A(DType.I32, slots), A(DType.I32, slots),
            A(pass.DType, slots, c.Hidden), A(pass.DType, slots, c.Ffn), A(pass.DType, slots, c.Ffn), A(pass.DType, slots, c.Ffn), A(pass.DType, slots, c.Hidden),
            new int[c.Experts], new int[c.Experts]);
    }

    /// <summary>Routings the last forward dropped for capacity.</summary>
    public long Dropped
    {
        get
        {
            long dropped = 0;
            for (int e = 0; e < HostCounts.Length; e++) dropped += HostCounts[e] - Kept[e];
            return dropped;
        }
    }
}

/// <summary>
/// A MoE layer's scratch in a training pass, shared by the layers, each overwritten before it is read: the router
/// logits and the top-k values of forward; in backward the gradients of the experts' outputs, of their gate, up and
/// activation, of their input rows (two terms), of the combine weights and of the router logits, and the unit
/// weights that turn <c>moe_combine</c> into the gather's backward; under expert parallelism the all-to-alls' buffers.
/// </summary>
internal sealed class MoeScratch
{
    /// <param name="pass">The pass whose buffers these are.</param>
    /// <param name="ranks">
    /// The expert-parallel group's size: the experts' rows are then the ones that arrived, at most every rank's
    /// every routing, and the all-to-alls' send and receive buffers are added.
    /// </param>
    public MoeScratch(TrainingPass pass, int ranks)
    {
        var c = pass.Config;
        int n = pass.Tokens, k = c.ExpertsPerToken, slots = n * k, h = c.Hidden, f = c.Ffn, most = slots * ranks, ep = ranks > 1 ? 1 : 0;
        Tensor A(DType t, params int[] shape) => pass.Allocate(t, shape);
        Logits = A(pass.DType, n, c.Experts);
        Values = A(DType.F32, n, k);
        DY = A(pass.DType, most, h);
        DRows = A(pass.DType, most, h);
        DRows2 = A(pass.DType, most, h);
        DAct = A(pass.DType, most, f);
        DGate = A(pass.DType, most, f);
        DUp = A(pass.DType, most, f);
        Sent = A(pass.DType, ep * slots, h);
        SentIds = A(DType.I32, ep * slots, 1);
        Arrived = A(pass.DType, ep * most, h);
        ArrivedIds = A(DType.I32, ep * most, 1);
        Y = A(pass.DType, ep * most, h);
        Back = A(pass.DType, ep * most, h);
        DReturned = A(pass.DType, ep * slots, h);
        DBack = A(pass.DType, ep * most, h);
        DArrived = A(pass.DType, ep * most, h);
        DSent = A(pass.DType, ep * slots, h);
        DWeights = A(DType.F32, n, k);
        DLogits = A(pass.DType, n, c.Experts);
        Ones = A(DType.F32, n, k);
        var ones = new float[n * k];
        Array.Fill(ones, 1f);
        Ones.CopyFromHost(System.Runtime.InteropServices.MemoryMarshal.AsBytes(ones.AsSpan()));
    }

    public Tensor Logits { get; }
    public Tensor Values { get; }
    public Tensor DY { get; }
    public Tensor DRows { get; }
    public Tensor DRows2 { get; }
    public Tensor DAct { get; }
    public Tensor DGate { get; }
    public Tensor DUp { get; }
    public Tensor DWeights { get; }
    public Tensor DLogits { get; }
    public Tensor Ones { get; }
    // Expert parallelism's (empty on one device): the rows and expert ids sent, those that arrived, the experts'
    // outputs and the rows going home; in backward the same journeys reversed.
    public Tensor Sent { get; }
    public Tensor SentIds { get; }
    public Tensor Arrived { get; }
    public Tensor ArrivedIds { get; }
    public Tensor Y { get; }
    public Tensor Back { get; }
    public Tensor DReturned { get; }
    public Tensor DBack { get; }
    public Tensor DArrived { get; }
    public Tensor DSent { get; }
}
