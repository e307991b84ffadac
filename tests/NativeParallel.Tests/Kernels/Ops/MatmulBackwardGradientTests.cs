using NativeParallel.Kernels.Ops;
using static NativeParallel.Tests.Kernels.Ops.FiniteDifference;

namespace NativeParallel.Tests.Kernels.Ops;

public sealed class MatmulBackwardGradientTests
{
    [Fact]
    public void ReferenceMatchesFiniteDifferences()
    {
        const int m = 5, n = 4, k = 6;
        var x = Random(1, m * k);
        var w = Random(2, n * k);
        var c = Random(3, m * n);

        // y = x · Wᵀ, L = Σ c·y.
        double Loss(double[] xs, double[] ws)
        {
            var y = new double[m * n];
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++)
                    for (int p = 0; p < k; p++) y[i * n + j] += xs[i * k + p] * ws[j * k + p];
            return Dot(c, y);
        }
        double[] x0 = Wide(x), w0 = Wide(w);
        AssertClose(MatmulBackward.ReferenceInputGrad(c, w, m, n, k), Gradient(xs => Loss(xs, w0), x0), "d x");
        AssertClose(MatmulBackward.ReferenceWeightGrad(c, x, null, m, n, k), Gradient(ws => Loss(x0, ws), w0), "d w");
    }
}
