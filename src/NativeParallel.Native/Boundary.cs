using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using NativeParallel.Comm;
using NativeParallel.Interop;

namespace NativeParallel.Native;

/// <summary>
/// The edge between C and .NET: every export runs its body through <see cref="Run"/>, which turns any exception
/// into an npResult_t and keeps its message for npGetLastError. An exception that left an [UnmanagedCallersOnly]
/// method would end the host process, so nothing may escape.
/// </summary>
internal static unsafe class Boundary
{
    // The last failure's message on this thread, as NUL-terminated UTF-8 that C may hold until the next failure.
    [ThreadStatic] private static byte* t_lastError;

    /// <summary>Runs <paramref name="body"/>; 0 (npSuccess) when it returns, else the code of what it threw.</summary>
    public static int Run(string function, Action body)
    {
        try
        {
            body();
            return (int)NpResult.Success;
        }
        catch (Exception e)
        {
            try
            {
                SetLastError($"{function}: {FirstLine(e.Message)}");
            }
            catch
            {
                // Out of memory for the message itself: the code still tells what happened.
            }
            return (int)Classify(e);
        }
    }

    /// <summary>The last failure's message on this thread (empty when none failed yet).</summary>
    public static byte* LastError => t_lastError is null ? Empty : t_lastError;

    private static readonly byte* Empty = (byte*)NativeMemory.AllocZeroed(1);

    /// <summary>NCCL's classes: bad arguments, misuse, a peer or the network, this machine, CUDA, or a bug of ours.</summary>
    internal static NpResult Classify(Exception e) => e switch
    {
        ArgumentException => NpResult.InvalidArgument,
        CudaException => NpResult.UnhandledCudaError,
        CollectiveException or TimeoutException => NpResult.RemoteError,
        SocketException or IOException => NpResult.SystemError,
        InvalidOperationException or ObjectDisposedException or NotSupportedException => NpResult.InvalidUsage,
        _ => NpResult.InternalError,
    };

    private static void SetLastError(string message)
    {
        int length = Encoding.UTF8.GetByteCount(message);
        var copy = (byte*)NativeMemory.Alloc((nuint)length + 1);
        Encoding.UTF8.GetBytes(message, new Span<byte>(copy, length));
        copy[length] = 0;
        var previous = t_lastError;
        t_lastError = copy;
        if (previous is not null) NativeMemory.Free(previous);
    }

    private static string FirstLine(string message) => message.Split('\n')[0].TrimEnd('\r');
}
