using NativeParallel.Devices;
using NativeParallel.Kernels.Ops;
using NativeParallel.Tensors;
using static NativeParallel.Tests.Kernels.Ops.FiniteDifference;

namespace NativeParallel.Tests.Kernels.Ops;

public sealed class CrossEntropyGradientTests
{
    [Fact]
    public void ReferenceMatchesFiniteDifferences()
    {
        const int rows = 4, v = 9;
        var logits = Random(1, rows * v, -4f, 4f);
        int[] targets = [3, -1, 0, 8]; // row 1 ignored
        const double gradScale = 1.0 / 3; // the mean over the rows that count
        var (losses, dLogits) = CrossEntropy.Reference(logits, targets, rows, v, gradScale);

        // The loss straight from the definition, independent of the reference: Σ_r gradScale·(log Σ_j e^x[r,j] − x[r,t]).
        double Loss(double[] x)
        {
            double sum = 0;
            for (int r = 0; r < rows; r++)
            {
                if ((uint)targets[r] >= v) continue;
                double z = 0;
                for (int j = 0; j < v; j++) z += Math.Exp(x[r * v + j]);
                sum += gradScale * (Math.Log(z) - x[r * v + targets[r]]);
            }
            return sum;
        }
        var x0 = Wide(logits);
        AssertClose(dLogits, Gradient(Loss, x0), "d logits");
        double scaled = 0;
        foreach (double l in losses) scaled += l * gradScale;
        Assert.Equal(Loss(x0), scaled, 1e-12);
        Assert.Equal(0, losses[1]);
        for (int j = 0; j < v; j++) Assert.Equal(0, dLogits[v + j]);
    }

    [Fact]
    public void CpuPathMatchesTheReferenceInPlace()
    {
        const int rows = 3, v = 70;
        var logits = Random(2, rows * v, -6f, 6f);
        int[] targets = [69, 0, 70];
        using var x = Tensor.FromFloats(CpuDevice.Instance, logits, DType.F32, rows, v);
        using var t = Tensor.FromInts(CpuDevice.Instance, targets, rows);
        using var losses = Tensor.Empty(CpuDevice.Instance, DType.F32, rows);
        CrossEntropy.Run(x, t, losses, x, 0.5f);
        var (refLosses, refD) = CrossEntropy.Reference(logits, targets, rows, v, 0.5);
        Assert.True(RelativeError(Wide(losses.ToFloats()), refLosses) < 1e-6);
        Assert.True(RelativeError(Wide(x.ToFloats()), refD) < 1e-6);
    }
}
