using NativeParallel.Kernels.Ops;
using static NativeParallel.Tests.Kernels.Ops.FiniteDifference;

namespace NativeParallel.Tests.Kernels.Ops;

public sealed class SwiGluBackwardGradientTests
{
    [Fact]
    public void ReferenceMatchesFiniteDifferences()
    {
        const int n = 40;
        var gate = Random(1, n, -5f, 5f);
        var up = Random(2, n);
        var c = Random(3, n);
        var (dGate, dUp) = SwiGluBackward.Reference(gate, up, c);

        double Loss(double[] g, double[] u)
        {
            double sum = 0;
            for (int i = 0; i < n; i++) sum += c[i] * g[i] / (1 + Math.Exp(-g[i])) * u[i];
            return sum;
        }
        double[] g0 = Wide(gate), u0 = Wide(up);
        AssertClose(dGate, Gradient(g => Loss(g, u0), g0), "d gate");
        AssertClose(dUp, Gradient(u => Loss(g0, u), u0), "d up");
    }
}
