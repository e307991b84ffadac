using System.IO.MemoryMappedFiles;
using NativeParallel.Comm.Rendezvous;

namespace NativeParallel.Comm.Transports;

/// <summary>
/// Ranks that are processes on one host: each rank maps a file in /dev/shm holding its control block and its
/// inbound rings (<see cref="RingMesh"/>), and maps every peer's. Files are unlinked as soon as every rank has
/// mapped them, so nothing is left behind whatever happens later. A peer's death is seen through its pid.
/// </summary>
public sealed unsafe class ShmTransport : ITransport, IWaitBoard
{
    private readonly int _rank;
    private readonly int _size;
    private readonly long _ringBytes;
    private readonly MemoryMappedFile[] _files;
    private readonly MemoryMappedViewAccessor[] _views;
    private readonly byte*[] _segments;
    private readonly RingLink?[] _links;

    private ShmTransport(int rank, int size, long ringBytes)
    {
        _rank = rank;
        _size = size;
        _ringBytes = ringBytes;
        _files = new MemoryMappedFile[size];
        _views = new MemoryMappedViewAccessor[size];
        _segments = new byte*[size];
        _links = new RingLink?[size];
    }

    /// <summary>
    /// Creates this rank's segment, waits for every member's, maps them and links to every member peer.
    /// <paramref name="members"/>: the ranks of the group that share this host (this rank among them), when only
    /// some do; their links keep the group's rank numbers. Null: all <paramref name="size"/> ranks.
    /// </summary>
    public static ShmTransport Create(TcpStore store, string prefix, int rank, int size, long ringBytes, TimeSpan timeout, int[]? members = null)
    {
        members ??= Enumerable.Range(0, size).ToArray();
        string folder = Directory.Exists("/dev/shm") ? "/dev/shm" : Path.GetTempPath();
        string Path_(int r) => Path.Combine(folder, $"{prefix}-r{r}");
        var t = new ShmTransport(rank, size, ringBytes);
        // Segments hold one ring per member, placed by the member's index: a big job's ranks on other hosts cost nothing here.
        long bytes = RingMesh.SegmentBytes(members.Length, ringBytes);
        try
        {
            t.Map(rank, MemoryMappedFile.CreateFromFile(Path_(rank), FileMode.CreateNew, null, bytes, MemoryMappedFileAccess.ReadWrite));
            RingMesh.Prefault(t._segments[rank], bytes, write: true);
            RingMesh.Initialize(t._segments[rank], members.Length, ringBytes, Environment.ProcessId);
            store.Barrier($"{prefix}/created", members.Length, timeout);
            foreach (int p in members)
            {
                if (p == rank) continue;
                t.Map(p, MemoryMappedFile.CreateFromFile(Path_(p), FileMode.Open, null, 0, MemoryMappedFileAccess.ReadWrite));
                RingMesh.Prefault(t._segments[p], bytes, write: false);
            }
            store.Barrier($"{prefix}/mapped", members.Length, timeout);
        }
        finally
        {
            // Every rank has it mapped (or setup failed): the name is no longer needed.
            try { File.Delete(Path_(rank)); } catch (IOException) { }
        }
        int me = Array.IndexOf(members, rank);
        for (int i = 0; i < members.Length; i++)
        {
            int p = members[i];
            if (p == rank) continue;
            byte* peerSegment = t._segments[p];
            int pid = RingMesh.Pid(peerSegment);
            t._links[p] = new RingLink(p, RingMesh.Ring(peerSegment, me, ringBytes), RingMesh.Ring(t._segments[rank], i, ringBytes),
                () => ProcessLiveness.Failure(pid));
        }
        return t;
    }

    private void Map(int rank, MemoryMappedFile file)
    {
        _files[rank] = file;
        _views[rank] = file.CreateViewAccessor();
        byte* pointer = null;
        _views[rank].SafeMemoryMappedViewHandle.AcquirePointer(ref pointer);
        _segments[rank] = pointer + _views[rank].PointerOffset;
    }

    /// <inheritdoc/>
    public string Name => "shm";

    /// <inheritdoc/>
    public ILink Link(int peer) => _links[peer] ?? throw new ArgumentException($"rank {_rank} has no shared-memory link to rank {peer}");

    /// <summary>The link to <paramref name="peer"/> when it shares this host, else null.</summary>
    internal ILink? TryLink(int peer) => _links[peer];

    /// <inheritdoc/>
    public void Abort(string reason)
    {
        for (int r = 0; r < _size; r++) if (_segments[r] != null) RingMesh.SetAbort(_segments[r], reason);
    }

    /// <inheritdoc/>
    public string? AbortReason() => RingMesh.AbortReason(_segments[_rank]);

    /// <inheritdoc/>
    public void Idle(int spins) => Backoff.Idle(spins);

    void IWaitBoard.Post(int peer, long deadline) => RingMesh.PostWait(_segments[_rank], peer, deadline);

    // Only a live member's board: a dead process's last post would say it still waits.
    (int Peer, long Deadline)? IWaitBoard.Waiting(int rank) =>
        rank >= 0 && rank < _size && _links[rank] is { } link && link.PeerFailure() is null ? RingMesh.Waiting(_segments[rank]) : null;

    /// <inheritdoc/>
    public void Dispose()
    {
        for (int r = 0; r < _size; r++)
        {
            if (_views[r] is null) continue;
            _views[r].SafeMemoryMappedViewHandle.ReleasePointer();
            _views[r].Dispose();
            _files[r].Dispose();
        }
    }
}
