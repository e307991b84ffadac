using System.Buffers;
using System.Diagnostics;
using NativeParallel.Comm.Transports;
using NativeParallel.Kernels;
using NativeParallel.Tensors;

namespace NativeParallel.Comm;

/// <summary>
/// Moves bytes for one rank: simultaneous send and receive on two links, optionally reducing what arrives into
/// an accumulator as it arrives. Every wait checks the deadline, the group's abort flag and the peers' health,
/// and turns each into a <see cref="CollectiveException"/> that names the collective, sequence, group and peer.
/// </summary>
internal sealed class Engine(ITransport transport, int rank, int size, string group, TimeSpan timeout)
{
    private static readonly long CheckTicks = Stopwatch.Frequency / 1000;
    private const int ClockEvery = 32;
    private byte[] _scratch = [];
    private long _nextCheck;
    private int _suspectedAt = -1;
    private readonly IWaitBoard? _board = transport as IWaitBoard;
    // The end of this call's wait for a report from the chain of ranks its peer waits on (0: not yet looked; −1: none).
    private long _deferUntil;

    public int Rank => rank;
    public int Size => size;
    public ITransport Transport => transport;

    /// <summary>The collective in flight (for error messages).</summary>
    public (Collective Kind, long Sequence) Current { get; set; }

    /// <summary>Sends <paramref name="send"/> to <paramref name="sendPeer"/> while receiving <paramref name="receive"/> from <paramref name="receivePeer"/> (−1: none).</summary>
    public void SendReceive(int sendPeer, ReadOnlySpan<byte> send, int receivePeer, Span<byte> receive)
    {
        var sendLink = sendPeer >= 0 && send.Length > 0 ? transport.Link(sendPeer) : null;
        var receiveLink = receivePeer >= 0 && receive.Length > 0 ? transport.Link(receivePeer) : null;
        int sent = 0, received = 0, idle = 0;
        long started = 0; // set at the first clock read of a wait: a call that never waits long reads no clock
        while ((sendLink is not null && sent < send.Length) || (receiveLink is not null && received < receive.Length))
        {
            int moved = 0;
            if (sendLink is not null && sent < send.Length) moved += Progress(ref sent, Counted(sendLink.TrySend(send[sent..])));
            if (receiveLink is not null && received < receive.Length) moved += Progress(ref received, receiveLink.TryReceive(receive[received..]));
            if (moved > 0) idle = 0;
            else Wait(ref idle, ref started, sendLink, sent, send.Length, receiveLink, received, receive.Length);
        }
        Done(started);
    }

    /// <summary>
    /// Sends <paramref name="send"/> to <paramref name="sendPeer"/> while receiving as many bytes as
    /// <paramref name="accumulator"/> holds from <paramref name="receivePeer"/> and reducing them into it, element
    /// by element as they arrive (the reduction overlaps the transfer).
    /// </summary>
    public void SendReceiveReduce(int sendPeer, ReadOnlySpan<byte> send, int receivePeer, Span<byte> accumulator, DType dtype, ReduceOp op)
    {
        if (accumulator.Length > 0 && transport.Link(receivePeer) is IReducingLink direct)
        {
            SendReceiveReduceInPlace(sendPeer, send, receivePeer, direct, accumulator, dtype, op);
            return;
        }
        int elementSize = dtype.SizeOf();
        if (_scratch.Length < accumulator.Length) _scratch = new byte[Math.Max(accumulator.Length, 2 * _scratch.Length)];
        var scratch = _scratch.AsSpan(0, accumulator.Length);
        var sendLink = sendPeer >= 0 && send.Length > 0 ? transport.Link(sendPeer) : null;
        var receiveLink = accumulator.Length > 0 ? transport.Link(receivePeer) : null;
        int sent = 0, received = 0, reduced = 0, idle = 0;
        long started = 0; // set at the first clock read of a wait: a call that never waits long reads no clock
        while ((sendLink is not null && sent < send.Length) || reduced < accumulator.Length)
        {
            int moved = 0;
            if (sendLink is not null && sent < send.Length) moved += Progress(ref sent, Counted(sendLink.TrySend(send[sent..])));
            if (receiveLink is not null && received < accumulator.Length)
            {
                moved += Progress(ref received, receiveLink.TryReceive(scratch[received..]));
                int ready = received / elementSize * elementSize;
                if (ready > reduced)
                {
                    HostReduce.Apply(op, dtype, accumulator[reduced..ready], scratch[reduced..ready]);
                    reduced = ready;
                }
            }
            if (moved > 0) idle = 0;
            else Wait(ref idle, ref started, sendLink, sent, send.Length, receiveLink, received, accumulator.Length);
        }
        Done(started);
    }

    // The shared-memory path of SendReceiveReduce: reduce straight out of the peer's ring.
    private void SendReceiveReduceInPlace(int sendPeer, ReadOnlySpan<byte> send, int receivePeer, IReducingLink inbound,
        Span<byte> accumulator, DType dtype, ReduceOp op)
    {
        int elementSize = dtype.SizeOf();
        var sendLink = sendPeer >= 0 && send.Length > 0 ? transport.Link(sendPeer) : null;
        var receiveLink = transport.Link(receivePeer);
        SpscRing.ReduceInto reduce = (acc, incoming) => HostReduce.Apply(op, dtype, acc, incoming);
        int sent = 0, reduced = 0, idle = 0;
        long started = 0; // set at the first clock read of a wait: a call that never waits long reads no clock
        while ((sendLink is not null && sent < send.Length) || reduced < accumulator.Length)
        {
            int moved = 0;
            if (sendLink is not null && sent < send.Length) moved += Progress(ref sent, Counted(sendLink.TrySend(send[sent..])));
            if (reduced < accumulator.Length) moved += Progress(ref reduced, inbound.TryReceiveReduce(accumulator[reduced..], elementSize, reduce));
            if (moved > 0) idle = 0;
            else Wait(ref idle, ref started, sendLink, sent, send.Length, receiveLink, reduced, accumulator.Length);
        }
        Done(started);
    }

    /// <summary>
    /// Receives <paramref name="buffer"/> from <paramref name="receivePeer"/> (unless −1: the bytes are already
    /// here) while forwarding every byte that has arrived to <paramref name="sendPeer"/> (unless −1).
    /// </summary>
    public void Relay(int receivePeer, int sendPeer, Span<byte> buffer)
    {
        var receiveLink = receivePeer >= 0 && buffer.Length > 0 ? transport.Link(receivePeer) : null;
        var sendLink = sendPeer >= 0 && buffer.Length > 0 ? transport.Link(sendPeer) : null;
        int received = receiveLink is null ? buffer.Length : 0, sent = 0, idle = 0;
        long started = 0; // set at the first clock read of a wait: a call that never waits long reads no clock
        while (received < buffer.Length || (sendLink is not null && sent < buffer.Length))
        {
            int moved = 0;
            if (receiveLink is not null && received < buffer.Length) moved += Progress(ref received, receiveLink.TryReceive(buffer[received..]));
            if (sendLink is not null && sent < received) moved += Progress(ref sent, Counted(sendLink.TrySend(buffer[sent..received])));
            if (moved > 0) idle = 0;
            else Wait(ref idle, ref started, sendLink, sent, buffer.Length, receiveLink, received, buffer.Length);
        }
        Done(started);
    }

    /// <summary>
    /// Sends <paramref name="send"/> to every peer while receiving <paramref name="slotBytes"/> from each into its
    /// slot of <paramref name="slots"/> (slot p at p × slotBytes; this rank's slot is left alone): one hop for all.
    /// </summary>
    public void ExchangeAll(ReadOnlySpan<byte> send, Span<byte> slots, int slotBytes)
    {
        // On the stack: the small-message path allocates nothing per call.
        Span<int> sent = size <= 256 ? stackalloc int[size] : new int[size];
        Span<int> received = size <= 256 ? stackalloc int[size] : new int[size];
        int pending = 2 * (size - 1), idle = 0;
        long started = 0; // set at the first clock read of a wait: a call that never waits long reads no clock
        while (pending > 0)
        {
            int moved = 0;
            for (int step = 1; step < size; step++)
            {
                // Start with the right neighbour, as a ring would, so ranks do not all hit one peer first.
                int p = (rank + step) % size;
                var link = transport.Link(p);
                if (sent[p] < send.Length)
                {
                    int n = Counted(link.TrySend(send[sent[p]..]));
                    moved += n;
                    sent[p] += n;
                    if (sent[p] == send.Length) pending--;
                }
                if (received[p] < slotBytes)
                {
                    int n = link.TryReceive(slots.Slice(p * slotBytes + received[p], slotBytes - received[p]));
                    moved += n;
                    received[p] += n;
                    if (received[p] == slotBytes) pending--;
                }
            }
            if (moved > 0) idle = 0;
            else
            {
                int laggard = (rank + 1) % size;
                for (int p = 0; p < size; p++)
                    if (p != rank && received[p] < slotBytes)
                    {
                        laggard = p;
                        break;
                    }
                Wait(ref idle, ref started, transport.Link(laggard), sent[laggard], send.Length, transport.Link(laggard), received[laggard], slotBytes);
            }
        }
        Done(started);
    }

    /// <summary>Bytes this rank has put on its links (payload, headers and descriptors).</summary>
    public long BytesSent { get; private set; }

    private int Counted(int sent)
    {
        BytesSent += sent;
        return sent;
    }

    private static int Progress(ref int done, int moved)
    {
        done += moved;
        return moved;
    }

    // A call that waited long enough to read the clock posted what it waited on: it waits on no one now.
    private void Done(long started)
    {
        if (started != 0) _board?.Post(-1, 0);
    }

    private void Wait(ref int idle, ref long started, ILink? sendLink, int sent, int sendTotal, ILink? receiveLink, int received, int receiveTotal)
    {
        transport.Idle(idle++);
        // Reading the clock can cost more than a poll (kvm-clock on the 2-core VM: 0.2-0.5 µs), so a wait polls
        // ClockEvery times before its first read (a small message's data usually arrives among them), then reads
        // it every ClockEvery polls while spinning and on every poll once it yields or sleeps.
        if (idle < ClockEvery || (idle < Backoff.SpinPolls && idle % ClockEvery != 0)) return;
        // The checks read /proc and the clock: once a millisecond of waiting, not on every poll (a poll of shared
        // memory costs nanoseconds, and a check landing as the data arrives would add its cost to the latency).
        long now = Stopwatch.GetTimestamp();
        if (started == 0)
        {
            started = now;
            _deferUntil = 0;
            var on = receiveLink is not null && received < receiveTotal ? receiveLink : sendLink;
            _board?.Post(on?.Peer ?? -1, now + (long)(timeout.TotalSeconds * Stopwatch.Frequency));
        }
        if (idle == ClockEvery)
        {
            _nextCheck = now + CheckTicks;
            _suspectedAt = -1;
        }
        if (now < _nextCheck) return;
        _nextCheck = now + CheckTicks;
        if (transport.AbortReason() is { } reason) throw Fail($"the group was aborted: {reason}", null, abortOthers: false);
        // Only a direction with work left: a peer that has taken (or given) everything and gone is no failure.
        var failed = Failed(sent < sendTotal ? sendLink : null) ?? Failed(received < receiveTotal ? receiveLink : null);
        if (failed is { } gone)
        {
            // Final only after one more empty poll: what a peer wrote just before it left is visible once its leaving
            // is, and the poll that came up empty may have looked just before both.
            if (_suspectedAt >= 0 && idle > _suspectedAt)
                throw Fail($"peer rank {gone.Link.Peer} failed: {gone.Why}", gone.Link.Peer, abortOthers: true);
            _suspectedAt = idle;
            _nextCheck = now;
            return;
        }
        if (Stopwatch.GetElapsedTime(started) > timeout)
        {
            var waitingOn = receiveLink is not null && received < receiveTotal ? receiveLink : sendLink;
            string Moved() => $"sent {sent} of {sendTotal} bytes to rank {sendLink?.Peer.ToString() ?? "-"}, " +
                                 $"received {received} of {receiveTotal} bytes from rank {receiveLink?.Peer.ToString() ?? "-"}";
            // A dead network path is the cause wherever this rank waits: name the peer behind it, not the neighbour.
            if ((transport as ILinkHealth)?.Stalled() is { } stalled)
                throw Fail($"timed out after {timeout.TotalSeconds:F0} s ({Moved()}); {stalled.Why}", stalled.Peer, abortOthers: true);
            // A peer that waits in turn on another rank will name the cause nearer than this rank can: its abort,
            // checked above every millisecond, is the report to give. Only once the chain has had its time does
            // this rank name the peer it waits on itself.
            if (_deferUntil == 0) _deferUntil = waitingOn is null ? -1 : Deferral(waitingOn.Peer, now);
            if (now < _deferUntil) return;
            string chain = waitingOn is not null && _board?.Waiting(waitingOn.Peer) is { } next && next.Peer != rank
                ? $"; rank {waitingOn.Peer} itself waits on rank {next.Peer} and has not reported why" : "";
            throw Fail($"timed out after {timeout.TotalSeconds:F0} s ({Moved()}){chain}; raise NATIVEPARALLEL_TIMEOUT_S if the peers are just slow",
                waitingOn?.Peer, abortOthers: true);
        }
    }

    /// <summary>
    /// When this rank has timed out on <paramref name="peer"/> and that peer itself waits on another rank: until
    /// when to wait for a report from the chain of waits that starts there, as far as this rank can see it (its
    /// host's ranks; a rank waiting across the network ends it). The rank at the end of the chain times out on
    /// its own deadline and names a cause nearer than "this rank waited on that one": a peer across a dead link,
    /// or a rank that never called. So: the latest deadline in the chain (at most one timeout from now), plus
    /// slack for a loaded machine (a quarter of the timeout, 1 to 10 s), then this rank blames its peer anyway.
    /// −1 (no wait) when the peer waits on no one (it is the cause) or the chain comes back to this rank (a cycle:
    /// each rank names its own peer, as without this).
    /// </summary>
    private long Deferral(int peer, long now)
    {
        if (_board is null) return -1;
        long latest = 0;
        var seen = new HashSet<int> { rank };
        for (int at = peer; seen.Add(at) && _board.Waiting(at) is { } wait; at = wait.Peer)
        {
            if (wait.Peer == rank) return -1;
            latest = Math.Max(latest, wait.Deadline);
        }
        if (latest == 0) return -1;
        long timeoutTicks = (long)(timeout.TotalSeconds * Stopwatch.Frequency);
        long slack = (long)(Math.Clamp(timeout.TotalSeconds / 4, 1, 10) * Stopwatch.Frequency);
        return Math.Min(Math.Max(latest, now), now + timeoutTicks) + slack;
    }

    private static (ILink Link, string Why)? Failed(ILink? link) => link?.PeerFailure() is { } why ? (link, why) : null;

    /// <summary>Builds the error for this rank and, for failures the others cannot see, aborts the group so they stop too.</summary>
    public CollectiveException Fail(string what, int? peer, bool abortOthers)
    {
        var (kind, sequence) = Current;
        string message = $"{kind.Name()} #{sequence} in group '{group}' failed on rank {rank} of {size}: {what}";
        _board?.Post(-1, 0);
        if (abortOthers) transport.Abort($"rank {rank}: {what} (during {kind.Name()} #{sequence})");
        return new CollectiveException(message, kind, sequence, group, rank, peer);
    }

    /// <summary>Rents scratch memory for algorithms that stage whole blocks.</summary>
    public static byte[] Rent(int bytes) => ArrayPool<byte>.Shared.Rent(Math.Max(bytes, 1));

    public static void Return(byte[] buffer) => ArrayPool<byte>.Shared.Return(buffer);
}
