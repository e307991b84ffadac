using BenchmarkDotNet.Attributes;
using NativeParallel.Devices;
using NativeParallel.Tensors;

namespace NativeParallel.Bench;

/// <summary>
/// The CPU device's matmul and RMSNorm beside their baselines in the same run: a plain row-by-row dot-product
/// matmul (what the blocked kernel must beat) and a memcpy of the same bytes (the bandwidth roof for RMSNorm).
/// </summary>
[MemoryDiagnoser]
public class CpuKernelBenchmarks
{
    private readonly IDevice _cpu = CpuDevice.Instance;
    private Tensor _a = null!, _b = null!, _c = null!, _x = null!, _w = null!, _y = null!;
    private float[] _af = null!, _bf = null!, _cf = null!;
    private byte[] _src = null!, _dst = null!;

    [Params(256, 512)]
    public int Size { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _a = Tensor.Uniform(_cpu, DType.F32, 1, -1, 1, Size, Size);
        _b = Tensor.Uniform(_cpu, DType.F32, 2, -1, 1, Size, Size);
        _c = Tensor.Empty(_cpu, DType.F32, Size, Size);
        _af = _a.ToFloats();
        _bf = _b.ToFloats();
        _cf = new float[Size * Size];
        _x = Tensor.Uniform(_cpu, DType.F32, 3, -1, 1, 4 * Size, 4096);
        _w = Tensor.Uniform(_cpu, DType.F32, 4, -1, 1, 4096);
        _y = Tensor.Empty(_cpu, DType.F32, 4 * Size, 4096);
        _src = new byte[_x.Bytes];
        _dst = new byte[_x.Bytes];
    }

    [Benchmark(Description = "matmul (blocked, multi-threaded)")]
    public void Matmul() => _cpu.Kernels.Matmul(_a, _b, _c);

    [Benchmark(Baseline = true, Description = "matmul baseline: one TensorPrimitives.Dot per output")]
    public void MatmulDotPerOutput()
    {
        int n = Size;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
                _cf[i * n + j] = System.Numerics.Tensors.TensorPrimitives.Dot(_af.AsSpan(i * n, n), _bf.AsSpan(j * n, n));
    }

    [Benchmark(Description = "rmsnorm f32 (4·Size × 4096)")]
    public void RmsNorm() => _cpu.Kernels.RmsNorm(_x, _w, _y, 1e-5f);

    [Benchmark(Description = "memcpy of the same bytes (bandwidth roof)")]
    public void Memcpy() => _src.AsSpan().CopyTo(_dst);

    [GlobalCleanup]
    public void Cleanup()
    {
        foreach (var t in new[] { _a, _b, _c, _x, _w, _y }) t.Dispose();
    }
}
