using NativeParallel.Devices;
using NativeParallel.Kernels.Ops;
using NativeParallel.Tensors;

namespace NativeParallel.Parallel.Layers;

/// <summary>
/// The token embedding with its vocabulary split over the TP group: this rank's rows [first, first + rows); an id
/// outside them gives a zero row, and leaving the TP region sums the ranks' rows into the full embedding.
/// </summary>
internal sealed class VocabParallelEmbedding(IDevice device, LayerWeight table, int firstVocab) : IDisposable
{
    public long WeightBytes => table.Bytes;

    /// <summary>x (the pass's residual rows) = the embedding of the pass's tokens of <paramref name="ids"/>.</summary>
    public void Forward(ForwardPass pass, int[] ids, Tensor x)
    {
        var mine = new int[pass.RegionTokens];
        for (int i = 0; i < mine.Length; i++) mine[i] = ids[pass.RegionOffset + i] - firstVocab;
        using var regionIds = Tensor.FromInts(device, mine, mine.Length);
        var partial = pass.Region.TokenSliced ? pass.Partial : x;
        device.Kernels.Embedding(regionIds, table.Value, partial);
        pass.Region.Leave(partial, x);
    }

    /// <summary>
    /// Training: x (this rank's residual rows) = the embedding of every token; <paramref name="localIds"/> (i32, B·T)
    /// are the ids minus this rank's first row, or −1 where another rank holds the row.
    /// </summary>
    public void Forward(TrainingPass pass, Tensor localIds, Tensor x)
    {
        var partial = pass.Region.TokenSliced ? pass.Projected : x;
        device.Kernels.Embedding(localIds, table.Value, partial);
        pass.Leave(partial, x);
    }

    /// <summary>Training backward: the table's gradient accumulates ∂loss/∂x (in <see cref="TrainingPass.Dx"/>) at each token's row.</summary>
    public void Backward(TrainingPass pass, Tensor localIds) => EmbeddingBackward.Run(localIds, pass.Enter(pass.Dx), table.Gradient);

    public void Dispose() => table.Dispose();
}
