using System.Runtime.InteropServices;

namespace NativeParallel.Interop;

public static unsafe partial class Cuda
{
    // ---- streams ----

    /// <summary>Creates a stream in the current context.</summary>
    [LibraryImport(Libraries.Cuda, EntryPoint = "cuStreamCreate")]
    public static partial CUresult cuStreamCreate(out CUstream stream, CUstream_flags flags);

    /// <summary>Lower numbers are higher priority; query the range with <c>cuCtxGetStreamPriorityRange</c>.</summary>
    [LibraryImport(Libraries.Cuda, EntryPoint = "cuStreamCreateWithPriority")]
    public static partial CUresult cuStreamCreateWithPriority(out CUstream stream, CUstream_flags flags, int priority);

    /// <summary>Destroys a stream once its work has finished.</summary>
    [LibraryImport(Libraries.Cuda, EntryPoint = "cuStreamDestroy_v2")]
    public static partial CUresult cuStreamDestroy_v2(CUstream stream);

    /// <summary>Blocks until all work on the stream has finished.</summary>
    [LibraryImport(Libraries.Cuda, EntryPoint = "cuStreamSynchronize")]
    public static partial CUresult cuStreamSynchronize(CUstream stream);

    /// <summary>Returns <see cref="CUresult.CUDA_SUCCESS"/> when idle and <see cref="CUresult.CUDA_ERROR_NOT_READY"/> while work is pending.</summary>
    [LibraryImport(Libraries.Cuda, EntryPoint = "cuStreamQuery")]
    public static partial CUresult cuStreamQuery(CUstream stream);

    /// <summary>Makes future work on <paramref name="stream"/> wait for <paramref name="evt"/>. Flags must be 0.</summary>
    [LibraryImport(Libraries.Cuda, EntryPoint = "cuStreamWaitEvent")]
    public static partial CUresult cuStreamWaitEvent(CUstream stream, CUevent evt, uint flags);

    // ---- events ----

    /// <summary>Creates an event in the current context.</summary>
    [LibraryImport(Libraries.Cuda, EntryPoint = "cuEventCreate")]
    public static partial CUresult cuEventCreate(out CUevent evt, CUevent_flags flags);

    /// <summary>Destroys an event.</summary>
    [LibraryImport(Libraries.Cuda, EntryPoint = "cuEventDestroy_v2")]
    public static partial CUresult cuEventDestroy_v2(CUevent evt);

    /// <summary>Records the event at the current end of <paramref name="stream"/>.</summary>
    [LibraryImport(Libraries.Cuda, EntryPoint = "cuEventRecord")]
    public static partial CUresult cuEventRecord(CUevent evt, CUstream stream);

    /// <summary>Blocks until the event's recorded point has been reached.</summary>
    [LibraryImport(Libraries.Cuda, EntryPoint = "cuEventSynchronize")]
    public static partial CUresult cuEventSynchronize(CUevent evt);

    /// <summary>Returns <see cref="CUresult.CUDA_SUCCESS"/> once reached and <see cref="CUresult.CUDA_ERROR_NOT_READY"/> before.</summary>
    [LibraryImport(Libraries.Cuda, EntryPoint = "cuEventQuery")]
    public static partial CUresult cuEventQuery(CUevent evt);

    /// <summary>Milliseconds between two recorded events (about 0.5 µs resolution). Neither may use DISABLE_TIMING.</summary>
    [LibraryImport(Libraries.Cuda, EntryPoint = "cuEventElapsedTime")]
    public static partial CUresult cuEventElapsedTime(out float milliseconds, CUevent start, CUevent end);
}
