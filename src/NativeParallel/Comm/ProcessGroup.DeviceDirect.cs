using System.Runtime.InteropServices;
using NativeParallel.Comm.Algorithms;
using NativeParallel.Comm.Transports;
using NativeParallel.Devices;
using NativeParallel.Kernels;
using NativeParallel.Tensors;

namespace NativeParallel.Comm;

// Collectives on a kernel device the ranks share: thread ranks by address, process ranks on one GPU through CUDA IPC.
public sealed partial class ProcessGroup
{
    private DevicePeers? _devicePeers;
    private long _deviceDirectCalls;
    private long _stagedBytes;

    /// <summary>
    /// Collectives this rank has run device-direct: on device tensors, reading its peers' device buffers, with no
    /// copy through host memory (all_reduce, all_gather, reduce_scatter, broadcast, all_to_all).
    /// </summary>
    public long DeviceDirectCalls => Interlocked.Read(ref _deviceDirectCalls);

    /// <summary>
    /// Bytes this rank has copied between a device and host memory to run collectives on device tensors that
    /// its peers cannot address (a GPU without a shared address or CUDA IPC, point-to-point calls, reduce).
    /// </summary>
    public long StagedBytes => Interlocked.Read(ref _stagedBytes);

    /// <summary>CUDA IPC driver calls this rank has made (handles exported, peers' handles opened); null when it has used none.</summary>
    internal (long Exports, long Opens)? IpcHandleCalls => _ipc is { } ipc ? (ipc.ExportCalls, ipc.OpenCalls) : null;

    /// <summary>
    /// Whether input and output can go device-direct: both on one kernel device that every rank reaches, thread
    /// ranks (a GPU they share, or the emulated device) or processes on one GPU. The decision is this rank's; the
    /// agreement check compares algorithms, so ranks that decide differently fail at once, naming both. A group of
    /// one goes direct too: a device copy instead of two trips through host memory.
    /// </summary>
    private bool CanGoDirect(Tensor input, Tensor output)
    {
        if (!ReferenceEquals(input.Device, output.Device)) return false;
        bool threads = _threadShared is not null && input.Device is CudaDevice or EmuDevice;
        // CUDA IPC handles open only on the host that made them.
        bool processes = _store is not null && input.Device is CudaDevice && (_hosts is null || _hosts.All(h => h == _hosts[0]));
        return threads || processes;
    }

    // The reduce kernel has float entry points only, and takes at most MaxReduceInputs sources.
    private bool CanReduceDirect(Tensor input, Tensor output) =>
        CanGoDirect(input, output) && input.DType is DType.F32 or DType.BF16 or DType.F16 && Size <= KernelLimits.MaxReduceInputs;

    // Rings and chains above the one-shot size, as the host all-reduce chooses (NATIVEPARALLEL_ALGO overrides).
    private string DirectAlgorithm(long bytes) => _algorithm switch
    {
        "ring" => "direct-ring",
        "oneshot" => "direct",
        _ => bytes <= _oneShotBytes ? "direct" : "direct-ring",
    };

    /// <summary>
    /// Runs one device-direct collective in the group's order: the agreement check, then the ranks meet so that
    /// each one's producers are what its peers wait for, exchange addresses, run <paramref name="body"/>, and meet
    /// again so that no stream goes on to overwrite a buffer a peer may still read. Every wait is stream-ordered
    /// (events); the host only meets at barriers.
    /// </summary>
    private void RunDirect(Collective kind, Tensor input, Tensor output, ReduceOp op, long count, int root, string algorithm, Action<Direct> body)
    {
        input.RequireContiguous("a collective");
        output.RequireContiguous("a collective");
        // No separate handshake: the exchange of addresses carries the descriptors and checks them (one meeting, not two).
        Run(kind, input.DType, op, count, root, handshake: false, algorithm, descriptor =>
        {
            var peers = Peers(input.Device);
            peers.SignalStart();
            // An empty tensor has no allocation to export; nobody reads it.
            var (inputs, outputs) = peers.Exchange(descriptor, Disagreement, input.Bytes > 0 ? input.Pointer : 0, output.Bytes > 0 ? output.Pointer : 0);
            body(new Direct(peers, HostBarrier, inputs, outputs, input.DType));
            peers.Signal();
            HostBarrier();
            for (int p = 0; p < Size; p++) peers.Await(p);
            Interlocked.Increment(ref _deviceDirectCalls);
        });
    }

    private DevicePeers Peers(IDevice device)
    {
        if (_devicePeers is { } cached && ReferenceEquals(cached.Device, device)) return cached;
        _devicePeers?.Dispose();
        if (_threadShared is not null)
            return _devicePeers = new ThreadDevicePeers(_threadShared, device, _engine, Rank, Size, why => _engine.Fail(why, null, abortOthers: false));
        _ipc ??= new CudaIpcPeers((CudaDevice)device);
        return _devicePeers = new IpcDevicePeers((CudaDevice)device, _ipc, _engine, Rank, Size);
    }

    private bool DeviceDirectAllReduce(Tensor input, Tensor output, ReduceOp op)
    {
        if (!CanReduceDirect(input, output)) return false;
        // In its own method: a lambda here capturing the arguments would allocate on every call, host ones too.
        RunDirectAllReduce(input, output, op);
        return true;
    }

    private void RunDirectAllReduce(Tensor input, Tensor output, ReduceOp op)
    {
        Same(Collective.AllReduce, input, output);
        RunDirect(Collective.AllReduce, input, output, op, input.Count, -1, "direct", d => d.AllReduce(input.Count, op));
    }

    private bool DeviceDirectAllGather(Tensor input, Tensor output)
    {
        if (!CanGoDirect(input, output)) return false;
        Blocks(Collective.AllGather, input, output, output.Count == input.Count * Size, "output must hold Size × input elements");
        string algorithm = DirectAlgorithm(output.Bytes);
        RunDirect(Collective.AllGather, input, output, ReduceOp.Sum, input.Count, -1, algorithm, d =>
        {
            if (algorithm == "direct") d.AllGatherOneShot(input.Count);
            else d.AllGatherRing(input.Count);
        });
        return true;
    }

    private bool DeviceDirectReduceScatter(Tensor input, Tensor output, ReduceOp op)
    {
        if (!CanReduceDirect(input, output)) return false;
        Blocks(Collective.ReduceScatter, input, output, input.Count == output.Count * Size, "input must hold Size × output elements");
        // One shot at every size: on memory all ranks address, each rank reads Size blocks either way, and a ring
        // would need scratch buffers and pairwise steps that cannot average.
        RunDirect(Collective.ReduceScatter, input, output, op, output.Count, -1, "direct", d => d.ReduceScatter(output.Count, op));
        return true;
    }

    private bool DeviceDirectBroadcast(Tensor input, Tensor output, int root)
    {
        if (!CanGoDirect(input, output)) return false;
        CheckRoot(root);
        Same(Collective.Broadcast, input, output);
        string algorithm = DirectAlgorithm(output.Bytes);
        RunDirect(Collective.Broadcast, input, output, ReduceOp.Sum, output.Count, root, algorithm, d =>
        {
            if (algorithm == "direct") d.BroadcastOneShot(output.Count, root);
            else d.BroadcastChain(output.Count, root, ChainPieces(output.Bytes));
        });
        return true;
    }

    // Pieces of about 1 MiB keep the chain's pipeline full without a meeting per few bytes; at most 64 meetings.
    private static int ChainPieces(long bytes) => (int)Math.Clamp((bytes + (1 << 20) - 1) >> 20, 1, 64);

    private bool DeviceDirectAllToAll(Tensor input, long[] sendCounts, Tensor output, long[] receiveCounts)
    {
        if (!CanGoDirect(input, output)) return false;
        CheckSplits(input, sendCounts, output, receiveCounts);
        RunDirect(Collective.AllToAll, input, output, ReduceOp.Sum, -1, -1, "direct", d =>
        {
            // Each rank needs every rank's send counts to find its part of their inputs: gather them (one
            // small message per rank), and check them against this rank's receive counts before any copy.
            var all = new long[Size * Size];
            sendCounts.CopyTo(all, Rank * Size);
            var bytes = MemoryMarshal.AsBytes(all.AsSpan());
            Ring.AllGather(_engine, bytes, new Chunks(bytes.Length, Size, 1));
            var sent = new long[Size][];
            for (int p = 0; p < Size; p++)
            {
                sent[p] = all.AsSpan(p * Size, Size).ToArray();
                if (sent[p][Rank] != receiveCounts[p])
                    throw _engine.Fail($"rank {p} sends {sent[p][Rank]} elements to this rank, which expects {receiveCounts[p]} from it; " +
                                       "make receiveCounts[p] on rank r equal sendCounts[r] on rank p", p, abortOthers: true);
            }
            d.AllToAll(sent);
        });
        return true;
    }

    // A barrier inside a collective, with no sequence number of its own: in small groups a token to and from every
    // peer at once (one hop), in larger ones an all-reduce of a token around the ring.
    private void HostBarrier()
    {
        if (Size <= KernelLimits.MaxReduceInputs)
        {
            Span<byte> tokens = stackalloc byte[Size + 1];
            tokens[Size] = 1;
            _engine.ExchangeAll(tokens[Size..], tokens[..Size], 1);
            return;
        }
        int token = 1;
        var bytes = MemoryMarshal.AsBytes(new Span<int>(ref token));
        Ring.AllReduce(_engine, bytes, bytes, 1, DType.I32, ReduceOp.Sum);
    }
}
