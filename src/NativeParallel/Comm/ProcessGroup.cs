using System.Runtime.InteropServices;
using NativeParallel.Comm.Algorithms;
using NativeParallel.Comm.Rendezvous;
using NativeParallel.Comm.Transports;
using NativeParallel.Devices;
using NativeParallel.Diagnostics;
using NativeParallel.Kernels;
using NativeParallel.Tensors;

namespace NativeParallel.Comm;

/// <summary>
/// A group of ranks that run collectives together: all_reduce, all_gather, reduce_scatter, broadcast, reduce,
/// all_to_all, send/recv and barrier, on host-memory tensors of f32, bf16, f16, i32 or i64, in place or out of
/// place, synchronously or as ordered async operations. Every rank must call the same collectives in the same
/// order; the group checks that (kind, dtype, size, op, root) agree at each sequence number and fails every rank
/// that can see a disagreement, a dead peer or the timeout, never hanging.
/// </summary>
public sealed class ProcessGroup : IDisposable
{
    private readonly Engine _engine;
    private readonly ITransport _transport;
    private readonly object _orderGate = new();
    private Task _tail = Task.CompletedTask;
    private long _sequence;
    private long _messages;
    private TcpStore? _store;
    private CudaIpcPeers? _ipc;
    private bool _ownsStore;
    private string? _storePrefix;
    private ThreadTransport.Shared? _threadShared;
    private int _splits;
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
        _engine = new Engine(transport, rank, size, name, timeout);
    }

    /// <summary>This rank's index, 0..Size−1.</summary>
    public int Rank { get; }

    /// <summary>Number of ranks.</summary>
    public int Size { get; }

    /// <summary>The group's name (in errors and logs).</summary>
    public string Name { get; }

    /// <summary>How long one collective may wait on its peers.</summary>
    public TimeSpan Timeout { get; }

    /// <summary>The transport's name: threads, shm or tcp.</summary>
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
    /// Joins the job this process was launched into (torchrun, mpirun, Slurm or <c>nativeparallel launch</c>
    /// environment): rank 0 hosts the rendezvous store at MASTER_ADDR:MASTER_PORT, ranks exchange their hosts and
    /// addresses, and connect over shared memory when they all share a host, else TCP (NATIVEPARALLEL_TRANSPORT
    /// or <paramref name="transport"/> overrides: shm, tcp). A process that no launcher started is a group of one.
    /// </summary>
    public static ProcessGroup FromEnvironment(string name = "world", string? transport = null)
    {
        var env = LaunchEnvironment.Detect();
        var timeout = CommTunables.Timeout;
        if (env is null || env.WorldSize == 1) return CreateThreadGroup(1, name, timeout)[0];
        var store = TcpStore.Connect(env.MasterAddress, env.MasterPort, host: env.Rank == 0, timeout);
        try
        {
            if (env.Rank == 0) store.Set("job", Guid.NewGuid().ToString("N")[..12]);
            string job = store.Get("job", timeout);
            store.Set($"{job}/host/{env.Rank}", Environment.MachineName);
            bool oneHost = Enumerable.Range(0, env.WorldSize).All(r => store.Get($"{job}/host/{r}", timeout) == Environment.MachineName);
            string chosen = (transport ?? CommTunables.Transport ?? (oneHost ? "shm" : "tcp")).ToLowerInvariant();
            string prefix = $"nativeparallel-{job}-{name}";
            ITransport links = chosen switch
            {
                "shm" when !oneHost => throw new InvalidOperationException($"NATIVEPARALLEL_TRANSPORT=shm but the ranks of '{name}' span several hosts; use tcp"),
                "shm" => ShmTransport.Create(store, prefix, env.Rank, env.WorldSize, CommTunables.ShmRingBytes, timeout),
                "tcp" => TcpTransport.Create(store, prefix, env.Rank, env.WorldSize, timeout),
                _ => throw new ArgumentException($"unknown transport '{chosen}': expected shm or tcp"),
            };
            Log.Info($"{name}: rank {env.Rank} of {env.WorldSize} ({env.Launcher}) connected over {chosen}");
            return new ProcessGroup(links, env.Rank, env.WorldSize, name, timeout) { _store = store, _ownsStore = true, _storePrefix = prefix };
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
        ITransport transport;
        if (_threadShared is not null)
        {
            var shared = ThreadTransport.Shared.ForSplit(_threadShared, $"{split}/{color}", size);
            transport = new ThreadTransport(shared, rank);
        }
        else if (_store is not null)
        {
            string prefix = $"{_storePrefix}-s{split}c{color}";
            transport = _transport.Name == "tcp"
                ? TcpTransport.Create(_store, prefix, rank, size, Timeout)
                : ShmTransport.Create(_store, prefix, rank, size, CommTunables.ShmRingBytes, Timeout);
        }
        else throw new InvalidOperationException($"group '{Name}' cannot be split: it has no rendezvous");
        Log.Info($"{Name}: rank {Rank} split into '{child}' as rank {rank} of {size} (members {string.Join(',', members)})");
        return new ProcessGroup(transport, rank, size, child, Timeout) { _store = _store, _storePrefix = $"{_storePrefix}-s{split}c{color}" };
    }

    // ---- all_reduce ------------------------------------------------------------------------------------------

    /// <summary>In-place all-reduce: every rank ends with op over all ranks' <paramref name="tensor"/>.</summary>
    public void AllReduce(Tensor tensor, ReduceOp op = ReduceOp.Sum) => AllReduce(tensor, tensor, op);

    /// <summary>Out-of-place all-reduce (<paramref name="output"/> may be <paramref name="input"/>).</summary>
    public void AllReduce(Tensor input, Tensor output, ReduceOp op = ReduceOp.Sum)
    {
        if (DeviceDirectAllReduce(input, output, op)) return;
        if (Staged([input], [output], (i, o) => AllReduce(i[0], o[0], op))) return;
        Same(Collective.AllReduce, input, output);
        bool oneShot = Size > 1 && _algorithm switch
        {
            "ring" => false,
            "oneshot" => true,
            _ => input.Bytes <= _oneShotBytes,
        };
        Run(Collective.AllReduce, input.DType, op, input.Count, -1, handshake: !oneShot, algorithm: oneShot ? "oneshot" : "ring", body: descriptor =>
        {
            var buffer = Bytes(output);
            // One-shot messages carry their own descriptor: the agreement check costs no extra hop.
            if (oneShot)
            {
                if (!ReferenceEquals(input, output)) Bytes(input).CopyTo(buffer);
                OneShot.AllReduce(_engine, descriptor, (theirs, peer) => Disagreement(theirs, descriptor, peer), buffer, input.DType, op);
            }
            else Ring.AllReduce(_engine, Bytes(input), buffer, input.Count, input.DType, op);
        });
    }

    /// <summary>All-reduce as an ordered async operation; the task completes when this rank's part is done.</summary>
    public Task AllReduceAsync(Tensor input, Tensor output, ReduceOp op = ReduceOp.Sum) => Async(() => AllReduce(input, output, op));

    // ---- all_gather, reduce_scatter --------------------------------------------------------------------------

    /// <summary><paramref name="output"/> (Size × input.Count elements) receives every rank's input, in rank order.</summary>
    public void AllGather(Tensor input, Tensor output)
    {
        if (Staged([input], [output], (i, o) => AllGather(i[0], o[0]))) return;
        Blocks(Collective.AllGather, input, output, output.Count == input.Count * Size, "output must hold Size × input elements");
        Run(Collective.AllGather, input.DType, ReduceOp.Sum, input.Count, -1, () =>
        {
            var buffer = Bytes(output);
            var chunks = new Chunks(output.Count, Size, input.DType.SizeOf());
            Bytes(input).CopyTo(chunks.Of(buffer, Rank));
            Ring.AllGather(_engine, buffer, chunks);
        });
    }

    /// <summary>All-gather as an ordered async operation.</summary>
    public Task AllGatherAsync(Tensor input, Tensor output) => Async(() => AllGather(input, output));

    /// <summary>Block r of op over all ranks' <paramref name="input"/> (Size × output.Count elements) lands in rank r's <paramref name="output"/>.</summary>
    public void ReduceScatter(Tensor input, Tensor output, ReduceOp op = ReduceOp.Sum)
    {
        if (Staged([input], [output], (i, o) => ReduceScatter(i[0], o[0], op))) return;
        Blocks(Collective.ReduceScatter, input, output, input.Count == output.Count * Size, "input must hold Size × output elements");
        Run(Collective.ReduceScatter, input.DType, op, output.Count, -1, () =>
        {
            var chunks = new Chunks(input.Count, Size, input.DType.SizeOf());
            byte[] staging = Engine.Rent((int)input.Bytes);
            try
            {
                var buffer = staging.AsSpan(0, (int)input.Bytes);
                Bytes(input).CopyTo(buffer);
                Ring.ReduceScatter(_engine, buffer, chunks, input.DType, op);
                var mine = chunks.Of(buffer, Rank);
                HostReduce.Finish(op, input.DType, mine, Size);
                mine.CopyTo(Bytes(output));
            }
            finally
            {
                Engine.Return(staging);
            }
        });
    }

    // ---- broadcast, reduce -----------------------------------------------------------------------------------

    /// <summary>Every rank's <paramref name="tensor"/> becomes the root's.</summary>
    public void Broadcast(Tensor tensor, int root)
    {
        if (Staged([tensor], [tensor], (i, o) => Broadcast(o[0], root))) return;
        CheckRoot(root);
        Same(Collective.Broadcast, tensor, tensor);
        Run(Collective.Broadcast, tensor.DType, ReduceOp.Sum, tensor.Count, root, () => Ring.Broadcast(_engine, Bytes(tensor), root));
    }

    /// <summary>Out-of-place broadcast: every rank's <paramref name="output"/> becomes the root's <paramref name="input"/>.</summary>
    public void Broadcast(Tensor input, Tensor output, int root)
    {
        if (Staged([input], [output], (i, o) => Broadcast(i[0], o[0], root))) return;
        CheckRoot(root);
        Same(Collective.Broadcast, input, output);
        Run(Collective.Broadcast, output.DType, ReduceOp.Sum, output.Count, root, () =>
        {
            if (Rank == root && !ReferenceEquals(input, output)) Bytes(input).CopyTo(Bytes(output));
            Ring.Broadcast(_engine, Bytes(output), root);
        });
    }

    /// <summary>The root's <paramref name="output"/> receives op over all ranks' <paramref name="input"/>; other ranks' output is left as it was.</summary>
    public void Reduce(Tensor input, Tensor output, int root, ReduceOp op = ReduceOp.Sum)
    {
        if (Staged([input], [output], (i, o) => Reduce(i[0], o[0], root, op))) return;
        CheckRoot(root);
        Same(Collective.Reduce, input, output);
        Run(Collective.Reduce, input.DType, op, input.Count, root, () =>
        {
            byte[] staging = Engine.Rent((int)input.Bytes);
            try
            {
                var buffer = staging.AsSpan(0, (int)input.Bytes);
                Bytes(input).CopyTo(buffer);
                Ring.Reduce(_engine, buffer, input.Count, input.DType, op, root);
                if (Rank == root) buffer.CopyTo(Bytes(output));
            }
            finally
            {
                Engine.Return(staging);
            }
        });
    }

    // ---- all_to_all ------------------------------------------------------------------------------------------

    /// <summary>Equal splits: block p of <paramref name="input"/> goes to rank p, block p of <paramref name="output"/> comes from rank p.</summary>
    public void AllToAll(Tensor input, Tensor output)
    {
        Blocks(Collective.AllToAll, input, output, input.Count == output.Count && input.Count % Size == 0,
            "input and output must hold the same number of elements, a multiple of Size");
        long block = input.Count / Size;
        var counts = Enumerable.Repeat(block, Size).ToArray();
        AllToAll(input, counts, output, counts);
    }

    /// <summary>Variable splits (in elements): sendCounts[p] elements to rank p, receiveCounts[p] from rank p, packed in rank order.</summary>
    public void AllToAll(Tensor input, long[] sendCounts, Tensor output, long[] receiveCounts)
    {
        if (Staged([input], [output], (i, o) => AllToAll(i[0], sendCounts, o[0], receiveCounts))) return;
        Blocks(Collective.AllToAll, input, output, sendCounts.Length == Size && receiveCounts.Length == Size &&
            sendCounts.Sum() <= input.Count && receiveCounts.Sum() <= output.Count && sendCounts.All(c => c >= 0) && receiveCounts.All(c => c >= 0),
            "sendCounts and receiveCounts need one non-negative count per rank, within the tensors");
        int es = input.DType.SizeOf();
        // Sizes differ per rank legitimately, so only kind and dtype are checked (count −1).
        Run(Collective.AllToAll, input.DType, ReduceOp.Sum, -1, -1, () =>
        {
            long[] Offsets(long[] counts)
            {
                var offsets = new long[counts.Length];
                for (int p = 1; p < counts.Length; p++) offsets[p] = offsets[p - 1] + counts[p - 1] * es;
                return offsets;
            }
            Pairwise.AllToAll(_engine, Bytes(input), Offsets(sendCounts), sendCounts.Select(c => c * es).ToArray(),
                Bytes(output), Offsets(receiveCounts), receiveCounts.Select(c => c * es).ToArray());
        });
    }

    // ---- send / recv, barrier --------------------------------------------------------------------------------

    /// <summary>Sends <paramref name="tensor"/> to <paramref name="peer"/>; the peer's matching Recv must use the same tag and size.</summary>
    public void Send(Tensor tensor, int peer, int tag = 0)
    {
        if (Staged([tensor], [], (i, o) => Send(i[0], peer, tag))) return;
        CheckPeer(peer);
        var header = new MessageHeader(Magic, tag, (int)tensor.DType, tensor.Bytes);
        RunPointToPoint(Collective.Send, peer, () =>
        {
            _engine.SendReceive(peer, MemoryMarshal.AsBytes(new ReadOnlySpan<MessageHeader>(in header)), -1, default);
            _engine.SendReceive(peer, Bytes(tensor), -1, default);
        });
    }

    /// <summary>Receives into <paramref name="tensor"/> from <paramref name="peer"/>, checking tag, dtype and size against the sender's.</summary>
    public void Recv(Tensor tensor, int peer, int tag = 0)
    {
        if (Staged([], [tensor], (i, o) => Recv(o[0], peer, tag))) return;
        CheckPeer(peer);
        RunPointToPoint(Collective.Recv, peer, () =>
        {
            MessageHeader header = default;
            _engine.SendReceive(-1, default, peer, MemoryMarshal.AsBytes(new Span<MessageHeader>(ref header)));
            CheckHeader(header, peer, tag, tensor);
            _engine.SendReceive(-1, default, peer, Bytes(tensor));
        });
    }

    /// <summary>
    /// Sends <paramref name="send"/> to <paramref name="sendPeer"/> while receiving <paramref name="receive"/> from
    /// <paramref name="receivePeer"/>, at once (a ring shift or a pipeline hop in both directions never deadlocks).
    /// </summary>
    public void SendRecv(Tensor send, int sendPeer, Tensor receive, int receivePeer, int tag = 0)
    {
        if (Staged([send], [receive], (i, o) => SendRecv(i[0], sendPeer, o[0], receivePeer, tag))) return;
        CheckPeer(sendPeer);
        CheckPeer(receivePeer);
        var header = new MessageHeader(Magic, tag, (int)send.DType, send.Bytes);
        RunPointToPoint(Collective.Send, sendPeer, () =>
        {
            MessageHeader incoming = default;
            _engine.SendReceive(sendPeer, MemoryMarshal.AsBytes(new ReadOnlySpan<MessageHeader>(in header)), receivePeer,
                MemoryMarshal.AsBytes(new Span<MessageHeader>(ref incoming)));
            CheckHeader(incoming, receivePeer, tag, receive);
            _engine.SendReceive(sendPeer, Bytes(send), receivePeer, Bytes(receive));
        });
    }

    /// <summary>Returns once every rank has called it.</summary>
    public void Barrier()
    {
        int token = 1;
        Run(Collective.Barrier, DType.I32, ReduceOp.Sum, 1, -1, () =>
        {
            var bytes = MemoryMarshal.AsBytes(new Span<int>(ref token));
            Ring.AllReduce(_engine, bytes, bytes, 1, DType.I32, ReduceOp.Sum);
        });
    }

    /// <summary>Releases the transport (other ranks' pending collectives with this rank fail once it is gone).</summary>
    public void Dispose()
    {
        try { _tail.Wait(); } catch (AggregateException) { }
        if (_store is not null && _ownsStore)
        {
            // Rank 0 hosts the store: it must outlive every rank's last use of it. A short wait: dead peers never come.
            try { _store.Barrier($"{Name}/shutdown", Size, TimeSpan.FromSeconds(10)); }
            catch (Exception e) when (e is TimeoutException or IOException) { }
        }
        _ipc?.Dispose();
        _transport.Dispose();
        if (_ownsStore) _store?.Dispose();
    }

    // ---- machinery -------------------------------------------------------------------------------------------

    /// <summary>
    /// Ranks whose tensors live on one kernel device reduce without the host. Thread ranks (a GPU they share, or
    /// the emulated device) publish their buffers' addresses; process ranks on one GPU exchange CUDA IPC exports.
    /// Then every rank reduces its own chunk straight out of all ranks' inputs with the reduce kernel (inputs in
    /// rank order: the same bits everywhere) and copies the other chunks from their owners' outputs, with a
    /// barrier between the phases.
    /// </summary>
    private bool DeviceDirectAllReduce(Tensor input, Tensor output, ReduceOp op)
    {
        if (Size == 1 || Size > KernelLimits.MaxReduceInputs || !ReferenceEquals(input.Device, output.Device)) return false;
        bool threads = _threadShared is not null && input.Device is CudaDevice or EmuDevice;
        bool processes = _store is not null && input.Device is CudaDevice;
        if (!threads && !processes) return false;
        Same(Collective.AllReduce, input, output);
        input.RequireContiguous("a collective");
        output.RequireContiguous("a collective");
        var device = input.Device;
        Run(Collective.AllReduce, input.DType, op, input.Count, -1, handshake: true, algorithm: "direct", body: _ =>
        {
            var (inputs, outputs) = threads ? SharedAddresses(input, output) : IpcAddresses((CudaDevice)device, input, output);
            var chunks = new Algorithms.Chunks(input.Count, Size, input.DType.SizeOf());
            int es = input.DType.SizeOf();
            Tensor Piece(ulong basePointer, int chunk) =>
                Tensor.Wrap(device, basePointer + (ulong)(chunks.Start(chunk) * es), input.DType, (int)chunks.Length(chunk));
            var sources = Enumerable.Range(0, Size).Select(p => Piece(inputs[p], Rank)).ToArray();
            if (chunks.Length(Rank) > 0) device.Kernels.Reduce(op, sources, Piece(output.Pointer, Rank));
            device.Synchronize();
            HostBarrier();
            for (int p = 0; p < Size; p++)
            {
                if (p == Rank || chunks.Length(p) == 0) continue;
                device.CopyDeviceToDevice(outputs[p] + (ulong)(chunks.Start(p) * es), output.Pointer + (ulong)(chunks.Start(p) * es), chunks.Length(p) * es);
            }
            device.Synchronize();
            HostBarrier(); // nobody reuses its buffers while a peer may still read them
        });
        return true;
    }

    // Thread ranks: addresses are valid in every rank; publish them, then meet.
    private (ulong[] Inputs, ulong[] Outputs) SharedAddresses(Tensor input, Tensor output)
    {
        var pointers = _threadShared!.DevicePointers;
        Volatile.Write(ref pointers[2 * Rank], input.Pointer);
        Volatile.Write(ref pointers[2 * Rank + 1], output.Pointer);
        HostBarrier();
        return (Enumerable.Range(0, Size).Select(p => Volatile.Read(ref pointers[2 * p])).ToArray(),
                Enumerable.Range(0, Size).Select(p => Volatile.Read(ref pointers[2 * p + 1])).ToArray());
    }

    // Process ranks on one GPU: all-gather the CUDA IPC exports of both buffers, open the peers' (cached).
    private (ulong[] Inputs, ulong[] Outputs) IpcAddresses(CudaDevice device, Tensor input, Tensor output)
    {
        _ipc ??= new CudaIpcPeers(device);
        int slot = 2 * CudaIpcPeers.ExportBytes;
        var all = new byte[slot * Size];
        var mine = all.AsSpan(Rank * slot, slot);
        _ipc.Export(input.Pointer, mine[..CudaIpcPeers.ExportBytes]);
        _ipc.Export(output.Pointer, mine[CudaIpcPeers.ExportBytes..]);
        Ring.AllGather(_engine, all, new Algorithms.Chunks(all.Length, Size, 1));
        var inputs = new ulong[Size];
        var outputs = new ulong[Size];
        for (int p = 0; p < Size; p++)
        {
            if (p == Rank)
            {
                (inputs[p], outputs[p]) = (input.Pointer, output.Pointer);
                continue;
            }
            var theirs = all.AsSpan(p * slot, slot);
            inputs[p] = _ipc.Open(theirs[..CudaIpcPeers.ExportBytes]);
            outputs[p] = _ipc.Open(theirs[CudaIpcPeers.ExportBytes..]);
        }
        return (inputs, outputs);
    }

    // A barrier inside a collective: one all-reduce of a token through the links, no sequence number of its own.
    private void HostBarrier()
    {
        int token = 1;
        var bytes = MemoryMarshal.AsBytes(new Span<int>(ref token));
        Ring.AllReduce(_engine, bytes, bytes, 1, DType.I32, ReduceOp.Sum);
    }

    /// <summary>
    /// Collectives move host memory. Tensors on another device (a GPU) are staged: inputs copied to host tensors,
    /// the collective run on those, outputs copied back. Correct on any device; the CUDA IPC transport will make
    /// GPU tensors travel directly instead.
    /// </summary>
    private bool Staged(Tensor[] inputs, Tensor[] outputs, Action<Tensor[], Tensor[]> run)
    {
        if (inputs.Concat(outputs).All(t => t.Device is HostMemoryDevice)) return false;
        var map = new Dictionary<Tensor, Tensor>(ReferenceEqualityComparer.Instance);
        Tensor Host(Tensor t)
        {
            if (map.TryGetValue(t, out var h)) return h;
            h = t.Device is HostMemoryDevice ? t : Tensor.Empty(CpuDevice.Instance, t.DType, t.Shape);
            map[t] = h;
            return h;
        }
        try
        {
            var hostInputs = inputs.Select(t =>
            {
                var h = Host(t);
                if (!ReferenceEquals(h, t)) h.CopyFromHost(t.ToBytes());
                return h;
            }).ToArray();
            var hostOutputs = outputs.Select(t =>
            {
                var h = Host(t);
                // Outputs some ranks leave alone (reduce off the root) must come back unchanged.
                if (!ReferenceEquals(h, t) && !inputs.Contains(t, ReferenceEqualityComparer.Instance)) h.CopyFromHost(t.ToBytes());
                return h;
            }).ToArray();
            run(hostInputs, hostOutputs);
            foreach (var t in outputs)
                if (!ReferenceEquals(map[t], t) && t.Bytes > 0) t.Device.CopyHostToDevice(map[t].ToBytes(), t.Pointer);
        }
        finally
        {
            foreach (var (device, host) in map) if (!ReferenceEquals(device, host)) host.Dispose();
        }
        return true;
    }

    private const int Magic = 0x4E50_4331; // "NPC1"

    [StructLayout(LayoutKind.Sequential)]
    private readonly record struct MessageHeader(int Magic, int Tag, int DType, long Bytes);

    [StructLayout(LayoutKind.Sequential)]
    private readonly record struct Descriptor(int Magic, int Kind, int DType, int Op, long Sequence, long Count, int Root, int Algorithm);

    private static readonly string[] Algorithms = ["ring", "oneshot", "direct"];

    private void CheckHeader(MessageHeader header, int peer, int tag, Tensor tensor)
    {
        if (header.Magic == Magic && header.Tag == tag && header.DType == (int)tensor.DType && header.Bytes == tensor.Bytes) return;
        throw _engine.Fail($"rank {peer} sent tag {header.Tag}, {((DType)header.DType).Name()} x {header.Bytes} bytes; this rank expected " +
                           $"tag {tag}, {tensor.DType.Name()} x {tensor.Bytes} bytes", peer, abortOthers: true);
    }

    private Task Async(Action operation)
    {
        lock (_orderGate)
        {
            var previous = _tail;
            _tail = Task.Factory.StartNew(() =>
            {
                previous.GetAwaiter().GetResult();
                operation();
            }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
            return _tail;
        }
    }

    private void Run(Collective kind, DType dtype, ReduceOp op, long count, int root, Action body) =>
        Run(kind, dtype, op, count, root, handshake: true, algorithm: "ring", body: _ => body());

    private void Run(Collective kind, DType dtype, ReduceOp op, long count, int root, bool handshake, string algorithm, Action<Descriptor> body)
    {
        long sequence = Interlocked.Increment(ref _sequence) - 1;
        _engine.Current = (kind, sequence);
        if (_store is not null && _faultAt is { } fault && fault.Rank == Rank && fault.Sequence == sequence)
        {
            Console.Error.WriteLine($"NATIVEPARALLEL_FAULT: rank {Rank} exits at {kind.Name()} #{sequence}");
            Environment.Exit(17);
        }
        if (Log.InfoEnabled)
            Log.Info($"{Name} rank {Rank}/{Size}: {kind.Name()} #{sequence} {dtype.Name()} x {count} op {op.ToString().ToLowerInvariant()} " +
                     $"root {root} algo {algorithm} transport {_transport.Name}");
        var descriptor = new Descriptor(Magic, (int)kind, (int)dtype, (int)op, sequence, count, root, Array.IndexOf(Algorithms, algorithm));
        if (Size > 1 && handshake) Handshake(descriptor);
        body(descriptor);
    }

    // Point-to-point operations are numbered apart from collectives: each rank of a pipeline sends and receives
    // a different number of messages, but all ranks must agree on the collectives' sequence numbers.
    private void RunPointToPoint(Collective kind, int peer, Action body)
    {
        long sequence = Interlocked.Increment(ref _messages) - 1;
        _engine.Current = (kind, sequence);
        body();
    }

    // Each rank sends its descriptor right and checks the one from its left: any disagreement in the ring is
    // seen by some rank, which aborts the group so the others fail too.
    private void Handshake(Descriptor mine)
    {
        int right = (Rank + 1) % Size, left = (Rank + Size - 1) % Size;
        Descriptor theirs = default;
        _engine.SendReceive(right, MemoryMarshal.AsBytes(new ReadOnlySpan<Descriptor>(in mine)), left,
            MemoryMarshal.AsBytes(new Span<Descriptor>(ref theirs)));
        if (Disagreement(theirs, mine, left) is { } why) throw _engine.Fail(why, left, abortOthers: true);
    }

    private static string? Disagreement(Descriptor theirs, Descriptor mine, int peer)
    {
        bool countsAgree = mine.Count < 0 || theirs.Count < 0 || mine.Count == theirs.Count;
        if (theirs.Magic == Magic && theirs.Kind == mine.Kind && theirs.DType == mine.DType && theirs.Op == mine.Op &&
            theirs.Sequence == mine.Sequence && countsAgree && theirs.Root == mine.Root && theirs.Algorithm == mine.Algorithm) return null;
        return $"ranks disagree: rank {peer} called {Describe(theirs)}, this rank called {Describe(mine)}";
    }

    private static string Describe(Descriptor d) => d.Magic != Magic
        ? "something that is not a collective (corrupt or out-of-order data)"
        : $"{((Collective)d.Kind).Name()} #{d.Sequence} ({((DType)d.DType).Name()} x {(d.Count < 0 ? "variable" : d.Count.ToString())}, " +
          $"op {((ReduceOp)d.Op).ToString().ToLowerInvariant()}{(d.Root >= 0 ? $", root {d.Root}" : "")}, " +
          $"algorithm {(d.Algorithm >= 0 && d.Algorithm < Algorithms.Length ? Algorithms[d.Algorithm] : "?")})";

    private static unsafe Span<byte> Bytes(Tensor t)
    {
        if (t.Device is not HostMemoryDevice)
            throw new InvalidOperationException($"internal: {t} on {t.Device.Name} reached a collective without staging");
        t.RequireContiguous("a collective");
        return new Span<byte>((void*)t.Pointer, checked((int)t.Bytes));
    }

    private static void Same(Collective kind, Tensor input, Tensor output) => Blocks(kind, input, output,
        input.Count == output.Count, "input and output must hold the same number of elements");

    private static void Blocks(Collective kind, Tensor input, Tensor output, bool shapesAgree, string rule)
    {
        if (input.DType != output.DType) throw new ArgumentException($"{kind.Name()}: input {input} and output {output} have different dtypes");
        if (!shapesAgree) throw new ArgumentException($"{kind.Name()}: {rule}; got input {input}, output {output}");
    }

    private void CheckRoot(int root)
    {
        if (root < 0 || root >= Size) throw new ArgumentOutOfRangeException(nameof(root), $"root {root} is not a rank of a group of {Size}");
    }

    private void CheckPeer(int peer)
    {
        if (peer < 0 || peer >= Size || peer == Rank) throw new ArgumentOutOfRangeException(nameof(peer), $"peer {peer} is not another rank of a group of {Size}");
    }
}
