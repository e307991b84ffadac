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
    /// <summary>Creates a cuBLAS handle in the current context.</summary>
    [LibraryImport(Libraries.Cublas, EntryPoint = "cublasCreate_v2")]
    public static partial CublasStatus cublasCreate_v2(out nint handle);

    /// <summary>Destroys a cuBLAS handle.</summary>
    [LibraryImport(Libraries.Cublas, EntryPoint = "cublasDestroy_v2")]
    public static partial CublasStatus cublasDestroy_v2(nint handle);

    /// <summary>Packed version, major·10000 + minor·100 + patch on cuBLAS 11 and later (e.g. 120405 for 12.4.5).</summary>
    [LibraryImport(Libraries.Cublas, EntryPoint = "cublasGetVersion_v2")]
    public static partial CublasStatus cublasGetVersion_v2(nint handle, out int version);

    /// <summary>Sets the stream the handle's calls are ordered on.</summary>
    [LibraryImport(Libraries.Cublas, EntryPoint = "cublasSetStream_v2")]
    public static partial CublasStatus cublasSetStream_v2(nint handle, CUstream stream);

    /// <summary>The stream the handle's calls are ordered on.</summary>
    [LibraryImport(Libraries.Cublas, EntryPoint = "cublasGetStream_v2")]
    public static partial CublasStatus cublasGetStream_v2(nint handle, out CUstream stream);

    /// <summary>Sets whether tensor cores and reduced precision may be used.</summary>
    [LibraryImport(Libraries.Cublas, EntryPoint = "cublasSetMathMode")]
    public static partial CublasStatus cublasSetMathMode(nint handle, cublasMath mode);

    /// <summary>The handle's math mode.</summary>
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
    /// <summary>Real f32.</summary>
    R_32F = 0,
    /// <summary>Real f64.</summary>
    R_64F = 1,
    /// <summary>Real f16.</summary>
    R_16F = 2,
    /// <summary>Real signed 8-bit integer.</summary>
    R_8I = 3,
    /// <summary>Complex of two f32.</summary>
    C_32F = 4,
    /// <summary>Complex of two f64.</summary>
    C_64F = 5,
    /// <summary>Complex of two f16.</summary>
    C_16F = 6,
    /// <summary>Complex of two signed 8-bit integers.</summary>
    C_8I = 7,
    /// <summary>Real unsigned 8-bit integer.</summary>
    R_8U = 8,
    /// <summary>Complex of two unsigned 8-bit integers.</summary>
    C_8U = 9,
    /// <summary>Real signed 32-bit integer.</summary>
    R_32I = 10,
    /// <summary>Complex of two signed 32-bit integers.</summary>
    C_32I = 11,
    /// <summary>Real unsigned 32-bit integer.</summary>
    R_32U = 12,
    /// <summary>Complex of two unsigned 32-bit integers.</summary>
    C_32U = 13,
    /// <summary>Real bfloat16.</summary>
    R_16BF = 14,
    /// <summary>Complex of two bfloat16.</summary>
    C_16BF = 15,
    /// <summary>Real FP8 with 4 exponent and 3 mantissa bits.</summary>
    R_8F_E4M3 = 28,
    /// <summary>Real FP8 with 5 exponent and 2 mantissa bits.</summary>
    R_8F_E5M2 = 29,
}

/// <summary>Accumulation type and precision rules for <c>cublasGemmEx</c> (<c>cublasComputeType_t</c>, cuBLAS 11+).</summary>
public enum cublasComputeType
{
    /// <summary>Accumulate in f16.</summary>
    COMPUTE_16F = 64,
    /// <summary>Accumulate in f16, no reduced-precision shortcuts.</summary>
    COMPUTE_16F_PEDANTIC = 65,
    /// <summary>Accumulate in f32 (inputs may go through tensor cores as allowed by the math mode).</summary>
    COMPUTE_32F = 68,
    /// <summary>Accumulate in f32, no reduced-precision shortcuts.</summary>
    COMPUTE_32F_PEDANTIC = 69,
    /// <summary>Accumulate in f64.</summary>
    COMPUTE_64F = 70,
    /// <summary>Accumulate in f64, no reduced-precision shortcuts.</summary>
    COMPUTE_64F_PEDANTIC = 71,
    /// <summary>Accumulate in 32-bit integers.</summary>
    COMPUTE_32I = 72,
    /// <summary>Accumulate in 32-bit integers, no shortcuts.</summary>
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
    /// <summary>cuBLAS's heuristic choice.</summary>
    DEFAULT = -1,
    /// <summary>cuBLAS's heuristic choice, tensor cores allowed (deprecated alias).</summary>
    DEFAULT_TENSOR_OP = 99,
}

/// <summary>Math mode (<c>cublasMath_t</c>).</summary>
[Flags]
public enum cublasMath
{
    /// <summary>The default: tensor cores where the types allow it without lowering precision.</summary>
    DEFAULT_MATH = 0,
    /// <summary>Deprecated since cuBLAS 11; tensor cores are used by default where the types allow.</summary>
    TENSOR_OP_MATH = 1,
    /// <summary>Prescribed precision only: no tensor cores or reduced-precision paths.</summary>
    PEDANTIC_MATH = 2,
    /// <summary>Let FP32 routines use TF32 tensor cores.</summary>
    TF32_TENSOR_OP_MATH = 3,
    /// <summary>Flag: never reduce in a lower precision than the output type.</summary>
    DISALLOW_REDUCED_PRECISION_REDUCTION = 16,
}

/// <summary>Where scalar arguments live (<c>cublasPointerMode_t</c>).</summary>
public enum cublasPointerMode
{
    /// <summary>alpha and beta are host pointers.</summary>
    HOST = 0,
    /// <summary>alpha and beta are device pointers.</summary>
    DEVICE = 1,
}
