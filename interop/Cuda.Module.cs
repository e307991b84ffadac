using System.Runtime.InteropServices;

namespace NativeParallel.Interop;

public static unsafe partial class Cuda
{
    // ---- modules ----

    /// <summary>Loads a CUBIN, fatbin or NUL-terminated PTX image. The driver copies the image.</summary>
    [LibraryImport(Libraries.Cuda, EntryPoint = "cuModuleLoadData")]
    public static partial CUresult cuModuleLoadData(out CUmodule module, void* image);

    /// <summary>
    /// As <see cref="cuModuleLoadData"/>, with JIT options; use them to get the PTX JIT's error
    /// log (<see cref="CUjit_option.ERROR_LOG_BUFFER"/>), which the status code alone does not explain.
    /// </summary>
    [LibraryImport(Libraries.Cuda, EntryPoint = "cuModuleLoadDataEx")]
    public static partial CUresult cuModuleLoadDataEx(out CUmodule module, void* image, uint numOptions,
        CUjit_option* options, void** optionValues);

    /// <summary>Unloads a module and its functions.</summary>
    [LibraryImport(Libraries.Cuda, EntryPoint = "cuModuleUnload")]
    public static partial CUresult cuModuleUnload(CUmodule module);

    /// <summary>Looks up a kernel by its (mangled or <c>extern "C"</c>) name; <paramref name="name"/> is NUL-terminated UTF-8.</summary>
    [LibraryImport(Libraries.Cuda, EntryPoint = "cuModuleGetFunction")]
    public static partial CUresult cuModuleGetFunction(out CUfunction function, CUmodule module, byte* name);

    /// <summary>Convenience overload for cold paths: marshals <paramref name="name"/> as UTF-8.</summary>
    [LibraryImport(Libraries.Cuda, EntryPoint = "cuModuleGetFunction", StringMarshalling = StringMarshalling.Utf8)]
    public static partial CUresult cuModuleGetFunction(out CUfunction function, CUmodule module, string name);

    /// <summary>Address and size of a <c>__device__</c>/<c>__constant__</c> global.</summary>
    [LibraryImport(Libraries.Cuda, EntryPoint = "cuModuleGetGlobal_v2")]
    public static partial CUresult cuModuleGetGlobal_v2(out CUdeviceptr ptr, out nuint bytes, CUmodule module, byte* name);

    /// <summary>Convenience overload for cold paths: marshals <paramref name="name"/> as UTF-8.</summary>
    [LibraryImport(Libraries.Cuda, EntryPoint = "cuModuleGetGlobal_v2", StringMarshalling = StringMarshalling.Utf8)]
    public static partial CUresult cuModuleGetGlobal_v2(out CUdeviceptr ptr, out nuint bytes, CUmodule module, string name);

    // ---- launch ----

    /// <summary>
    /// Launches a kernel. <paramref name="kernelParams"/> is an array of pointers, one per kernel
    /// parameter, each pointing at the argument's value (not the value itself); the driver
    /// copies the values during the call, so they only need to live until it returns.
    /// </summary>
    [LibraryImport(Libraries.Cuda, EntryPoint = "cuLaunchKernel")]
    public static partial CUresult cuLaunchKernel(CUfunction f,
        uint gridDimX, uint gridDimY, uint gridDimZ,
        uint blockDimX, uint blockDimY, uint blockDimZ,
        uint sharedMemBytes, CUstream stream, void** kernelParams, void** extra);

    // ---- kernel attributes and occupancy ----

    /// <summary>Reads one attribute of a kernel (registers, shared or local memory, ...).</summary>
    [LibraryImport(Libraries.Cuda, EntryPoint = "cuFuncGetAttribute")]
    public static partial CUresult cuFuncGetAttribute(out int value, CUfunction_attribute attrib, CUfunction function);

    /// <summary>Sets one attribute of a kernel (e.g. its dynamic shared memory limit).</summary>
    [LibraryImport(Libraries.Cuda, EntryPoint = "cuFuncSetAttribute")]
    public static partial CUresult cuFuncSetAttribute(CUfunction function, CUfunction_attribute attrib, int value);

    /// <summary>How many blocks of this size and dynamic shared memory fit on one multiprocessor.</summary>
    [LibraryImport(Libraries.Cuda, EntryPoint = "cuOccupancyMaxActiveBlocksPerMultiprocessor")]
    public static partial CUresult cuOccupancyMaxActiveBlocksPerMultiprocessor(out int numBlocks, CUfunction function,
        int blockSize, nuint dynamicSMemSize);

    /// <summary>
    /// Suggests a block size for maximum occupancy. <paramref name="blockSizeToDynamicSMemSize"/>
    /// maps a block size to its dynamic shared memory need; pass <see langword="null"/> to use
    /// <paramref name="dynamicSMemSize"/> for every block size.
    /// </summary>
    [LibraryImport(Libraries.Cuda, EntryPoint = "cuOccupancyMaxPotentialBlockSize")]
    public static partial CUresult cuOccupancyMaxPotentialBlockSize(out int minGridSize, out int blockSize, CUfunction function,
        delegate* unmanaged<int, nuint> blockSizeToDynamicSMemSize, nuint dynamicSMemSize, int blockSizeLimit);
}
