namespace NativeParallel.Comm.Transports;

/// <summary>
/// A bidirectional byte stream between this rank and one peer, used without blocking: each call moves what it
/// can and returns how many bytes it moved, so one thread can drive a send and a receive at once (the ring
/// steps do), and a collective never waits on one direction while the other is full.
/// </summary>
public interface ILink : IDisposable
{
    /// <summary>The peer's rank in the group.</summary>
    int Peer { get; }

    /// <summary>Copies up to data.Length bytes towards the peer; returns how many were taken (0 when the path is full).</summary>
    int TrySend(ReadOnlySpan<byte> data);

    /// <summary>Copies up to destination.Length bytes that have arrived from the peer; returns how many (0 when none).</summary>
    int TryReceive(Span<byte> destination);

    /// <summary>Null while the peer looks alive; otherwise why it does not (process gone, connection closed).</summary>
    string? PeerFailure();
}

/// <summary>
/// A link whose received bytes can be reduced where they land (shared memory), saving the copy into scratch.
/// Only whole elements are consumed.
/// </summary>
internal interface IReducingLink
{
    int TryReceiveReduce(Span<byte> accumulator, int elementSize, SpscRing.ReduceInto reduce);
}

/// <summary>
/// A transport whose ranks can see what some of their peers wait for (shared memory: each rank's control block).
/// A rank that times out waiting on a peer that itself waits on another rank gives that peer time to report
/// first: the peer's blame is nearer the cause (a peer across a dead link) than "this rank waited on that one".
/// </summary>
internal interface IWaitBoard
{
    /// <summary>Says that this rank waits on <paramref name="peer"/> until <paramref name="deadline"/> (Stopwatch ticks); peer −1 says it waits on no one.</summary>
    void Post(int peer, long deadline);

    /// <summary>The peer <paramref name="rank"/> waits on and its deadline, while it waits and this rank can see it; else null.</summary>
    (int Peer, long Deadline)? Waiting(int rank);
}

/// <summary>All links of one rank, one per peer, and the group-wide abort signal.</summary>
public interface ITransport : IDisposable
{
    /// <summary>transport name for logs and the bench header: shm, tcp, threads.</summary>
    string Name { get; }

    /// <summary>The link to <paramref name="peer"/>.</summary>
    ILink Link(int peer);

    /// <summary>Tells every rank to stop waiting (this rank failed); <paramref name="reason"/> reaches their errors.</summary>
    void Abort(string reason);

    /// <summary>Null unless some rank aborted; then its reason.</summary>
    string? AbortReason();

    /// <summary>Blocks briefly until a link may have progressed (the idle step of a wait loop).</summary>
    void Idle(int spins);
}
