namespace NativeParallel.Comm.Transports;

/// <summary>
/// One rank's links when the group spans hosts and some peers share this one: shared memory to the peers on this
/// host, TCP to the others, each link keeping the group's rank numbers, so the engine drives both alike. Either
/// part may be missing (a rank alone on its host has no shared-memory peers). An abort reaches both: the
/// shared-memory flag stops this host's ranks, the closed sockets stop the others.
/// </summary>
public sealed class MixedTransport : ITransport, ILinkHealth, IWaitBoard
{
    private readonly int _rank;
    private readonly ShmTransport? _local;
    private readonly TcpTransport? _remote;

    /// <summary>Joins the two parts under the name the whole group uses (shm+tcp).</summary>
    public MixedTransport(string name, int rank, ShmTransport? local, TcpTransport? remote)
    {
        Name = name;
        _rank = rank;
        _local = local;
        _remote = remote;
    }

    /// <inheritdoc/>
    public string Name { get; }

    /// <inheritdoc/>
    public ILink Link(int peer)
    {
        if (peer == _rank) throw new ArgumentException($"rank {_rank} has no link to itself");
        // The shared-memory part knows only this host's ranks: any other peer is reached over TCP.
        return _local?.TryLink(peer) ?? _remote?.Link(peer) ?? throw new ArgumentException($"rank {_rank} has no link to rank {peer}");
    }

    /// <inheritdoc/>
    public void Abort(string reason)
    {
        _local?.Abort(reason);
        _remote?.Abort(reason);
    }

    /// <inheritdoc/>
    public string? AbortReason() => _local?.AbortReason() ?? _remote?.AbortReason();

    /// <inheritdoc/>
    public void Idle(int spins) => Backoff.Idle(spins);

    /// <inheritdoc/>
    public (int Peer, string Why)? Stalled() => _remote?.Stalled();

    // This host's ranks only: what a rank on another host waits on cannot be seen from here.
    void IWaitBoard.Post(int peer, long deadline) => ((IWaitBoard?)_local)?.Post(peer, deadline);

    (int Peer, long Deadline)? IWaitBoard.Waiting(int rank) => ((IWaitBoard?)_local)?.Waiting(rank);

    /// <inheritdoc/>
    public void Dispose()
    {
        _local?.Dispose();
        _remote?.Dispose();
    }
}
