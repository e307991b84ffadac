using System.Runtime.InteropServices;

namespace NativeParallel.Interop;

/// <summary>
/// Raw bindings to NVRTC (<c>nvrtc.h</c>), the CUDA C++ runtime compiler. A program handle
/// (<c>nvrtcProgram</c>) is an opaque pointer, kept as <see cref="nint"/>. Strings are
/// NUL-terminated UTF-8 (<c>byte*</c>). For a safe wrapper use <see cref="NvrtcProgram"/>.
/// </summary>
/// <remarks>
/// NVRTC does not need a GPU or the driver: it only turns source into PTX or CUBIN.
/// A program handle is not thread-safe; distinct programs may be compiled in parallel.
/// </remarks>
public static unsafe partial class Nvrtc
{
    /// <summary>NVRTC's version (the CUDA toolkit it ships with).</summary>
    [LibraryImport(Libraries.Nvrtc, EntryPoint = "nvrtcVersion")]
    public static partial NvrtcResult nvrtcVersion(out int major, out int minor);

    /// <summary>A static description of <paramref name="result"/> (do not free it).</summary>
    [LibraryImport(Libraries.Nvrtc, EntryPoint = "nvrtcGetErrorString")]
    public static partial byte* nvrtcGetErrorString(NvrtcResult result);

    /// <summary>
    /// Creates a program. <paramref name="headers"/> holds the contents and
    /// <paramref name="includeNames"/> the names <c>#include</c> refers to them by. NVRTC copies
    /// every string, so the buffers may be freed when this returns.
    /// </summary>
    [LibraryImport(Libraries.Nvrtc, EntryPoint = "nvrtcCreateProgram")]
    public static partial NvrtcResult nvrtcCreateProgram(out nint prog, byte* src, byte* name,
        int numHeaders, byte** headers, byte** includeNames);

    /// <summary>Destroys the program and zeroes the handle.</summary>
    [LibraryImport(Libraries.Nvrtc, EntryPoint = "nvrtcDestroyProgram")]
    public static partial NvrtcResult nvrtcDestroyProgram(ref nint prog);

    /// <summary>Compiles. A failure with <see cref="NvrtcResult.NVRTC_ERROR_COMPILATION"/> leaves the reasons in the program log.</summary>
    [LibraryImport(Libraries.Nvrtc, EntryPoint = "nvrtcCompileProgram")]
    public static partial NvrtcResult nvrtcCompileProgram(nint prog, int numOptions, byte** options);

    /// <summary>PTX size in bytes, including the terminating NUL.</summary>
    [LibraryImport(Libraries.Nvrtc, EntryPoint = "nvrtcGetPTXSize")]
    public static partial NvrtcResult nvrtcGetPTXSize(nint prog, out nuint ptxSizeRet);

    /// <summary>Copies the PTX (size from nvrtcGetPTXSize) into <paramref name="ptx"/>.</summary>
    [LibraryImport(Libraries.Nvrtc, EntryPoint = "nvrtcGetPTX")]
    public static partial NvrtcResult nvrtcGetPTX(nint prog, byte* ptx);

    /// <summary>CUBIN size; 0 when the program was compiled for a virtual architecture (<c>compute_XX</c>).</summary>
    [LibraryImport(Libraries.Nvrtc, EntryPoint = "nvrtcGetCUBINSize")]
    public static partial NvrtcResult nvrtcGetCUBINSize(nint prog, out nuint cubinSizeRet);

    /// <summary>Copies the CUBIN (size from nvrtcGetCUBINSize) into <paramref name="cubin"/>.</summary>
    [LibraryImport(Libraries.Nvrtc, EntryPoint = "nvrtcGetCUBIN")]
    public static partial NvrtcResult nvrtcGetCUBIN(nint prog, byte* cubin);

    /// <summary>Log size in bytes, including the terminating NUL (so 1 for an empty log).</summary>
    [LibraryImport(Libraries.Nvrtc, EntryPoint = "nvrtcGetProgramLogSize")]
    public static partial NvrtcResult nvrtcGetProgramLogSize(nint prog, out nuint logSizeRet);

    /// <summary>Copies the compile log (size from nvrtcGetProgramLogSize) into <paramref name="log"/>.</summary>
    [LibraryImport(Libraries.Nvrtc, EntryPoint = "nvrtcGetProgramLog")]
    public static partial NvrtcResult nvrtcGetProgramLog(nint prog, byte* log);

    /// <summary>Registers a name expression (e.g. <c>"&amp;kernel&lt;float&gt;"</c>) before compiling, so its mangled name can be queried after.</summary>
    [LibraryImport(Libraries.Nvrtc, EntryPoint = "nvrtcAddNameExpression")]
    public static partial NvrtcResult nvrtcAddNameExpression(nint prog, byte* nameExpression);

    /// <summary>The mangled name of a registered expression; the string is owned by the program.</summary>
    [LibraryImport(Libraries.Nvrtc, EntryPoint = "nvrtcGetLoweredName")]
    public static partial NvrtcResult nvrtcGetLoweredName(nint prog, byte* nameExpression, byte** loweredName);

    /// <summary>Number of <c>sm_XX</c> architectures this NVRTC can target (NVRTC 11.2+).</summary>
    [LibraryImport(Libraries.Nvrtc, EntryPoint = "nvrtcGetNumSupportedArchs")]
    public static partial NvrtcResult nvrtcGetNumSupportedArchs(out int numArchs);

    /// <summary>Fills <paramref name="supportedArchs"/> (sized by <see cref="nvrtcGetNumSupportedArchs"/>) with e.g. 80, 86, 90.</summary>
    [LibraryImport(Libraries.Nvrtc, EntryPoint = "nvrtcGetSupportedArchs")]
    public static partial NvrtcResult nvrtcGetSupportedArchs(int* supportedArchs);
}
