using System.Runtime.InteropServices;

namespace NativeParallel.Interop;

/// <summary>
/// Raw bindings to the cuBLAS v2 API (<c>cublas_api.h</c>). A handle (<c>cublasHandle_t</c>)
/// is kept as <see cref="nint"/>; it is bound to the context current at creation and should be
/// used from one thread at a time. Wrap calls in <see cref="CublasException.Check"/>.
/// </summary>
/// <remarks>cuBLAS is column-major: a row-major <c>C = A·B</c> is computed as <c>Cᵀ = Bᵀ·Aᵀ</c> by swapping the operands.</remarks>
public static unsafe partial class Cublas
{
    [LibraryImport(Libraries.Cublas, EntryPoint = "cublasCreate_v2")]
    public static partial CublasStatus cublasCreate_v2(out nint handle);

    [LibraryImport(Libraries.Cublas, EntryPoint = "cublasDestroy_v2")]
    public static partial CublasStatus cublasDestroy_v2(nint handle);

    /// <summary>Packed version, major·10000 + minor·100 + patch on cuBLAS 11 and later (e.g. 120405 for 12.4.5).</summary>
    [LibraryImport(Libraries.Cublas, EntryPoint = "cublasGetVersion_v2")]
    public static partial CublasStatus cublasGetVersion_v2(nint handle, out int version);

    [LibraryImport(Libraries.Cublas, EntryPoint = "cublasSetStream_v2")]
    public static partial CublasStatus cublasSetStream_v2(nint handle, CUstream stream);

    [LibraryImport(Libraries.Cublas, EntryPoint = "cublasGetStream_v2")]
    public static partial CublasStatus cublasGetStream_v2(nint handle, out CUstream stream);

    [LibraryImport(Libraries.Cublas, EntryPoint = "cublasSetMathMode")]
    public static partial CublasStatus cublasSetMathMode(nint handle, cublasMath mode);

    [LibraryImport(Libraries.Cublas, EntryPoint = "cublasGetMathMode")]
    public static partial CublasStatus cublasGetMathMode(nint handle, out cublasMath mode);

    /// <summary>Whether <c>alpha</c>/<c>beta</c> are read from host (default) or device memory.</summary>
    [LibraryImport(Libraries.Cublas, EntryPoint = "cublasSetPointerMode_v2")]
    public static partial CublasStatus cublasSetPointerMode_v2(nint handle, cublasPointerMode mode);

    /// <summary>
    /// <c>C = alpha·op(A)·op(B) + beta·C</c> with mixed types. <paramref name="alpha"/> and
    /// <paramref name="beta"/> point at scalars of the compute type's scale type (float for the
    /// COMPUTE_32F family, half for COMPUTE_16F, int for COMPUTE_32I), in host memory unless
    /// the pointer mode is DEVICE. A, B and C are device pointers.
    /// </summary>
    [LibraryImport(Libraries.Cublas, EntryPoint = "cublasGemmEx")]
    public static partial CublasStatus cublasGemmEx(nint handle,
        cublasOperation transa, cublasOperation transb,
        int m, int n, int k,
        void* alpha,
        CUdeviceptr A, cudaDataType Atype, int lda,
        CUdeviceptr B, cudaDataType Btype, int ldb,
        void* beta,
        CUdeviceptr C, cudaDataType Ctype, int ldc,
        cublasComputeType computeType, cublasGemmAlgo algo);

    /// <summary>e.g. "CUBLAS_STATUS_NOT_SUPPORTED" (cuBLAS 11.4+; older builds lack the entry point).</summary>
    [LibraryImport(Libraries.Cublas, EntryPoint = "cublasGetStatusName")]
    public static partial byte* cublasGetStatusName(CublasStatus status);

    /// <summary>A description of the status (cuBLAS 11.4+; older builds lack the entry point).</summary>
    [LibraryImport(Libraries.Cublas, EntryPoint = "cublasGetStatusString")]
    public static partial byte* cublasGetStatusString(CublasStatus status);
}

/// <summary>Transpose operation (<c>cublasOperation_t</c>).</summary>
public enum cublasOperation
{
    /// <summary>No transpose.</summary>
    N = 0,
    /// <summary>Transpose.</summary>
    T = 1,
    /// <summary>Conjugate transpose.</summary>
    C = 2,
}

/// <summary>Element types (<c>cudaDataType_t</c> in <c>library_types.h</c>).</summary>
public enum cudaDataType
{
    R_32F = 0,
    R_64F = 1,
    R_16F = 2,
    R_8I = 3,
    C_32F = 4,
    C_64F = 5,
    C_16F = 6,
    C_8I = 7,
    R_8U = 8,
    C_8U = 9,
    R_32I = 10,
    C_32I = 11,
    R_32U = 12,
    C_32U = 13,
    R_16BF = 14,
    C_16BF = 15,
    R_8F_E4M3 = 28,
    R_8F_E5M2 = 29,
}

/// <summary>Accumulation type and precision rules for <c>cublasGemmEx</c> (<c>cublasComputeType_t</c>, cuBLAS 11+).</summary>
public enum cublasComputeType
{
    COMPUTE_16F = 64,
    COMPUTE_16F_PEDANTIC = 65,
    COMPUTE_32F = 68,
    COMPUTE_32F_PEDANTIC = 69,
    COMPUTE_64F = 70,
    COMPUTE_64F_PEDANTIC = 71,
    COMPUTE_32I = 72,
    COMPUTE_32I_PEDANTIC = 73,
    /// <summary>FP32 accumulate, inputs may be rounded to FP16 for tensor cores.</summary>
    COMPUTE_32F_FAST_16F = 74,
    /// <summary>FP32 accumulate, inputs may be rounded to BF16 for tensor cores.</summary>
    COMPUTE_32F_FAST_16BF = 75,
    /// <summary>FP32 accumulate, inputs may be rounded to TF32 for tensor cores (Ampere+).</summary>
    COMPUTE_32F_FAST_TF32 = 77,
}

/// <summary>GEMM algorithm selection (<c>cublasGemmAlgo_t</c>). Since cuBLAS 11 only the defaults matter; the numbered algorithms are ignored.</summary>
public enum cublasGemmAlgo
{
    DEFAULT = -1,
    DEFAULT_TENSOR_OP = 99,
}

/// <summary>Math mode (<c>cublasMath_t</c>).</summary>
[Flags]
public enum cublasMath
{
    DEFAULT_MATH = 0,
    /// <summary>Deprecated since cuBLAS 11; tensor cores are used by default where the types allow.</summary>
    TENSOR_OP_MATH = 1,
    PEDANTIC_MATH = 2,
    /// <summary>Let FP32 routines use TF32 tensor cores.</summary>
    TF32_TENSOR_OP_MATH = 3,
    DISALLOW_REDUCED_PRECISION_REDUCTION = 16,
}

/// <summary>Where scalar arguments live (<c>cublasPointerMode_t</c>).</summary>
public enum cublasPointerMode
{
    HOST = 0,
    DEVICE = 1,
}
