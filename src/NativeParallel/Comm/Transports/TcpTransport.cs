using System.Collections.Concurrent;
using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;
using NativeParallel.Comm.Rendezvous;
using NativeParallel.Diagnostics;

namespace NativeParallel.Comm.Transports;

/// <summary>
/// Ranks across hosts: a full mesh of TCP connections (rank j connects to every lower rank i and says who it
/// is), NATIVEPARALLEL_SOCKETS sockets per peer striped into one stream, non-blocking, driven by the same
/// send/receive loop as the shared-memory rings. Addresses travel
/// through the store; NATIVEPARALLEL_SOCKET_IFNAME picks the interface (default: the one that reaches the
/// store). Every connection starts with the job's handshake (<see cref="JobHandshake"/>): one that cannot prove
/// the secret is dropped with one line on the log. A closed or reset connection is a peer failure; an abort
/// closes every connection so peers stop too.
/// </summary>
public sealed class TcpTransport : ITransport, ILinkHealth
{
    // Acknowledgements come within round trips (milliseconds) on a live path, even a congested one; seconds of
    // silence with data outstanding means the path or the peer's host is gone.
    private const uint DeadPathSilenceMs = 2000;

    private readonly int _rank;
    private readonly TcpStore _store;
    private readonly string _prefix;
    private readonly StripedLink?[] _links;
    private volatile string? _abort;

    private TcpTransport(int rank, int size, TcpStore store, string prefix)
    {
        _rank = rank;
        _store = store;
        _prefix = prefix;
        _links = new StripedLink?[size];
    }

    /// <summary>
    /// Listens, publishes the address, connects the mesh: to every other rank, or to <paramref name="peers"/> only
    /// (the ranks on other hosts, when those on this one share memory); every rank of the group calls it.
    /// <paramref name="acrossHosts"/>: some peer is on another host, so a loopback address would not reach it.
    /// </summary>
    public static TcpTransport Create(TcpStore store, string prefix, int rank, int size, TimeSpan timeout, IReadOnlyCollection<int>? peers = null, bool acrossHosts = false)
    {
        var t = new TcpTransport(rank, size, store, prefix);
        int perPeer = CommTunables.SocketsPerPeer;
        var linked = peers is null ? Enumerable.Range(0, size).Where(p => p != rank).ToHashSet() : peers.ToHashSet();
        IPAddress address = InterfaceAddress() ?? store.LocalAddress;
        if (acrossHosts && IPAddress.IsLoopback(address))
            throw new InvalidOperationException($"tcp: rank {rank} reaches the store at a loopback address ({address}), which its peers on other hosts " +
                                                "cannot reach; set MASTER_ADDR to rank 0's network address, or NATIVEPARALLEL_SOCKET_IFNAME to the interface to use");
        using var listener = new TcpListener(address, 0);
        listener.Start(backlog: Math.Max(size * perPeer, 16));
        store.Set($"{prefix}/addr/{rank}", $"{address}|{((IPEndPoint)listener.LocalEndpoint).Port}");
        var sockets = new Socket?[size, perPeer];
        foreach (int p in linked.Where(p => p < rank).Order())
        {
            var parts = store.Get($"{prefix}/addr/{p}", timeout).Split('|');
            for (int s = 0; s < perPeer; s++)
            {
                var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                socket.Connect(IPAddress.Parse(parts[0]), int.Parse(parts[1]));
                try
                {
                    JobHandshake.Prove(socket, store.Secret, "tcp", store.HandshakeLimit, $"rank {p} at {parts[0]}:{parts[1]}");
                }
                catch (Exception e) when (e is System.Security.Authentication.AuthenticationException or IOException)
                {
                    socket.Dispose();
                    throw new IOException($"tcp: rank {rank} cannot connect to {e.Message}", e);
                }
                socket.Send(BitConverter.GetBytes(rank * 1024 + s)); // who is calling, and which of its sockets this is
                sockets[p, s] = socket;
            }
        }
        var deadline = DateTime.UtcNow + timeout;
        int expected = linked.Count(p => p > rank) * perPeer;
        // Not disposed: handshakes still in flight when Create returns may look at it (and then drop their socket).
        var admitted = new BlockingCollection<(int Id, Socket Socket)>();
        var refusals = new RefusalLog(store.Refusals, $"tcp rank {rank} listening on {listener.LocalEndpoint}");
        _ = AcceptAdmitted(listener, store, (rank, size, perPeer), linked, admitted, refusals);
        try
        {
            for (int accepted = 0; accepted < expected; accepted++)
            {
                if (!admitted.TryTake(out var caller, Max(deadline - DateTime.UtcNow)))
                    throw new TimeoutException($"tcp: rank {rank} waited {timeout.TotalSeconds:F0} s for connections from higher ranks; got {accepted} of {expected}" +
                                               (refusals.Count > 0 ? $" and dropped {refusals.Count} that did not prove the job's secret (see the log)" : ""));
                sockets[caller.Id / 1024, caller.Id % 1024] = caller.Socket;
            }
        }
        finally
        {
            admitted.CompleteAdding();
        }
        foreach (int p in linked)
        {
            t._links[p] = new StripedLink(p, Enumerable.Range(0, perPeer).Select(s => new SocketLink(p, sockets[p, s]!)).ToArray());
        }
        foreach (var link in t._links) link?.MakeNonBlocking();
        return t;
    }

    private static TimeSpan Max(TimeSpan left) => left > TimeSpan.Zero ? left : TimeSpan.Zero;

    // Accepts until the listener closes; each caller proves the job's secret and says who it is on its own task,
    // so a connection that never speaks delays no one. A caller that fails, or claims a slot that is not
    // expected or already taken, is dropped with one line on the log.
    private static async Task AcceptAdmitted(TcpListener listener, TcpStore store, (int Rank, int Size, int PerPeer) me, IReadOnlySet<int> linked,
        BlockingCollection<(int Id, Socket Socket)> admitted, RefusalLog refusals)
    {
        var taken = new bool[me.Size, me.PerPeer];
        while (true)
        {
            Socket socket;
            try { socket = await listener.AcceptSocketAsync().ConfigureAwait(false); }
            catch (Exception e) when (e is SocketException or ObjectDisposedException or InvalidOperationException) { return; }
            _ = Task.Run(() =>
            {
                string from = socket.RemoteEndPoint?.ToString() ?? "an unknown address";
                socket.NoDelay = true;
                string? why = JobHandshake.Admit(socket, store.Secret, "tcp", store.HandshakeLimit, out string failed) ? null : failed;
                int id = -1;
                if (why is null)
                {
                    var who = new byte[4];
                    try
                    {
                        socket.ReceiveTimeout = (int)Math.Max(1, store.HandshakeLimit.TotalMilliseconds);
                        for (int got = 0; got < 4;)
                        {
                            int n = socket.Receive(who, got, 4 - got, SocketFlags.None);
                            if (n == 0) throw new SocketException((int)SocketError.ConnectionReset);
                            got += n;
                        }
                        socket.ReceiveTimeout = 0;
                        id = BitConverter.ToInt32(who);
                    }
                    catch (SocketException e)
                    {
                        why = $"proved the secret but did not say which rank it is ({e.SocketErrorCode})";
                    }
                }
                int caller = id / 1024, slot = id % 1024;
                if (why is null)
                    lock (taken)
                    {
                        if (id < 0 || caller <= me.Rank || caller >= me.Size || !linked.Contains(caller) || slot >= me.PerPeer || taken[caller, slot])
                            why = $"proved the secret but claimed to be socket {slot} of rank {caller}, which rank {me.Rank} does not expect";
                        else taken[caller, slot] = true;
                    }
                try
                {
                    if (why is null && admitted.TryAdd((id, socket))) return;
                }
                catch (InvalidOperationException)
                {
                    // Create has finished (every expected rank arrived, or it failed): nothing waits for this one.
                }
                if (why is not null) refusals.Refused(from, why);
                socket.Dispose();
            });
        }
    }

    private static IPAddress? InterfaceAddress()
    {
        string? name = Tunables.Raw("NATIVEPARALLEL_SOCKET_IFNAME");
        if (name is null) return null;
        var nic = NetworkInterface.GetAllNetworkInterfaces().FirstOrDefault(n => n.Name == name)
                  ?? throw new InvalidOperationException($"NATIVEPARALLEL_SOCKET_IFNAME={name}: no such interface; have " +
                                                         string.Join(", ", NetworkInterface.GetAllNetworkInterfaces().Select(n => n.Name)));
        return nic.GetIPProperties().UnicastAddresses.Select(a => a.Address).FirstOrDefault(a => a.AddressFamily == AddressFamily.InterNetwork)
               ?? throw new InvalidOperationException($"NATIVEPARALLEL_SOCKET_IFNAME={name} has no IPv4 address");
    }

    /// <inheritdoc/>
    public string Name => "tcp";

    /// <inheritdoc/>
    public ILink Link(int peer) => _links[peer] ?? throw new ArgumentException($"rank {_rank} has no link to itself");

    /// <inheritdoc/>
    public void Abort(string reason)
    {
        if (_abort is not null) return;
        _abort = reason;
        // In the background: after a network fault the store may be out of reach, and the failing rank must not wait for it.
        ThreadPool.QueueUserWorkItem(_ =>
        {
            try { _store.Set($"{_prefix}/abort", reason); } catch (IOException) { }
        });
        foreach (var link in _links) link?.Dispose();
    }

    /// <inheritdoc/>
    public string? AbortReason() => _abort;

    /// <inheritdoc/>
    public void Idle(int spins) => Backoff.Idle(spins);

    /// <inheritdoc/>
    public (int Peer, string Why)? Stalled()
    {
        foreach (var link in _links)
            if (link?.Unacknowledged() is { } stall && stall.SilentMs >= DeadPathSilenceMs)
                return (link.Peer, $"rank {link.Peer} is unreachable: {stall.Segments} segments sent to it over tcp ({stall.Remote}) have had no acknowledgement " +
                                   $"for {stall.SilentMs / 1000.0:F1} s, so the network path to its host is down (or that host is)");
        return null;
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        foreach (var link in _links) link?.Dispose();
    }

    /// <summary>
    /// Several sockets to one peer as one stream: the byte stream is cut into fixed slices dealt round-robin over
    /// the sockets, so both ends know which socket carries which bytes, and large messages use every socket.
    /// </summary>
    private sealed class StripedLink(int peer, SocketLink[] sockets) : ILink
    {
        private const int SliceBytes = 64 << 10;
        private int _sendSocket, _sendInSlice, _receiveSocket, _receiveInSlice;

        public int Peer { get; } = peer;

        public void MakeNonBlocking()
        {
            foreach (var s in sockets) s.MakeNonBlocking();
        }

        public int TrySend(ReadOnlySpan<byte> data)
        {
            int total = 0;
            while (data.Length > 0)
            {
                int n = sockets[_sendSocket].TrySend(data[..Math.Min(data.Length, SliceBytes - _sendInSlice)]);
                if (n == 0) break;
                total += n;
                data = data[n..];
                if ((_sendInSlice += n) == SliceBytes) (_sendSocket, _sendInSlice) = ((_sendSocket + 1) % sockets.Length, 0);
            }
            return total;
        }

        public int TryReceive(Span<byte> destination)
        {
            int total = 0;
            while (destination.Length > 0)
            {
                int n = sockets[_receiveSocket].TryReceive(destination[..Math.Min(destination.Length, SliceBytes - _receiveInSlice)]);
                if (n == 0) break;
                total += n;
                destination = destination[n..];
                if ((_receiveInSlice += n) == SliceBytes) (_receiveSocket, _receiveInSlice) = ((_receiveSocket + 1) % sockets.Length, 0);
            }
            return total;
        }

        public string? PeerFailure() => sockets.Select(s => s.PeerFailure()).FirstOrDefault(f => f is not null);

        /// <summary>The socket to this peer that has waited longest for an acknowledgement, if any waits.</summary>
        public (uint Segments, uint SilentMs, string Remote)? Unacknowledged()
        {
            (uint Segments, uint SilentMs, string Remote)? longest = null;
            foreach (var s in sockets)
                if (s.Unacknowledged() is { } u && (longest is null || u.SilentMs > longest.Value.SilentMs))
                    longest = (u.Segments, u.SilentMs, s.Remote);
            return longest;
        }

        public void Dispose()
        {
            foreach (var s in sockets) s.Dispose();
        }
    }

    private sealed class SocketLink(int peer, Socket socket) : ILink
    {
        private volatile string? _failure;

        public int Peer { get; } = peer;

        public void MakeNonBlocking() => socket.Blocking = false;

        public int TrySend(ReadOnlySpan<byte> data)
        {
            if (_failure is not null) return 0;
            int n = socket.Send(data, SocketFlags.None, out var error);
            if (error is SocketError.Success) return n;
            if (error is not (SocketError.WouldBlock or SocketError.Interrupted)) _failure = $"connection to rank {Peer} failed: {error}";
            return 0;
        }

        public int TryReceive(Span<byte> destination)
        {
            if (_failure is not null) return 0;
            int n = socket.Receive(destination, SocketFlags.None, out var error);
            if (error is SocketError.Success)
            {
                if (n == 0 && destination.Length > 0) _failure = $"rank {Peer} closed the connection (it exited or aborted)";
                return n;
            }
            if (error is not (SocketError.WouldBlock or SocketError.Interrupted)) _failure = $"connection from rank {Peer} failed: {error}";
            return 0;
        }

        public string? PeerFailure() => _failure;

        public (uint Segments, uint SilentMs)? Unacknowledged() => TcpAcknowledgements.Unacknowledged(socket);

        public string Remote { get; } = socket.RemoteEndPoint is IPEndPoint end
            ? $"{(end.Address.IsIPv4MappedToIPv6 ? end.Address.MapToIPv4() : end.Address)}:{end.Port}"
            : "?";

        public void Dispose()
        {
            _failure ??= "the connection was closed by this rank";
            try { socket.Shutdown(SocketShutdown.Both); } catch (SocketException) { } catch (ObjectDisposedException) { }
            socket.Dispose();
        }
    }
}
