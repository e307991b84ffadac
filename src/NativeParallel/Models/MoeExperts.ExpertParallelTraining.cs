using NativeParallel.Comm;
using NativeParallel.Devices;
using NativeParallel.Kernels.Ops;
using NativeParallel.Parallel.Layers;
using NativeParallel.Tensors;

namespace NativeParallel.Models;

// Training under expert parallelism: ForwardExpertParallel's journey (route here, rows to the rank owning their
// expert, that rank's experts up to the capacity, results home, combine), keeping what backward reads; backward
// makes the journey in reverse, each all-to-all's backward being the all-to-all with the splits swapped, and each
// row gather's backward the gather by the inverse permutation of the same plan.
public sealed partial class MoeExperts
{
    /// <summary>
    /// Training forward with the experts spread over <paramref name="ep"/> (this rank holds experts
    /// [<paramref name="firstExpert"/>, + experts / ep)): the same rows, drops and outputs as
    /// <see cref="ForwardExpertParallel"/>, kept in <paramref name="a"/>; <see cref="Combine(MoeParallelActivations, Tensor)"/> finishes it.
    /// </summary>
    internal void ActivateExpertParallel(Tensor normed, MoeParallelActivations a, MoeScratch s, ProcessGroup ep, int firstExpert)
    {
        int tokens = normed.Dim(0), k = _c.ExpertsPerToken, slots = tokens * k, h = _c.Hidden, n = ep.Size, perRank = _c.Experts / n;
        RouteInto(normed, a.Experts, a.Weights, s);
        MoePlan.Run(a.Experts.View(slots), 0, perRank, a.DispatchCounts, a.DispatchPosition, a.DispatchOrder);
        var sending = a.DispatchCounts.ToInts();
        for (int r = 0; r < n; r++) a.SendRows[r] = sending[r];

        // Every rank's row count to every rank (metadata, on the host): receive splits and the capacity's base.
        using var mine = Tensor.FromLongs(CpuDevice.Instance, a.SendRows, n);
        using var everyone = Tensor.Empty(CpuDevice.Instance, DType.I64, n * n);
        ep.AllGather(mine, everyone);
        long[] matrix = everyone.ToLongs();
        for (int r = 0; r < n; r++) a.ReceiveRows[r] = matrix[r * n + ep.Rank];
        int received = a.Received = (int)a.ReceiveRows.Sum();

        // Rows and their expert ids to the ranks owning the experts.
        GatherRows.Run(normed, a.DispatchOrder, k, s.Sent);
        GatherRows.Run(a.Experts.View(slots, 1), a.DispatchOrder, 1, s.SentIds);
        var arrived = s.Arrived.Narrow(0, 0, received);
        var arrivedIds = s.ArrivedIds.Narrow(0, 0, received);
        ep.AllToAll(s.Sent, Scaled(a.SendRows, h), arrived, Scaled(a.ReceiveRows, h));
        ep.AllToAll(s.SentIds, a.SendRows, arrivedIds, a.ReceiveRows);

        // This rank's experts, each over its arrivals in order (by sending rank, then slot), up to the capacity.
        var position = a.LocalPosition.Narrow(0, 0, received);
        var order = a.LocalOrder.Narrow(0, 0, received);
        MoePlan.Run(arrivedIds.View(received), firstExpert, 1, a.LocalCounts, position, order);
        a.LocalCounts.ToInts().CopyTo(a.HostCounts, 0);
        GatherRows.Run(arrived, order, 1, a.ExpertRows.Narrow(0, 0, received));
        var y = s.Y.Narrow(0, 0, received);
        y.FillBytes(0); // dropped rows go home as zeros
        ExpertsForward(a.ExpertRows, a.Gate, a.Up, a.Act, y, a.HostCounts, a.Kept, firstExpert, Capacity(matrix.Sum()));

        // Results back to arrival order, then home.
        var back = s.Back.Narrow(0, 0, received);
        GatherRows.Run(y, position, 1, back);
        ep.AllToAll(back, Scaled(a.ReceiveRows, h), a.Returned, Scaled(a.SendRows, h));
    }

    /// <summary>Each token's expert outputs as they came home, weighted and summed in top-k order, into <paramref name="mixed"/>.</summary>
    internal static void Combine(MoeParallelActivations a, Tensor mixed) => MoeCombine.Run(a.Returned, a.DispatchPosition, a.Weights, mixed);

    /// <summary>
    /// Backward of <see cref="ActivateExpertParallel"/>: this rank's experts' gradients (from every rank's tokens),
    /// the router's (from this rank's), and ∂loss/∂<paramref name="normed"/> into <paramref name="dNormed"/>.
    /// </summary>
    internal void BackwardExpertParallel(Tensor dOut, Tensor normed, MoeParallelActivations a, MoeScratch s, ProcessGroup ep, int firstExpert,
        Tensor dNormed, Tensor dNormed2)
    {
        int received = a.Received, h = _c.Hidden;
        var position = a.LocalPosition.Narrow(0, 0, received);
        var order = a.LocalOrder.Narrow(0, 0, received);
        // Combine, then the results' journey home reversed: to the expert's rank, into expert order.
        MoeCombineBackward.Run(dOut, a.Returned, a.DispatchPosition, a.Weights, s.DReturned, s.DWeights);
        var dBack = s.DBack.Narrow(0, 0, received);
        ep.AllToAll(s.DReturned, Scaled(a.SendRows, h), dBack, Scaled(a.ReceiveRows, h));
        var dY = s.DY.Narrow(0, 0, received);
        GatherRows.Run(dBack, order, 1, dY);
        // This rank's experts.
        var dRows = s.DRows.Narrow(0, 0, received);
        ExpertsBackward(a.ExpertRows, a.Gate, a.Up, a.Act, dY, dRows, s, a.HostCounts, a.Kept, firstExpert);
        // The rows' journey reversed: to arrival order, back to the sending rank, summed per token in top-k order.
        var dArrived = s.DArrived.Narrow(0, 0, received);
        GatherRows.Run(dRows, position, 1, dArrived);
        ep.AllToAll(dArrived, Scaled(a.ReceiveRows, h), s.DSent, Scaled(a.SendRows, h));
        MoeCombine.Run(s.DSent, a.DispatchPosition, s.Ones, dNormed);
        RouterBackward(normed, a.Experts, a.Weights, s, dNormed, dNormed2);
    }
}
