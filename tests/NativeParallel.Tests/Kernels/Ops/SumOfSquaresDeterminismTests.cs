using NativeParallel.Devices;
using NativeParallel.Kernels.Ops;
using NativeParallel.Tensors;

namespace NativeParallel.Tests.Kernels.Ops;

public sealed class SumOfSquaresDeterminismTests
{
    [Fact]
    public void CpuSumIsExactEnoughAndRepeatsBitwise()
    {
        var dev = CpuDevice.Instance;
        var x = FiniteDifference.Random(9, 300001, -2f, 2f);
        using var xt = Tensor.FromFloats(dev, x, DType.F32, x.Length);
        float first = 0;
        for (int run = 0; run < 3; run++)
        {
            using var total = Tensor.FromFloats(dev, [1.5f], DType.F32, 1);
            SumOfSquares.Accumulate(xt, total);
            float got = total.ToFloats()[0];
            if (run == 0) first = got;
            Assert.Equal(BitConverter.SingleToInt32Bits(first), BitConverter.SingleToInt32Bits(got));
        }
        Assert.Equal((float)SumOfSquares.Reference(x, 1.5), first);
    }
}
