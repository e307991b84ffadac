using NativeParallel.Devices;
using NativeParallel.Tensors;

namespace NativeParallel.Parallel.Layers;

/// <summary>
/// The token embedding with its vocabulary split over the TP group: this rank's rows [first, first + rows); an id
/// outside them gives a zero row, and leaving the TP region sums the ranks' rows into the full embedding.
/// </summary>
internal sealed class VocabParallelEmbedding(IDevice device, Tensor table, int firstVocab) : IDisposable
{
    public long WeightBytes => table.Bytes;

    /// <summary>x (the pass's residual rows) = the embedding of the pass's tokens of <paramref name="ids"/>.</summary>
    public void Forward(ForwardPass pass, int[] ids, Tensor x)
    {
        var mine = new int[pass.RegionTokens];
        for (int i = 0; i < mine.Length; i++) mine[i] = ids[pass.RegionOffset + i] - firstVocab;
        using var regionIds = Tensor.FromInts(device, mine, mine.Length);
        var partial = pass.Region.TokenSliced ? pass.Partial : x;
        device.Kernels.Embedding(regionIds, table, partial);
        pass.Region.Leave(partial, x);
    }

    public void Dispose() => table.Dispose();
}
