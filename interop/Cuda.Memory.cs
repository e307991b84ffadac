using System.Runtime.InteropServices;

namespace NativeParallel.Interop;

public static unsafe partial class Cuda
{
    // ---- device memory ----

    /// <summary>Allocates device memory in the current context.</summary>
    [LibraryImport(Libraries.Cuda, EntryPoint = "cuMemAlloc_v2")]
    public static partial CUresult cuMemAlloc_v2(out CUdeviceptr ptr, nuint bytes);

    /// <summary>Frees memory from cuMemAlloc_v2.</summary>
    [LibraryImport(Libraries.Cuda, EntryPoint = "cuMemFree_v2")]
    public static partial CUresult cuMemFree_v2(CUdeviceptr ptr);

    /// <summary>Free and total device memory of the current context's device, in bytes.</summary>
    [LibraryImport(Libraries.Cuda, EntryPoint = "cuMemGetInfo_v2")]
    public static partial CUresult cuMemGetInfo_v2(out nuint free, out nuint total);

    // ---- memset (counts are in elements, not bytes) ----

    /// <summary>Sets <paramref name="count"/> bytes to <paramref name="value"/>.</summary>
    [LibraryImport(Libraries.Cuda, EntryPoint = "cuMemsetD8_v2")]
    public static partial CUresult cuMemsetD8_v2(CUdeviceptr dst, byte value, nuint count);

    /// <summary>Sets <paramref name="count"/> 32-bit words to <paramref name="value"/>.</summary>
    [LibraryImport(Libraries.Cuda, EntryPoint = "cuMemsetD32_v2")]
    public static partial CUresult cuMemsetD32_v2(CUdeviceptr dst, uint value, nuint count);

    // The async memsets never had a _v2 ABI revision.
    /// <summary>Sets <paramref name="count"/> bytes to <paramref name="value"/>, ordered on <paramref name="stream"/>.</summary>
    [LibraryImport(Libraries.Cuda, EntryPoint = "cuMemsetD8Async")]
    public static partial CUresult cuMemsetD8Async(CUdeviceptr dst, byte value, nuint count, CUstream stream);

    /// <summary>Sets <paramref name="count"/> 32-bit words to <paramref name="value"/>, ordered on <paramref name="stream"/>.</summary>
    [LibraryImport(Libraries.Cuda, EntryPoint = "cuMemsetD32Async")]
    public static partial CUresult cuMemsetD32Async(CUdeviceptr dst, uint value, nuint count, CUstream stream);

    // ---- copies (sizes in bytes) ----

    /// <summary>Copies host memory to the device; returns when the source may be reused.</summary>
    [LibraryImport(Libraries.Cuda, EntryPoint = "cuMemcpyHtoD_v2")]
    public static partial CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, void* src, nuint bytes);

    /// <summary>Copies device memory to the host; returns when the copy is done.</summary>
    [LibraryImport(Libraries.Cuda, EntryPoint = "cuMemcpyDtoH_v2")]
    public static partial CUresult cuMemcpyDtoH_v2(void* dst, CUdeviceptr src, nuint bytes);

    /// <summary>Copies between two device addresses.</summary>
    [LibraryImport(Libraries.Cuda, EntryPoint = "cuMemcpyDtoD_v2")]
    public static partial CUresult cuMemcpyDtoD_v2(CUdeviceptr dst, CUdeviceptr src, nuint bytes);

    /// <summary>
    /// Asynchronous host-to-device copy. It is only truly asynchronous from page-locked host
    /// memory; from pageable memory the driver stages it and may return early or block.
    /// Either way the host buffer must stay valid (and pinned, if GC memory) until the stream reaches the copy.
    /// </summary>
    [LibraryImport(Libraries.Cuda, EntryPoint = "cuMemcpyHtoDAsync_v2")]
    public static partial CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, void* src, nuint bytes, CUstream stream);

    /// <summary>Asynchronous device-to-host copy; see <see cref="cuMemcpyHtoDAsync_v2"/> for the host-buffer rules.</summary>
    [LibraryImport(Libraries.Cuda, EntryPoint = "cuMemcpyDtoHAsync_v2")]
    public static partial CUresult cuMemcpyDtoHAsync_v2(void* dst, CUdeviceptr src, nuint bytes, CUstream stream);

    /// <summary>Copies between two device addresses, ordered on <paramref name="stream"/>.</summary>
    [LibraryImport(Libraries.Cuda, EntryPoint = "cuMemcpyDtoDAsync_v2")]
    public static partial CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, nuint bytes, CUstream stream);

    // ---- page-locked host memory ----

    /// <summary>Allocates pinned host memory.</summary>
    [LibraryImport(Libraries.Cuda, EntryPoint = "cuMemHostAlloc")]
    public static partial CUresult cuMemHostAlloc(out void* ptr, nuint bytes, CUmemhostalloc_flags flags);

    /// <summary>Frees memory from cuMemHostAlloc.</summary>
    [LibraryImport(Libraries.Cuda, EntryPoint = "cuMemFreeHost")]
    public static partial CUresult cuMemFreeHost(void* ptr);

    /// <summary>Page-locks an existing host range. The memory must not move: use native or pinned (POH) memory.</summary>
    [LibraryImport(Libraries.Cuda, EntryPoint = "cuMemHostRegister_v2")]
    public static partial CUresult cuMemHostRegister_v2(void* ptr, nuint bytes, CUmemhostregister_flags flags);

    /// <summary>Unpins a range registered with cuMemHostRegister_v2.</summary>
    [LibraryImport(Libraries.Cuda, EntryPoint = "cuMemHostUnregister")]
    public static partial CUresult cuMemHostUnregister(void* ptr);

    // ---- pointer queries ----

    /// <summary>
    /// Reads one attribute of <paramref name="ptr"/> into <paramref name="data"/>, whose size
    /// depends on the attribute (e.g. 4 bytes for MEMORY_TYPE, 8 for CONTEXT or DEVICE_POINTER).
    /// </summary>
    [LibraryImport(Libraries.Cuda, EntryPoint = "cuPointerGetAttribute")]
    public static partial CUresult cuPointerGetAttribute(void* data, CUpointer_attribute attribute, CUdeviceptr ptr);
}
