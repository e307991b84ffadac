using NativeParallel.Kernels.Ops;
using static NativeParallel.Tests.Kernels.Ops.FiniteDifference;

namespace NativeParallel.Tests.Kernels.Ops;

public sealed class RmsNormBackwardGradientTests
{
    [Fact]
    public void ReferenceMatchesFiniteDifferences()
    {
        const int rows = 3, d = 7;
        const float eps = 1e-5f;
        var x = Random(1, rows * d);
        var w = Random(2, d, 0.5f, 1.5f);
        var c = Random(3, rows * d);
        var (dX, dW) = RmsNormBackward.Reference(x, w, c, new float[d], rows, d, eps);

        // y = x · inv · w, inv = 1/sqrt(mean(x²) + eps), L = Σ c·y.
        double Loss(double[] xs, double[] ws)
        {
            var y = new double[rows * d];
            for (int r = 0; r < rows; r++)
            {
                double sumSquares = 0;
                for (int j = 0; j < d; j++) sumSquares += xs[r * d + j] * xs[r * d + j];
                double inv = 1 / Math.Sqrt(sumSquares / d + eps);
                for (int j = 0; j < d; j++) y[r * d + j] = xs[r * d + j] * inv * ws[j];
            }
            return Dot(c, y);
        }
        double[] x0 = Wide(x), w0 = Wide(w);
        AssertClose(dX, Gradient(xs => Loss(xs, w0), x0), "d x");
        AssertClose(dW, Gradient(ws => Loss(x0, ws), w0), "d weight");
    }
}
