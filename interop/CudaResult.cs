namespace NativeParallel.Interop;

/// <summary>
/// CUDA driver API status codes (<c>CUresult</c> in <c>cuda.h</c>).
/// </summary>
/// <remarks>
/// Members keep the C spelling on purpose: <see cref="CudaException"/> falls back to the enum
/// name when <c>cuGetErrorName</c> is unavailable, and the result then reads exactly as the
/// driver (and NVIDIA's documentation) would print it.
/// </remarks>
public enum CUresult
{
    /// <summary>The call succeeded.</summary>
    CUDA_SUCCESS = 0,
    /// <summary>An argument is out of its accepted range.</summary>
    CUDA_ERROR_INVALID_VALUE = 1,
    /// <summary>The device (or pinned host) memory for the request could not be allocated.</summary>
    CUDA_ERROR_OUT_OF_MEMORY = 2,
    /// <summary><c>cuInit</c> has not been called, or failed.</summary>
    CUDA_ERROR_NOT_INITIALIZED = 3,
    /// <summary>The driver is shutting down.</summary>
    CUDA_ERROR_DEINITIALIZED = 4,
    /// <summary>Profiling APIs were called while an external profiler disabled them.</summary>
    CUDA_ERROR_PROFILER_DISABLED = 5,
    /// <summary>Deprecated profiler status (no longer returned by current drivers).</summary>
    CUDA_ERROR_PROFILER_NOT_INITIALIZED = 6,
    /// <summary>Deprecated profiler status (no longer returned by current drivers).</summary>
    CUDA_ERROR_PROFILER_ALREADY_STARTED = 7,
    /// <summary>Deprecated profiler status (no longer returned by current drivers).</summary>
    CUDA_ERROR_PROFILER_ALREADY_STOPPED = 8,
    /// <summary>The loaded libcuda is the toolkit's stub, not a real driver.</summary>
    CUDA_ERROR_STUB_LIBRARY = 34,
    /// <summary>The device is unavailable now (exclusive-process mode held by another process, or an error state).</summary>
    CUDA_ERROR_DEVICE_UNAVAILABLE = 46,
    /// <summary>The driver found no CUDA-capable device.</summary>
    CUDA_ERROR_NO_DEVICE = 100,
    /// <summary>The device ordinal or handle does not name a device.</summary>
    CUDA_ERROR_INVALID_DEVICE = 101,
    /// <summary>The device lacks the license for the requested feature.</summary>
    CUDA_ERROR_DEVICE_NOT_LICENSED = 102,
    /// <summary>The module image (cubin, PTX or fatbin) is not valid.</summary>
    CUDA_ERROR_INVALID_IMAGE = 200,
    /// <summary>No context is current, or the context is not valid.</summary>
    CUDA_ERROR_INVALID_CONTEXT = 201,
    /// <summary>Deprecated: the context was already current.</summary>
    CUDA_ERROR_CONTEXT_ALREADY_CURRENT = 202,
    /// <summary>A map or register operation failed.</summary>
    CUDA_ERROR_MAP_FAILED = 205,
    /// <summary>An unmap or unregister operation failed.</summary>
    CUDA_ERROR_UNMAP_FAILED = 206,
    /// <summary>The array is mapped and cannot be destroyed.</summary>
    CUDA_ERROR_ARRAY_IS_MAPPED = 207,
    /// <summary>The resource is already mapped.</summary>
    CUDA_ERROR_ALREADY_MAPPED = 208,
    /// <summary>The module has no code for this device's architecture.</summary>
    CUDA_ERROR_NO_BINARY_FOR_GPU = 209,
    /// <summary>The resource has already been acquired.</summary>
    CUDA_ERROR_ALREADY_ACQUIRED = 210,
    /// <summary>The resource is not mapped.</summary>
    CUDA_ERROR_NOT_MAPPED = 211,
    /// <summary>The mapped resource cannot be accessed as an array.</summary>
    CUDA_ERROR_NOT_MAPPED_AS_ARRAY = 212,
    /// <summary>The mapped resource cannot be accessed as a pointer.</summary>
    CUDA_ERROR_NOT_MAPPED_AS_POINTER = 213,
    /// <summary>An uncorrectable ECC error was detected.</summary>
    CUDA_ERROR_ECC_UNCORRECTABLE = 214,
    /// <summary>The context limit is not supported by this device.</summary>
    CUDA_ERROR_UNSUPPORTED_LIMIT = 215,
    /// <summary>The context is already bound to another thread.</summary>
    CUDA_ERROR_CONTEXT_ALREADY_IN_USE = 216,
    /// <summary>Peer access is not supported between these two devices.</summary>
    CUDA_ERROR_PEER_ACCESS_UNSUPPORTED = 217,
    /// <summary>PTX JIT compilation failed.</summary>
    CUDA_ERROR_INVALID_PTX = 218,
    /// <summary>The OpenGL or DirectX context is not valid.</summary>
    CUDA_ERROR_INVALID_GRAPHICS_CONTEXT = 219,
    /// <summary>An uncorrectable NVLink error was detected.</summary>
    CUDA_ERROR_NVLINK_UNCORRECTABLE = 220,
    /// <summary>The PTX JIT compiler library was not found.</summary>
    CUDA_ERROR_JIT_COMPILER_NOT_FOUND = 221,
    /// <summary>The PTX was produced by a newer toolkit than the driver understands (NVRTC newer than the driver).</summary>
    CUDA_ERROR_UNSUPPORTED_PTX_VERSION = 222,
    /// <summary>PTX JIT compilation is disabled.</summary>
    CUDA_ERROR_JIT_COMPILATION_DISABLED = 223,
    /// <summary>The execution affinity type is not supported.</summary>
    CUDA_ERROR_UNSUPPORTED_EXEC_AFFINITY = 224,
    /// <summary>The code uses device-side synchronisation this device does not support.</summary>
    CUDA_ERROR_UNSUPPORTED_DEVSIDE_SYNC = 225,
    /// <summary>The kernel source is not valid.</summary>
    CUDA_ERROR_INVALID_SOURCE = 300,
    /// <summary>The file was not found.</summary>
    CUDA_ERROR_FILE_NOT_FOUND = 301,
    /// <summary>A shared-object symbol could not be resolved.</summary>
    CUDA_ERROR_SHARED_OBJECT_SYMBOL_NOT_FOUND = 302,
    /// <summary>A shared object failed to initialise.</summary>
    CUDA_ERROR_SHARED_OBJECT_INIT_FAILED = 303,
    /// <summary>An operating-system call failed.</summary>
    CUDA_ERROR_OPERATING_SYSTEM = 304,
    /// <summary>A handle (context, stream, event, module, function) is not valid.</summary>
    CUDA_ERROR_INVALID_HANDLE = 400,
    /// <summary>The resource is not in a state the operation allows.</summary>
    CUDA_ERROR_ILLEGAL_STATE = 401,
    /// <summary>A named symbol (function, global, texture) was not found.</summary>
    CUDA_ERROR_NOT_FOUND = 500,
    /// <summary>Not an error for <c>cuStreamQuery</c>/<c>cuEventQuery</c>: the work has not completed yet.</summary>
    CUDA_ERROR_NOT_READY = 600,
    /// <summary>A kernel accessed an invalid address; the context is unusable afterwards.</summary>
    CUDA_ERROR_ILLEGAL_ADDRESS = 700,
    /// <summary>The launch needs more registers or shared memory than are available.</summary>
    CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES = 701,
    /// <summary>The kernel ran past the device's watchdog; the context is unusable afterwards.</summary>
    CUDA_ERROR_LAUNCH_TIMEOUT = 702,
    /// <summary>The launch used an incompatible texturing mode.</summary>
    CUDA_ERROR_LAUNCH_INCOMPATIBLE_TEXTURING = 703,
    /// <summary>Peer access to this context is already enabled.</summary>
    CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED = 704,
    /// <summary>Peer access to this context was never enabled.</summary>
    CUDA_ERROR_PEER_ACCESS_NOT_ENABLED = 705,
    /// <summary>The primary context is already initialised with other flags.</summary>
    CUDA_ERROR_PRIMARY_CONTEXT_ACTIVE = 708,
    /// <summary>The current context has been destroyed.</summary>
    CUDA_ERROR_CONTEXT_IS_DESTROYED = 709,
    /// <summary>A device-side assert failed; the context is unusable afterwards.</summary>
    CUDA_ERROR_ASSERT = 710,
    /// <summary>The device already has the most peer connections it supports.</summary>
    CUDA_ERROR_TOO_MANY_PEERS = 711,
    /// <summary>The host range is already registered.</summary>
    CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED = 712,
    /// <summary>The host range was never registered.</summary>
    CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED = 713,
    /// <summary>A kernel overflowed or corrupted its call stack; the context is unusable afterwards.</summary>
    CUDA_ERROR_HARDWARE_STACK_ERROR = 714,
    /// <summary>A kernel executed an illegal instruction; the context is unusable afterwards.</summary>
    CUDA_ERROR_ILLEGAL_INSTRUCTION = 715,
    /// <summary>A kernel accessed a misaligned address; the context is unusable afterwards.</summary>
    CUDA_ERROR_MISALIGNED_ADDRESS = 716,
    /// <summary>A kernel used an address in the wrong address space; the context is unusable afterwards.</summary>
    CUDA_ERROR_INVALID_ADDRESS_SPACE = 717,
    /// <summary>A kernel's program counter became invalid; the context is unusable afterwards.</summary>
    CUDA_ERROR_INVALID_PC = 718,
    /// <summary>A kernel failed for another reason; the context is unusable afterwards.</summary>
    CUDA_ERROR_LAUNCH_FAILED = 719,
    /// <summary>A cooperative launch asked for more blocks than can be resident at once.</summary>
    CUDA_ERROR_COOPERATIVE_LAUNCH_TOO_LARGE = 720,
    /// <summary>The operation is not permitted.</summary>
    CUDA_ERROR_NOT_PERMITTED = 800,
    /// <summary>The operation is not supported on this system or device.</summary>
    CUDA_ERROR_NOT_SUPPORTED = 801,
    /// <summary>The system is not ready (a driver daemon such as the fabric manager is not running).</summary>
    CUDA_ERROR_SYSTEM_NOT_READY = 802,
    /// <summary>The CUDA driver and the kernel-mode display driver versions differ.</summary>
    CUDA_ERROR_SYSTEM_DRIVER_MISMATCH = 803,
    /// <summary>The forward-compatibility driver does not support this device.</summary>
    CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE = 804,
    /// <summary>The operation is not allowed while the stream is being captured.</summary>
    CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED = 900,
    /// <summary>The stream capture was invalidated by an earlier error.</summary>
    CUDA_ERROR_STREAM_CAPTURE_INVALIDATED = 901,
    /// <summary>The operation would merge two separate captures.</summary>
    CUDA_ERROR_STREAM_CAPTURE_MERGE = 902,
    /// <summary>The capture was not started on this stream.</summary>
    CUDA_ERROR_STREAM_CAPTURE_UNMATCHED = 903,
    /// <summary>A forked stream of the capture was not joined back.</summary>
    CUDA_ERROR_STREAM_CAPTURE_UNJOINED = 904,
    /// <summary>The operation would cross the capture's isolation boundary.</summary>
    CUDA_ERROR_STREAM_CAPTURE_ISOLATION = 905,
    /// <summary>The operation would implicitly depend on the legacy default stream during capture.</summary>
    CUDA_ERROR_STREAM_CAPTURE_IMPLICIT = 906,
    /// <summary>The event was last recorded in a capture and cannot be used this way.</summary>
    CUDA_ERROR_CAPTURED_EVENT = 907,
    /// <summary>A relaxed-mode capture was ended from a thread that did not start it.</summary>
    CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD = 908,
    /// <summary>The wait timed out.</summary>
    CUDA_ERROR_TIMEOUT = 909,
    /// <summary>The executable graph could not be updated in place.</summary>
    CUDA_ERROR_GRAPH_EXEC_UPDATE_FAILURE = 910,
    /// <summary>An unknown internal error.</summary>
    CUDA_ERROR_UNKNOWN = 999,
}

/// <summary>NVRTC status codes (<c>nvrtcResult</c> in <c>nvrtc.h</c>).</summary>
public enum NvrtcResult
{
    /// <summary>The call succeeded.</summary>
    NVRTC_SUCCESS = 0,
    /// <summary>NVRTC ran out of host memory.</summary>
    NVRTC_ERROR_OUT_OF_MEMORY = 1,
    /// <summary>The program could not be created.</summary>
    NVRTC_ERROR_PROGRAM_CREATION_FAILURE = 2,
    /// <summary>An argument is not valid (a NULL pointer, a negative count).</summary>
    NVRTC_ERROR_INVALID_INPUT = 3,
    /// <summary>The program handle is not valid.</summary>
    NVRTC_ERROR_INVALID_PROGRAM = 4,
    /// <summary>A compile option is not recognised or not valid.</summary>
    NVRTC_ERROR_INVALID_OPTION = 5,
    /// <summary>The source did not compile; the program log says why.</summary>
    NVRTC_ERROR_COMPILATION = 6,
    /// <summary>A built-in operation (such as reading a built-in header) failed.</summary>
    NVRTC_ERROR_BUILTIN_OPERATION_FAILURE = 7,
    /// <summary>A name expression was added after the program was compiled.</summary>
    NVRTC_ERROR_NO_NAME_EXPRESSIONS_AFTER_COMPILATION = 8,
    /// <summary>A lowered name was asked for before the program was compiled.</summary>
    NVRTC_ERROR_NO_LOWERED_NAMES_BEFORE_COMPILATION = 9,
    /// <summary>The name expression was never added, or does not name an entity.</summary>
    NVRTC_ERROR_NAME_EXPRESSION_NOT_VALID = 10,
    /// <summary>An internal NVRTC error.</summary>
    NVRTC_ERROR_INTERNAL_ERROR = 11,
    /// <summary>The compile-time trace file (--time) could not be written.</summary>
    NVRTC_ERROR_TIME_FILE_WRITE_FAILED = 12,
}

/// <summary>cuBLAS status codes (<c>cublasStatus_t</c> in <c>cublas_api.h</c>).</summary>
public enum CublasStatus
{
    /// <summary>The call succeeded.</summary>
    CUBLAS_STATUS_SUCCESS = 0,
    /// <summary>The handle was not created, or the CUDA runtime under cuBLAS failed to start.</summary>
    CUBLAS_STATUS_NOT_INITIALIZED = 1,
    /// <summary>cuBLAS could not allocate the memory it needs.</summary>
    CUBLAS_STATUS_ALLOC_FAILED = 3,
    /// <summary>An argument is not valid (a negative size, an unsupported type combination).</summary>
    CUBLAS_STATUS_INVALID_VALUE = 7,
    /// <summary>The operation needs a feature this device's architecture lacks.</summary>
    CUBLAS_STATUS_ARCH_MISMATCH = 8,
    /// <summary>Access to GPU memory failed (a texture binding, for instance).</summary>
    CUBLAS_STATUS_MAPPING_ERROR = 11,
    /// <summary>The kernel failed to launch or run on the GPU.</summary>
    CUBLAS_STATUS_EXECUTION_FAILED = 13,
    /// <summary>An internal cuBLAS operation failed.</summary>
    CUBLAS_STATUS_INTERNAL_ERROR = 14,
    /// <summary>The requested functionality is not supported.</summary>
    CUBLAS_STATUS_NOT_SUPPORTED = 15,
    /// <summary>The functionality needs a license that was not found.</summary>
    CUBLAS_STATUS_LICENSE_ERROR = 16,
}
