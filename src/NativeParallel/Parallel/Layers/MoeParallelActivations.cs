using NativeParallel.Tensors;

namespace NativeParallel.Parallel.Layers;

/// <summary>
/// What an expert-parallel MoE layer's backward reads, one micro-batch's worth: the routing (chosen experts and
/// weights), the dispatch plan (slots sorted by the rank owning their expert), the rows each rank sent and received
/// (<see cref="SendRows"/>, <see cref="ReceiveRows"/>: the all-to-all splits, which backward runs in reverse), the
/// local plan of the rows that arrived (sorted by this rank's experts, in arrival order), the rows this rank's
/// experts ran over with their gate, up and activation, and the experts' outputs as they came home
/// (<see cref="Returned"/>, in dispatch order, zero where a routing was dropped). The arrival buffers are sized for
/// the most rows that can arrive (every rank's every routing): what arrived fills their first
/// <see cref="Received"/> rows.
/// </summary>
internal sealed record MoeParallelActivations(Tensor Experts, Tensor Weights, Tensor DispatchCounts, Tensor DispatchPosition, Tensor DispatchOrder,
    Tensor Returned, Tensor LocalCounts, Tensor LocalPosition, Tensor LocalOrder, Tensor ExpertRows, Tensor Gate, Tensor Up, Tensor Act,
    long[] SendRows, long[] ReceiveRows, int[] HostCounts, int[] Kept) : FeedForwardActivations
{
    /// <summary>Rows that arrived in the last forward.</summary>
    public int Received { get; set; }

    public static MoeParallelActivations Allocate(TrainingPass pass, int ranks)
    {
        var c = pass.Config;
        int n = pass.Tokens, k = c.ExpertsPerToken, slots = n * k, most = slots * ranks, perRank = c.Experts / ranks;
        Tensor A(DType t, params int[] shape) => pass.Allocate(t, shape);
        return new MoeParallelActivations(A(DType.I32, n, k), A(DType.F32, n, k), A(DType.I32, ranks), A(DType.I32, slots), A(DType.I32, slots),
            A(pass.DType, slots, c.Hidden), A(DType.I32, perRank), A(DType.I32, most), A(DType.I32, most), A(pass.DType, most, c.Hidden),
            A(pass.DType, most, c.Ffn), A(pass.DType, most, c.Ffn), A(pass.DType, most, c.Ffn), new long[ranks], new long[ranks], new int[perRank], new int[perRank]);
    }

    /// <summary>Routings this rank's experts dropped for capacity in the last forward.</summary>
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
