using NativeParallel.Comm.Rendezvous;
using NativeParallel.Comm.Transports;
using NativeParallel.Devices;
using NativeParallel.Diagnostics;
using NativeParallel.Tensors;

namespace NativeParallel.Comm;

/// <summary>
/// A group of ranks that run collectives together: all_reduce, all_gather, reduce_scatter, broadcast, reduce,
/// all_to_all, send/recv and barrier, on host-memory tensors of f32, bf16, f16, i32 or i64, in place or out of
/// place, synchronously or as ordered async operations. Every rank must call the same collectives in the same
/// order; the group checks that (kind, dtype, size, op, root) agree at each sequence number and fails every rank
/// that can see a disagreement, a dead peer or the timeout, never hanging.
/// </summary>
public sealed partial class ProcessGroup : IDisposable
{
    private readonly Engine _engine;
    private readonly ITransport _transport;
    private readonly OrderedQueue _queue;
    private (Collective Kind, long Sequence, string Message)? _failure;
    private long _sequence;
    private long _messages;
    private TcpStore? _store;
    private CudaIpcPeers? _ipc;
    private bool _ownsStore;
    private string? _storePrefix;
    private ThreadTransport.Shared? _threadShared;
    // Process ranks: each rank's host identity and the transport asked for (null: chosen per pair), for splits.
    private string[]? _hosts;
    private string? _requestedTransport;
    private int _splits;
    // Groups split from this one, so that aborting it reaches every group its rank takes part in.
    private readonly List<ProcessGroup> _children = [];
    private ProcessGroup? _parent;
    private volatile bool _disposed;
    private readonly (int Rank, long Sequence)? _faultAt = CommTunables.Fault;
    private readonly string _algorithm = CommTunables.Algorithm;
    private readonly long _oneShotBytes = CommTunables.OneShotBytes;

    internal ProcessGroup(ITransport transport, int rank, int size, string name, TimeSpan timeout)
    {
        if (size < 1 || rank < 0 || rank >= size) throw new ArgumentOutOfRangeException(nameof(rank), $"rank {rank} of {size}");
        _transport = transport;
        Rank = rank;
        Size = size;
        Name = name;
        Timeout = timeout;
        TraceRank = rank;
        _engine = new Engine(transport, rank, size, name, timeout);
        _queue = new OrderedQueue($"group '{name}' rank {rank}");
    }

    /// <summary>This rank's index, 0..Size−1.</summary>
    public int Rank { get; }

    /// <summary>Number of ranks.</summary>
    public int Size { get; }

    /// <summary>This rank's rank in the world its group was split from (the process of its events in a trace).</summary>
    internal int TraceRank { get; private init; }

    /// <summary>The group's name (in errors and logs).</summary>
    public string Name { get; }

    /// <summary>How long one collective may wait on its peers.</summary>
    public TimeSpan Timeout { get; }

    /// <summary>The transport's name: threads, shm, tcp, or shm+tcp (shared memory within each host, TCP between hosts).</summary>
    public string TransportName => _transport.Name;

    /// <summary>Bytes this rank has sent to its peers so far (what the communication columns of a run report).</summary>
    public long BytesSent => _engine.BytesSent;

    /// <summary>Collectives issued so far (the next one's sequence number); send and recv are counted apart.</summary>
    public long Sequence => Interlocked.Read(ref _sequence);

    /// <summary>
    /// Creates <paramref name="size"/> ranks as threads of this process, linked by in-memory rings: for tests and
    /// single-process hosts. Each returned group is used from its own thread.
    /// </summary>
    public static ProcessGroup[] CreateThreadGroup(int size, string name = "threads", TimeSpan? timeout = null, long ringBytes = 1 << 20)
    {
        var shared = new ThreadTransport.Shared(size, ringBytes);
        var limit = timeout ?? CommTunables.Timeout;
        return Enumerable.Range(0, size).Select(r => new ProcessGroup(new ThreadTransport(shared, r), r, size, name, limit) { _threadShared = shared }).ToArray();
    }

    /// <summary>
    /// Runs <paramref name="rank"/> once per rank of a new thread group of <paramref name="size"/>, each on its own
    /// thread, waits for all of them and disposes the group. A rank's exception surfaces here (in an AggregateException).
    /// </summary>
    public static void RunOnThreadRanks(int size, Action<ProcessGroup> rank, string name = "threads", TimeSpan? timeout = null)
    {
        var groups = CreateThreadGroup(size, name, timeout);
        try
        {
            Task.WaitAll(groups.Select(g => Task.Factory.StartNew(() =>
            {
                using var traced = Tracer.BindRank(g.Rank);
                try
                {
                    rank(g);
                }
                catch (Exception e) when (AbortPeers(g, e))
                {
                    // Never reached: the filter aborts and lets the exception go on.
                }
            }, TaskCreationOptions.LongRunning)).ToArray());
        }
        finally
        {
            foreach (var g in groups) g.Dispose();
        }
    }

    // The other ranks would wait for a failed one until the timeout: tell them at once, with its reason. This runs
    // as an exception filter, before the rank's own `using` scopes unwind: were its split groups disposed first, a
    // peer could fail on "rank R left the group" and abort the world with that, racing the real reason.
    private static bool AbortPeers(ProcessGroup group, Exception e)
    {
        group.Abort($"rank {group.Rank} failed: {e.Message.Split('\n')[0]}");
        return false;
    }

    /// <summary>
    /// Joins the job this process was launched into (torchrun, mpirun, Slurm or <c>nativeparallel launch</c>
    /// environment): rank 0 hosts the rendezvous store (<see cref="LaunchEnvironment"/> says where), the ranks join
    /// it, saying what they wait for while they wait (<see cref="RendezvousJoin"/>), exchange their hosts and
    /// addresses, and connect each pair over shared memory when both share a host, else TCP
    /// (<see cref="TransportChoice"/>; NATIVEPARALLEL_TRANSPORT or <paramref name="transport"/> forces one for
    /// every pair: shm, tcp). A process that no launcher started is a group of one.
    /// </summary>
    public static ProcessGroup FromEnvironment(string name = "world", string? transport = null)
    {
        var env = LaunchEnvironment.Detect();
        if (env is null || env.WorldSize == 1) return CreateThreadGroup(1, name, CommTunables.Timeout)[0];
        return Join(env, name, transport);
    }

    /// <summary>
    /// Joins the job that <paramref name="env"/> describes (rank, world size, the store's address and port), as
    /// <see cref="FromEnvironment"/> does for a launcher's job: for hosts that learn their coordinates some other
    /// way (the C API's npCommInitRank). Rank 0 hosts the store, so its address must be rank 0's host.
    /// </summary>
    public static ProcessGroup Join(LaunchEnvironment env, string name = "world", string? transport = null)
    {
        var timeout = CommTunables.Timeout;
        if (env.WorldSize == 1) return CreateThreadGroup(1, name, timeout)[0];
        CoreBinding.Apply(env);
        var (store, job, hosts) = RendezvousJoin.Join(env, timeout, CommTunables.RendezvousProgressInterval, Console.Error);
        try
        {
            string? requested = transport ?? CommTunables.Transport;
            string prefix = $"nativeparallel-{job}-{name}";
            var links = TransportChoice.Connect(store, prefix, env.Rank, hosts, requested, name, timeout);
            Log.Info($"{name}: rank {env.Rank} of {env.WorldSize} ({env.Launcher}) on host {hosts[env.Rank]} connected over {links.Name}");
            return new ProcessGroup(links, env.Rank, env.WorldSize, name, timeout)
                { _store = store, _ownsStore = true, _storePrefix = prefix, _hosts = hosts, _requestedTransport = requested };
        }
        catch
        {
            store.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Splits the group, MPI_Comm_split style: every rank calls it; ranks with the same <paramref name="color"/> form a
    /// new group, ranked by (<paramref name="key"/>, parent rank), with its own links over the same transport. The
    /// new group is named <paramref name="name"/> (default: parent name, a dot, the color).
    /// </summary>
    public ProcessGroup Split(int color, int key, string? name = null)
    {
        if (color < 0) throw new ArgumentOutOfRangeException(nameof(color), "colors are non-negative");
        int split = _splits++;
        var cpu = CpuDevice.Instance;
        using var mine = Tensor.FromLongs(cpu, [color, key], 2);
        using var all = Tensor.Empty(cpu, DType.I64, 2 * Size);
        AllGather(mine, all);
        var pairs = all.ToLongs();
        var members = Enumerable.Range(0, Size).Where(r => pairs[2 * r] == color).OrderBy(r => pairs[2 * r + 1]).ThenBy(r => r).ToArray();
        int rank = Array.IndexOf(members, Rank), size = members.Length;
        string child = name ?? $"{Name}.{color}";
        string[]? childHosts = _hosts is null ? null : members.Select(m => _hosts[m]).ToArray();
        ITransport transport;
        ThreadTransport.Shared? threadShared = null;
        if (_threadShared is not null)
        {
            // The sub-group's own shared memory: its ranks reach each other's device buffers (device-direct
            // collectives in tensor-parallel groups) and can split again.
            threadShared = ThreadTransport.Shared.ForSplit(_threadShared, $"{split}/{color}", size);
            transport = new ThreadTransport(threadShared, rank);
        }
        else if (_store is not null)
        {
            string prefix = $"{_storePrefix}-s{split}c{color}";
            // Chosen again for the members alone: a sub-group inside one host is all shared memory.
            transport = TransportChoice.Connect(_store, prefix, rank, childHosts!, _requestedTransport, child, Timeout);
        }
        else throw new InvalidOperationException($"group '{Name}' cannot be split: it has no rendezvous");
        Log.Info($"{Name}: rank {Rank} split into '{child}' as rank {rank} of {size} (members {string.Join(',', members)}) over {transport.Name}");
        var group = new ProcessGroup(transport, rank, size, child, Timeout)
            { _store = _store, _storePrefix = $"{_storePrefix}-s{split}c{color}", TraceRank = TraceRank, _parent = this, _threadShared = threadShared,
              _hosts = childHosts, _requestedTransport = _requestedTransport };
        lock (_children) _children.Add(group);
        return group;
    }

    /// <summary>
    /// Fails every pending and later call of this group, and of every group split from it, on every rank at once:
    /// what a rank does when it cannot go on, so that its peers stop waiting for it (each gets a
    /// <see cref="CollectiveException"/> carrying <paramref name="reason"/> instead of waiting for the timeout).
    /// </summary>
    public void Abort(string reason)
    {
        if (_disposed) return;
        _transport.Abort(reason);
        ProcessGroup[] children;
        lock (_children) children = [.. _children];
        foreach (var c in children) c.Abort(reason);
    }

    /// <summary>Releases the transport (other ranks' pending collectives with this rank fail once it is gone).</summary>
    public void Dispose()
    {
        if (_parent is { } parent) lock (parent._children) parent._children.Remove(this);
        // Queued calls run first (each bounded by the timeout; after a failure the rest are refused at once).
        _queue.Dispose();
        if (_store is not null && _ownsStore)
        {
            // Rank 0 hosts the store: it must outlive every rank's last use of it. A short wait: dead peers never come.
            try { _store.Barrier($"{Name}/shutdown", Size, TimeSpan.FromSeconds(10)); }
            catch (Exception e) when (e is TimeoutException or IOException) { }
        }
        _devicePeers?.Dispose();
        _ipc?.Dispose();
        _disposed = true;
        _transport.Dispose();
        if (_ownsStore) _store?.Dispose();
    }
}
