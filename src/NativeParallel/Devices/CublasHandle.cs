using NativeParallel.Interop;
using NativeParallel.Tensors;

namespace NativeParallel.Devices;

/// <summary>
/// cuBLAS on a <see cref="CudaDevice"/>'s default stream: the vendor baseline our kernels are measured against
/// (and a second opinion on their results).
/// </summary>
public sealed unsafe class CublasHandle : IDisposable
{
    private readonly CudaDevice _device;
    private readonly nint _handle;

    /// <summary>Creates a handle bound to <paramref name="device"/>'s default stream.</summary>
    /// <exception cref="NativeLibraryNotFoundException">cuBLAS is not installed.</exception>
    public CublasHandle(CudaDevice device)
    {
        _device = device;
        device.MakeCurrent();
        CublasException.Check(Cublas.cublasCreate_v2(out _handle));
        CublasException.Check(Cublas.cublasSetStream_v2(_handle, device.Stream(null)));
        CublasException.Check(Cublas.cublasGetVersion_v2(_handle, out int version));
        Version = version;
    }

    /// <summary>cuBLAS version number (e.g. 130000).</summary>
    public int Version { get; }

    /// <summary>
    /// c = a · bᵀ with f32 accumulation, our matmul's contract, through cublasGemmEx. Row-major c (m, n) is
    /// column-major cᵀ (n, m) = b · aᵀ, so cuBLAS gets (transa = T on b, transb = N on a, m' = n, n' = m).
    /// </summary>
    public void Matmul(Tensor a, Tensor b, Tensor c)
    {
        int m = a.Dim(0), k = a.Dim(1), n = b.Dim(0);
        if (b.Dim(1) != k || c.Dim(0) != m || c.Dim(1) != n || b.DType != a.DType)
            throw new ArgumentException($"cublas matmul: a (m, k), b (n, k), c (m, n) expected, got {a}, {b}, {c}");
        // With COMPUTE_32F, cuBLAS takes f32 operands only with an f32 result.
        if (a.DType == DType.F32 && c.DType != DType.F32)
            throw new ArgumentException($"cublas matmul: f32 operands need an f32 result for cublasGemmEx, got {c}");
        float alpha = 1f, beta = 0f;
        _device.MakeCurrent();
        CublasException.Check(Cublas.cublasGemmEx(_handle, cublasOperation.T, cublasOperation.N, n, m, k, &alpha,
            new CUdeviceptr(b.Pointer), DataType(b.DType), k, new CUdeviceptr(a.Pointer), DataType(a.DType), k, &beta,
            new CUdeviceptr(c.Pointer), DataType(c.DType), n, cublasComputeType.COMPUTE_32F, cublasGemmAlgo.DEFAULT));
    }

    private static cudaDataType DataType(DType dtype) => dtype switch
    {
        DType.F32 => cudaDataType.R_32F,
        DType.BF16 => cudaDataType.R_16BF,
        DType.F16 => cudaDataType.R_16F,
        _ => throw new ArgumentException($"cuBLAS GEMM does not take {dtype.Name()}"),
    };

    /// <inheritdoc/>
    public void Dispose()
    {
        _device.MakeCurrent();
        Cublas.cublasDestroy_v2(_handle);
    }
}
