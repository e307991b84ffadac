using System.Runtime.InteropServices;
using System.Text;

namespace NativeParallel.Comm.Transports;

/// <summary>
/// The shared-memory layout of a group: one segment per rank holding a control block (abort flag and reason,
/// owner pid) and one inbound <see cref="SpscRing"/> per peer. Rank p sends to r by writing the ring for p in r's
/// segment; r reads its own segment. Thread ranks share one process allocation; process ranks map files in
/// /dev/shm (<see cref="ShmTransport"/>). Either way the hot path is memory only.
/// </summary>
internal static unsafe class RingMesh
{
    public const int ControlBytes = 4096;
    private const int AbortFlagOffset = 0;
    private const int PidOffset = 8;
    // What the owner waits on (peer + 1, 0: no one) and until when (Stopwatch ticks): see IWaitBoard.
    private const int WaitPeerOffset = 16;
    private const int WaitDeadlineOffset = 24;
    private const int ReasonOffset = 64;
    private const int ReasonBytes = ControlBytes - ReasonOffset;

    /// <summary>Bytes of one rank's segment.</summary>
    public static long SegmentBytes(int size, long ringCapacity) => ControlBytes + size * SpscRing.Footprint(ringCapacity);

    /// <summary>Fills a fresh segment: owner pid, cleared abort flag, empty rings.</summary>
    public static void Initialize(byte* segment, int size, long ringCapacity, int pid)
    {
        new Span<byte>(segment, ControlBytes).Clear();
        *(int*)(segment + PidOffset) = pid;
        for (int p = 0; p < size; p++) _ = Ring(segment, p, ringCapacity, initialize: true);
    }

    /// <summary>
    /// Touches one byte of every page of a segment (<paramref name="write"/>: zeroes it, for a segment nobody else
    /// uses yet; else reads it), so its pages are present and mapped before the first message instead of faulting
    /// one by one under the first few megabytes of traffic (which made the first timed run several times slower).
    /// </summary>
    public static void Prefault(byte* segment, long bytes, bool write)
    {
        for (long offset = 0; offset < bytes; offset += 4096)
        {
            if (write) segment[offset] = 0;
            else _ = Volatile.Read(ref segment[offset]);
        }
    }

    /// <summary>The ring in <paramref name="segment"/> that carries bytes from rank <paramref name="sender"/>.</summary>
    public static SpscRing Ring(byte* segment, int sender, long ringCapacity, bool initialize = false) =>
        new(segment + ControlBytes + sender * SpscRing.Footprint(ringCapacity), ringCapacity, initialize);

    public static int Pid(byte* segment) => Volatile.Read(ref *(int*)(segment + PidOffset));

    /// <summary>Posts what the segment's owner waits on (<paramref name="peer"/> −1: no one) and its deadline.</summary>
    public static void PostWait(byte* segment, int peer, long deadline)
    {
        if (peer >= 0) Volatile.Write(ref *(long*)(segment + WaitDeadlineOffset), deadline);
        Volatile.Write(ref *(int*)(segment + WaitPeerOffset), peer + 1);
    }

    /// <summary>What the segment's owner waits on and until when, or null while it waits on no one.</summary>
    public static (int Peer, long Deadline)? Waiting(byte* segment)
    {
        int peer = Volatile.Read(ref *(int*)(segment + WaitPeerOffset)) - 1;
        return peer < 0 ? null : (peer, Volatile.Read(ref *(long*)(segment + WaitDeadlineOffset)));
    }

    public static void SetAbort(byte* segment, string reason)
    {
        var bytes = Encoding.UTF8.GetBytes(reason);
        int n = Math.Min(bytes.Length, ReasonBytes - 1);
        // Only the first abort writes its reason: later ones (echoes of it) must not overwrite the cause.
        if (Interlocked.CompareExchange(ref *(int*)(segment + AbortFlagOffset), 2, 0) != 0) return;
        bytes.AsSpan(0, n).CopyTo(new Span<byte>(segment + ReasonOffset, ReasonBytes));
        segment[ReasonOffset + n] = 0;
        Volatile.Write(ref *(int*)(segment + AbortFlagOffset), 1);
    }

    public static string? AbortReason(byte* segment)
    {
        int flag = Volatile.Read(ref *(int*)(segment + AbortFlagOffset));
        if (flag == 0) return null;
        if (flag == 2) return "a rank aborted the group";
        return Marshal.PtrToStringUTF8((nint)(segment + ReasonOffset)) ?? "a rank aborted the group";
    }
}

/// <summary>A link over two rings of a <see cref="RingMesh"/>: out in the peer's segment, in in ours.</summary>
internal sealed class RingLink(int peer, SpscRing outbound, SpscRing inbound, Func<string?> peerFailure) : ILink, IReducingLink
{
    public int Peer { get; } = peer;
    public int TryReceiveReduce(Span<byte> accumulator, int elementSize, SpscRing.ReduceInto reduce) =>
        inbound.TryReadReduce(accumulator, elementSize, reduce);
    public int TrySend(ReadOnlySpan<byte> data) => outbound.TryWrite(data);
    public int TryReceive(Span<byte> destination) => inbound.TryRead(destination);
    public string? PeerFailure() => peerFailure();
    public void Dispose() { }
}

/// <summary>Thread ranks in one process: one native allocation holds every rank's segment.</summary>
public sealed unsafe class ThreadTransport : ITransport, IWaitBoard
{
    private readonly Shared _shared;
    private readonly int _rank;
    private readonly RingLink?[] _links;

    /// <summary>Memory shared by the thread ranks of one group; freed when the last rank disposes.</summary>
    internal sealed class Shared(int size, long ringCapacity)
    {
        public readonly int Size = size;
        public readonly long RingCapacity = ringCapacity;
        public readonly byte* Memory = Allocate(size, ringCapacity);
        public int Alive = size;

        /// <summary>Ranks whose transport was disposed: a peer still waiting on one fails instead of waiting for the timeout.</summary>
        public readonly bool[] Departed = new bool[size];

        /// <summary>Each rank's device and progress event, for the same collectives (see <see cref="DevicePeers"/>).</summary>
        public readonly DeviceRank?[] DeviceRanks = new DeviceRank?[size];

        private static byte* Allocate(int size, long capacity)
        {
            long segment = RingMesh.SegmentBytes(size, capacity);
            var memory = (byte*)NativeMemory.AlignedAlloc((nuint)(segment * size), 4096);
            for (int r = 0; r < size; r++) RingMesh.Initialize(memory + r * segment, size, capacity, Environment.ProcessId);
            return memory;
        }

        public byte* Segment(int rank) => Memory + rank * RingMesh.SegmentBytes(Size, RingCapacity);

        private readonly System.Collections.Concurrent.ConcurrentDictionary<string, Lazy<Shared>> _splits = new();

        /// <summary>The memory of one sub-group of a split: the first member to ask allocates it, the others share it.</summary>
        public static Shared ForSplit(Shared parent, string key, int size) =>
            parent._splits.GetOrAdd(key, _ => new Lazy<Shared>(() => new Shared(size, parent.RingCapacity))).Value;
    }

    internal ThreadTransport(Shared shared, int rank)
    {
        _shared = shared;
        _rank = rank;
        _links = new RingLink?[shared.Size];
        for (int p = 0; p < shared.Size; p++)
        {
            if (p == rank) continue;
            int peer = p;
            // Checked only when the link makes no progress: bytes a departed rank left in the ring are still read.
            _links[p] = new RingLink(p, RingMesh.Ring(shared.Segment(p), rank, shared.RingCapacity),
                RingMesh.Ring(shared.Segment(rank), p, shared.RingCapacity),
                () => Volatile.Read(ref shared.Departed[peer]) ? $"rank {peer} left the group (its thread ended or disposed it)" : null);
        }
    }

    /// <inheritdoc/>
    public string Name => "threads";

    /// <inheritdoc/>
    public ILink Link(int peer) => _links[peer] ?? throw new ArgumentException($"rank {_rank} has no link to itself");

    /// <inheritdoc/>
    public void Abort(string reason)
    {
        for (int r = 0; r < _shared.Size; r++) RingMesh.SetAbort(_shared.Segment(r), reason);
    }

    /// <inheritdoc/>
    public string? AbortReason() => RingMesh.AbortReason(_shared.Segment(_rank));

    /// <inheritdoc/>
    public void Idle(int spins) => Backoff.Idle(spins);

    void IWaitBoard.Post(int peer, long deadline) => RingMesh.PostWait(_shared.Segment(_rank), peer, deadline);

    (int Peer, long Deadline)? IWaitBoard.Waiting(int rank) =>
        rank >= 0 && rank < _shared.Size && !Volatile.Read(ref _shared.Departed[rank]) ? RingMesh.Waiting(_shared.Segment(rank)) : null;

    /// <inheritdoc/>
    public void Dispose()
    {
        Volatile.Write(ref _shared.Departed[_rank], true);
        if (Interlocked.Decrement(ref _shared.Alive) == 0) NativeMemory.AlignedFree(_shared.Memory);
    }
}
