namespace NativeParallel.Native;

/// <summary>
/// npComm_t values: small numbers standing for live communicators, never addresses of managed objects, so a
/// destroyed, forged or uninitialised handle is refused with a message instead of crashing the host.
/// </summary>
internal static class Handles
{
    private static readonly Dictionary<nint, Communicator> s_live = [];
    private static long s_next;

    public static nint Add(Communicator comm)
    {
        nint handle = (nint)Interlocked.Increment(ref s_next);
        lock (s_live) s_live.Add(handle, comm);
        return handle;
    }

    public static Communicator Get(nint handle)
    {
        lock (s_live)
            return s_live.TryGetValue(handle, out var comm) ? comm
                : throw new ArgumentException(handle == 0 ? "comm is NULL: create one with npCommInitRank" : "comm is not a live communicator: it was destroyed or never made by npCommInitRank");
    }

    /// <summary>Takes the handle out of the table (later uses are refused) and returns what it stood for.</summary>
    public static Communicator Remove(nint handle)
    {
        var comm = Get(handle);
        lock (s_live) s_live.Remove(handle);
        return comm;
    }
}
