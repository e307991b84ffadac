using NativeParallel.Devices;
using NativeParallel.Tensors;

namespace NativeParallel.Tests.Kernels;

/// <summary>Bad arguments fail before any launch, with the op and the tensor named.</summary>
public sealed class KernelArgumentTests
{
    private static readonly IDevice Cpu = CpuDevice.Instance;

    [Fact]
    public void MismatchedShapesAreRejectedWithTheOpName()
    {
        using var a = Tensor.Empty(Cpu, DType.F32, 4, 8);
        using var b = Tensor.Empty(Cpu, DType.F32, 5, 7);
        using var c = Tensor.Empty(Cpu, DType.F32, 4, 5);
        var e = Assert.Throws<ArgumentException>(() => Cpu.Kernels.Matmul(a, b, c));
        Assert.StartsWith("matmul:", e.Message);
        Assert.Contains("(n, 8)", e.Message);
    }

    [Fact]
    public void UnsupportedDtypesAndStridedViewsAreRejected()
    {
        using var x = Tensor.Empty(Cpu, DType.I32, 2, 4);
        using var w = Tensor.Empty(Cpu, DType.I32, 4);
        Assert.Contains("supported: f32, bf16", Assert.Throws<ArgumentException>(() => Cpu.Kernels.RmsNorm(x, w, x, 1e-5f)).Message);
        using var f = Tensor.Empty(Cpu, DType.F32, 4, 4);
        var strided = f.Transpose(0, 1);
        Assert.Contains("contiguous", Assert.Throws<ArgumentException>(() => Cpu.Kernels.Gelu(strided, f)).Message);
    }

    [Fact]
    public void AttentionRejectsHeadsThatDoNotGroup()
    {
        using var q = Tensor.Empty(Cpu, DType.F32, 1, 2, 3, 8);
        using var k = Tensor.Empty(Cpu, DType.F32, 1, 2, 2, 8);
        var e = Assert.Throws<ArgumentException>(() => Cpu.Kernels.AttentionPrefill(q, k, k, q, 0, 1f));
        Assert.Contains("multiple of kv heads", e.Message);
    }
}
