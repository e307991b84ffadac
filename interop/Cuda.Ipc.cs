using System.Runtime.InteropServices;

namespace NativeParallel.Interop;

// CUDA IPC shares device allocations and events between processes on the same machine
// (Linux only; not supported on Windows WDDM or by allocations from cuMemHostAlloc).
public static unsafe partial class Cuda
{
    /// <summary>Exports an allocation made with <c>cuMemAlloc_v2</c>. The handle refers to the whole allocation.</summary>
    [LibraryImport(Libraries.Cuda, EntryPoint = "cuIpcGetMemHandle")]
    public static partial CUresult cuIpcGetMemHandle(out CUipcMemHandle handle, CUdeviceptr ptr);

    /// <summary>
    /// Maps another process's allocation into this one. Pass
    /// <see cref="CUipcMem_flags.CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS"/>. A process cannot open
    /// its own handles.
    /// </summary>
    [LibraryImport(Libraries.Cuda, EntryPoint = "cuIpcOpenMemHandle_v2")]
    public static partial CUresult cuIpcOpenMemHandle_v2(out CUdeviceptr ptr, CUipcMemHandle handle, CUipcMem_flags flags);

    /// <summary>Unmaps memory opened with cuIpcOpenMemHandle_v2.</summary>
    [LibraryImport(Libraries.Cuda, EntryPoint = "cuIpcCloseMemHandle")]
    public static partial CUresult cuIpcCloseMemHandle(CUdeviceptr ptr);

    /// <summary>Exports an event created with <c>INTERPROCESS | DISABLE_TIMING</c>.</summary>
    [LibraryImport(Libraries.Cuda, EntryPoint = "cuIpcGetEventHandle")]
    public static partial CUresult cuIpcGetEventHandle(out CUipcEventHandle handle, CUevent evt);

    /// <summary>Opens an event another process exported with cuIpcGetEventHandle.</summary>
    [LibraryImport(Libraries.Cuda, EntryPoint = "cuIpcOpenEventHandle")]
    public static partial CUresult cuIpcOpenEventHandle(out CUevent evt, CUipcEventHandle handle);
}
