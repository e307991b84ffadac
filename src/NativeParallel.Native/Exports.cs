using System.Runtime.InteropServices;

namespace NativeParallel.Native;

/// <summary>
/// The C entry points of libnativeparallel.so (declared in native/include/nativeparallel.h): NCCL's calls and
/// argument order with an np prefix. Each returns an npResult_t; a failure's message is npGetLastError's.
/// </summary>
internal static unsafe class Exports
{
    /// <summary>NP_VERSION_CODE: major × 10000 + minor × 100 + patch.</summary>
    private const int VersionCode = 100;

    [UnmanagedCallersOnly(EntryPoint = "npGetVersion")]
    public static int GetVersion(int* version) => Boundary.Run("npGetVersion", () =>
    {
        Require(version, "version");
        *version = VersionCode;
    });

    [UnmanagedCallersOnly(EntryPoint = "npGetUniqueId")]
    public static int GetUniqueId(byte* uniqueId) => Boundary.Run("npGetUniqueId", () =>
    {
        Require(uniqueId, "uniqueId");
        UniqueId.Create(new Span<byte>(uniqueId, UniqueId.Size));
    });

    /// <summary>
    /// npCommInitRank's body, with the id by address: the header's inline npCommInitRank passes NCCL's by-value id
    /// here. (NativeAOT 10 aborts when the first call into the library takes a 128-byte struct by value.)
    /// </summary>
    [UnmanagedCallersOnly(EntryPoint = "npCommInitRankById")]
    public static int CommInitRankById(nint* comm, int nranks, byte* commId, int rank) => Boundary.Run("npCommInitRank", () =>
    {
        Require(comm, "comm");
        *comm = 0;
        Require(commId, "commId");
        *comm = Handles.Add(Communicator.Join(nranks, new ReadOnlySpan<byte>(commId, UniqueId.Size), rank));
    });

    [UnmanagedCallersOnly(EntryPoint = "npCommDestroy")]
    public static int CommDestroy(nint comm) => Boundary.Run("npCommDestroy", () => Handles.Remove(comm).Dispose());

    [UnmanagedCallersOnly(EntryPoint = "npCommAbort")]
    public static int CommAbort(nint comm) => Boundary.Run("npCommAbort", () =>
    {
        var c = Handles.Remove(comm);
        c.Group.Abort("a rank called npCommAbort");
        c.Dispose();
    });

    [UnmanagedCallersOnly(EntryPoint = "npCommCount")]
    public static int CommCount(nint comm, int* count) => Boundary.Run("npCommCount", () =>
    {
        Require(count, "count");
        *count = Handles.Get(comm).Group.Size;
    });

    [UnmanagedCallersOnly(EntryPoint = "npCommUserRank")]
    public static int CommUserRank(nint comm, int* rank) => Boundary.Run("npCommUserRank", () =>
    {
        Require(rank, "rank");
        *rank = Handles.Get(comm).Group.Rank;
    });

    [UnmanagedCallersOnly(EntryPoint = "npAllReduce")]
    public static int AllReduce(void* sendbuff, void* recvbuff, nuint count, int datatype, int op, nint comm, void* stream) =>
        Boundary.Run("npAllReduce", () =>
        {
            var c = Handles.Get(comm);
            var dtype = NpEnums.DataType(datatype);
            var reduce = NpEnums.RedOp(op);
            using var output = c.Wrap(recvbuff, count, dtype, "recvbuff");
            using var input = sendbuff == recvbuff ? null : c.Wrap(sendbuff, count, dtype, "sendbuff");
            Communicator.WaitFor(stream);
            c.Group.AllReduce(input ?? output, output, reduce);
            c.Finish(output);
        });

    [UnmanagedCallersOnly(EntryPoint = "npBroadcast")]
    public static int Broadcast(void* sendbuff, void* recvbuff, nuint count, int datatype, int root, nint comm, void* stream) =>
        Boundary.Run("npBroadcast", () =>
        {
            var c = Handles.Get(comm);
            var dtype = NpEnums.DataType(datatype);
            using var output = c.Wrap(recvbuff, count, dtype, "recvbuff");
            // Only the root reads sendbuff (NCCL lets the others pass anything there).
            using var input = sendbuff == recvbuff || c.Group.Rank != root ? null : c.Wrap(sendbuff, count, dtype, "sendbuff");
            Communicator.WaitFor(stream);
            c.Group.Broadcast(input ?? output, output, root);
            c.Finish(output);
        });

    [UnmanagedCallersOnly(EntryPoint = "npAllGather")]
    public static int AllGather(void* sendbuff, void* recvbuff, nuint sendcount, int datatype, nint comm, void* stream) =>
        Boundary.Run("npAllGather", () =>
        {
            var c = Handles.Get(comm);
            var dtype = NpEnums.DataType(datatype);
            using var input = c.Wrap(sendbuff, sendcount, dtype, "sendbuff");
            using var output = c.Wrap(recvbuff, (ulong)sendcount * (ulong)c.Group.Size, dtype, "recvbuff");
            Communicator.WaitFor(stream);
            c.Group.AllGather(input, output);
            c.Finish(output);
        });

    [UnmanagedCallersOnly(EntryPoint = "npReduceScatter")]
    public static int ReduceScatter(void* sendbuff, void* recvbuff, nuint recvcount, int datatype, int op, nint comm, void* stream) =>
        Boundary.Run("npReduceScatter", () =>
        {
            var c = Handles.Get(comm);
            var dtype = NpEnums.DataType(datatype);
            var reduce = NpEnums.RedOp(op);
            using var input = c.Wrap(sendbuff, (ulong)recvcount * (ulong)c.Group.Size, dtype, "sendbuff");
            using var output = c.Wrap(recvbuff, recvcount, dtype, "recvbuff");
            Communicator.WaitFor(stream);
            c.Group.ReduceScatter(input, output, reduce);
            c.Finish(output);
        });

    [UnmanagedCallersOnly(EntryPoint = "npSend")]
    public static int Send(void* sendbuff, nuint count, int datatype, int peer, nint comm, void* stream) =>
        Boundary.Run("npSend", () =>
        {
            var c = Handles.Get(comm);
            using var input = c.Wrap(sendbuff, count, NpEnums.DataType(datatype), "sendbuff");
            Communicator.WaitFor(stream);
            c.Group.Send(input, peer);
        });

    [UnmanagedCallersOnly(EntryPoint = "npRecv")]
    public static int Recv(void* recvbuff, nuint count, int datatype, int peer, nint comm, void* stream) =>
        Boundary.Run("npRecv", () =>
        {
            var c = Handles.Get(comm);
            using var output = c.Wrap(recvbuff, count, NpEnums.DataType(datatype), "recvbuff");
            Communicator.WaitFor(stream);
            c.Group.Recv(output, peer);
            c.Finish(output);
        });

    /// <summary>A fixed sentence per code (static storage, never freed), as ncclGetErrorString.</summary>
    [UnmanagedCallersOnly(EntryPoint = "npGetErrorString")]
    public static byte* GetErrorString(int result)
    {
        ReadOnlySpan<byte> text = (NpResult)result switch
        {
            NpResult.Success => "no error\0"u8,
            NpResult.UnhandledCudaError => "unhandled CUDA error (see npGetLastError)\0"u8,
            NpResult.SystemError => "system error: a socket, shared memory or file operation failed (see npGetLastError)\0"u8,
            NpResult.InternalError => "internal error in nativeparallel (see npGetLastError)\0"u8,
            NpResult.InvalidArgument => "invalid argument (see npGetLastError)\0"u8,
            NpResult.InvalidUsage => "invalid usage (see npGetLastError)\0"u8,
            NpResult.RemoteError => "remote process exited, disagreed or timed out (see npGetLastError)\0"u8,
            _ => "unknown result code\0"u8,
        };
        // u8 literals live in the image's read-only data: the pointer stays valid for the life of the process.
        fixed (byte* p = text) return p;
    }

    /// <summary>The message of the last failed call on the calling thread (comm is accepted for NCCL's signature and may be NULL).</summary>
    [UnmanagedCallersOnly(EntryPoint = "npGetLastError")]
    public static byte* GetLastError(nint comm) => Boundary.LastError;

    private static void Require(void* pointer, string name)
    {
        if (pointer is null) throw new ArgumentException($"{name} is NULL");
    }

}
