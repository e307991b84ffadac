using NativeParallel.Kernels.Ops;
using static NativeParallel.Tests.Kernels.Ops.FiniteDifference;

namespace NativeParallel.Tests.Kernels.Ops;

/// <summary>The MoE backward ops' references against finite differences of a float64 forward written here.</summary>
public sealed class MoeBackwardGradientTests
{
    [Fact]
    public void CombineReferenceMatchesFiniteDifferences()
    {
        const int tokens = 5, k = 3, cols = 4, yRows = tokens * k;
        var y = Random(1, yRows * cols);
        var weights = Random(2, tokens * k, 0f, 1f);
        var c = Random(3, tokens * cols);
        // A permutation of the slots with two dropped.
        int[] position = [4, 0, 13, -1, 7, 2, 9, 1, 14, 12, -1, 3, 6, 10, 8];

        double Loss(double[] ys, double[] ws)
        {
            double sum = 0;
            for (int t = 0; t < tokens; t++)
                for (int j = 0; j < k; j++)
                {
                    int row = position[t * k + j];
                    if (row < 0) continue;
                    for (int i = 0; i < cols; i++) sum += c[t * cols + i] * ws[t * k + j] * ys[row * cols + i];
                }
            return sum;
        }
        var (dY, dWeights) = MoeCombineBackward.Reference(c, y, yRows, cols, position, weights, tokens, k, new float[yRows * cols]);
        double[] y0 = Wide(y), w0 = Wide(weights);
        AssertClose(dY, Gradient(ys => Loss(ys, w0), y0), "d y");
        AssertClose(dWeights, Gradient(ws => Loss(y0, ws), w0), "d weights");
    }

    [Fact]
    public void RouterReferenceMatchesFiniteDifferencesOfTheSoftmaxOverTheChosenLogits()
    {
        const int tokens = 4, k = 2, n = 5;
        var logits = Random(4, tokens * n, -2f, 2f);
        var c = Random(5, tokens * k);
        int[] experts = [3, 0, 1, 4, 2, 1, 0, 4];

        // The pick is held fixed (it has no gradient); the weights are the softmax over the chosen logits.
        double[] Weights(double[] x)
        {
            var p = new double[tokens * k];
            for (int t = 0; t < tokens; t++)
            {
                double sum = 0;
                for (int j = 0; j < k; j++) sum += Math.Exp(x[t * n + experts[t * k + j]]);
                for (int j = 0; j < k; j++) p[t * k + j] = Math.Exp(x[t * n + experts[t * k + j]]) / sum;
            }
            return p;
        }
        double Loss(double[] x) => Dot(c, Weights(x));
        var p0 = Array.ConvertAll(Weights(Wide(logits)), v => (float)v);
        var analytic = MoeRouterBackward.Reference(p0, c, experts, tokens, k, n);
        // p is rounded to f32 for the reference: the bound allows its 6e-8 relative error.
        AssertClose(analytic, Gradient(Loss, Wide(logits)), "d logits", bound: 1e-6);
    }
}
