using NativeParallel.Kernels.Ops;
using static NativeParallel.Tests.Kernels.Ops.FiniteDifference;

namespace NativeParallel.Tests.Kernels.Ops;

public sealed class RopeBackwardGradientTests
{
    [Fact]
    public void ReferenceMatchesFiniteDifferences()
    {
        const int tokens = 3, heads = 2, d = 8;
        const float theta = 10000f;
        int[] positions = [0, 5, 4097];
        var x = Random(1, tokens * heads * d);
        var c = Random(2, tokens * heads * d);

        // y: pairs (i, i + d/2) rotated by pos · theta^(−2i/d) (rotate_half), L = Σ c·y.
        double Loss(double[] xs)
        {
            var y = new double[xs.Length];
            for (int t = 0; t < tokens; t++)
                for (int h = 0; h < heads; h++)
                {
                    int row = (t * heads + h) * d;
                    for (int i = 0; i < d / 2; i++)
                    {
                        double angle = positions[t] * Math.Pow(theta, -2.0 * i / d);
                        double x1 = xs[row + i], x2 = xs[row + i + d / 2];
                        y[row + i] = x1 * Math.Cos(angle) - x2 * Math.Sin(angle);
                        y[row + i + d / 2] = x2 * Math.Cos(angle) + x1 * Math.Sin(angle);
                    }
                }
            return Dot(c, y);
        }
        AssertClose(RopeBackward.Reference(c, positions, tokens, heads, d, theta), Gradient(Loss, Wide(x)), "d x");
    }
}
