using NativeParallel.Kernels.Ops;
using static NativeParallel.Tests.Kernels.Ops.FiniteDifference;

namespace NativeParallel.Tests.Kernels.Ops;

public sealed class EmbeddingBackwardGradientTests
{
    [Fact]
    public void ReferenceMatchesFiniteDifferences()
    {
        const int vocab = 5, hidden = 3;
        int[] ids = [2, 0, 2, 7, -1, 4, 2, 0];  // repeats, and ids outside [0, vocab) that gather zeros
        var table = Random(1, vocab * hidden);
        var c = Random(2, ids.Length * hidden);

        // out[t, :] = table[ids[t], :] (zeros out of range), L = Σ c·out.
        double Loss(double[] tbl)
        {
            var y = new double[ids.Length * hidden];
            for (int t = 0; t < ids.Length; t++)
                if ((uint)ids[t] < vocab)
                    for (int j = 0; j < hidden; j++) y[t * hidden + j] = tbl[ids[t] * hidden + j];
            return Dot(c, y);
        }
        AssertClose(EmbeddingBackward.Reference(ids, c, new float[vocab * hidden], vocab, hidden), Gradient(Loss, Wide(table)), "d table");
    }
}
