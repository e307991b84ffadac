using System.Runtime.InteropServices;

namespace NativeParallel.Interop;

/// <summary>
/// Raw bindings to the CUDA driver API (<c>cuda.h</c>). Method names are the exported symbol
/// names, including the <c>_v2</c> suffixes that <c>cuda.h</c> hides behind macros, so that
/// every call binds to the same ABI a C program compiled against a current toolkit would use.
/// Results are returned, not thrown: wrap calls in <see cref="CudaException.Check"/>.
/// </summary>
/// <remarks>
/// The library is bound lazily: nothing is loaded until the first call, and an entry point the
/// installed driver lacks throws <see cref="EntryPointNotFoundException"/> only when called.
/// </remarks>
public static unsafe partial class Cuda
{
    // ---- initialisation and version ----

    /// <summary>Initialises the driver API. Flags must be 0.</summary>
    [LibraryImport(Libraries.Cuda, EntryPoint = "cuInit")]
    public static partial CUresult cuInit(uint flags);

    /// <summary>The driver's CUDA version, e.g. 12040 for 12.4.</summary>
    [LibraryImport(Libraries.Cuda, EntryPoint = "cuDriverGetVersion")]
    public static partial CUresult cuDriverGetVersion(out int driverVersion);

    // ---- devices ----

    /// <summary>The handle of device <paramref name="ordinal"/>.</summary>
    [LibraryImport(Libraries.Cuda, EntryPoint = "cuDeviceGet")]
    public static partial CUresult cuDeviceGet(out CUdevice device, int ordinal);

    /// <summary>Number of CUDA devices.</summary>
    [LibraryImport(Libraries.Cuda, EntryPoint = "cuDeviceGetCount")]
    public static partial CUresult cuDeviceGetCount(out int count);

    /// <summary>Writes the device name, NUL-terminated, into <paramref name="name"/> (at most <paramref name="len"/> bytes).</summary>
    [LibraryImport(Libraries.Cuda, EntryPoint = "cuDeviceGetName")]
    public static partial CUresult cuDeviceGetName(byte* name, int len, CUdevice dev);

    /// <summary>Reads one attribute of a device (see <see cref="CUdevice_attribute"/>).</summary>
    [LibraryImport(Libraries.Cuda, EntryPoint = "cuDeviceGetAttribute")]
    public static partial CUresult cuDeviceGetAttribute(out int value, CUdevice_attribute attrib, CUdevice dev);

    /// <summary>Total memory of a device, in bytes.</summary>
    [LibraryImport(Libraries.Cuda, EntryPoint = "cuDeviceTotalMem_v2")]
    public static partial CUresult cuDeviceTotalMem_v2(out nuint bytes, CUdevice dev);

    /// <summary>Device UUID. The <c>_v2</c> entry point (driver 11.4+) is the one current headers map <c>cuDeviceGetUuid</c> to.</summary>
    [LibraryImport(Libraries.Cuda, EntryPoint = "cuDeviceGetUuid_v2")]
    public static partial CUresult cuDeviceGetUuid_v2(out CUuuid uuid, CUdevice dev);

    // ---- contexts ----

    /// <summary>Retains the device's primary context (the one the CUDA runtime also uses), creating it if needed.</summary>
    [LibraryImport(Libraries.Cuda, EntryPoint = "cuDevicePrimaryCtxRetain")]
    public static partial CUresult cuDevicePrimaryCtxRetain(out CUcontext ctx, CUdevice dev);

    /// <summary>Releases one reference to a device's primary context.</summary>
    [LibraryImport(Libraries.Cuda, EntryPoint = "cuDevicePrimaryCtxRelease_v2")]
    public static partial CUresult cuDevicePrimaryCtxRelease_v2(CUdevice dev);

    /// <summary>Binds <paramref name="ctx"/> to the calling thread. Contexts are per OS thread, so every worker thread must do this.</summary>
    [LibraryImport(Libraries.Cuda, EntryPoint = "cuCtxSetCurrent")]
    public static partial CUresult cuCtxSetCurrent(CUcontext ctx);

    /// <summary>The calling thread's current context (null when none).</summary>
    [LibraryImport(Libraries.Cuda, EntryPoint = "cuCtxGetCurrent")]
    public static partial CUresult cuCtxGetCurrent(out CUcontext ctx);

    /// <summary>Blocks until all work in the current context has finished.</summary>
    [LibraryImport(Libraries.Cuda, EntryPoint = "cuCtxSynchronize")]
    public static partial CUresult cuCtxSynchronize();

    // ---- errors ----

    /// <summary>Points <paramref name="str"/> at a static string such as "CUDA_ERROR_OUT_OF_MEMORY" (do not free it).</summary>
    [LibraryImport(Libraries.Cuda, EntryPoint = "cuGetErrorName")]
    public static partial CUresult cuGetErrorName(CUresult error, byte** str);

    /// <summary>Points <paramref name="str"/> at a static description of the error (do not free it).</summary>
    [LibraryImport(Libraries.Cuda, EntryPoint = "cuGetErrorString")]
    public static partial CUresult cuGetErrorString(CUresult error, byte** str);
}
