using NativeParallel.Comm.Algorithms;
using NativeParallel.Comm.Transports;
using NativeParallel.Devices;

namespace NativeParallel.Comm;

/// <summary>What a thread rank publishes to its peers for device-direct collectives: its device and its progress event.</summary>
internal sealed record DeviceRank(IDevice Device, IDeviceEvent Progress);

/// <summary>
/// How a device-direct collective reaches its peers' buffers and orders its stream against theirs. A rank's stream
/// is the stream current where the collective was called (<see cref="CurrentStreams"/>; an async call captures it). Thread ranks share
/// an address space: they publish addresses and an event each in the transport's shared memory. Process ranks on one
/// GPU exchange CUDA IPC exports of their buffers and of one interprocess event each.
/// The ordering rule, at every step where a rank will read what a peer wrote (or produced before the call): the
/// peer records its progress event on its stream (<see cref="Signal"/>), all ranks meet on the host (the group's
/// barrier), then the reader's stream waits for that event (<see cref="Await"/>) before it reads. A stream waits for
/// an event's latest record at the time of the wait, and a record covers everything enqueued before it, so one event
/// per rank, re-recorded at each step, is enough: a wait that sees a later record only waits for more, never less,
/// and never for work enqueued after the wait, so no cycle can form.
/// </summary>
internal abstract class DevicePeers : IDisposable
{
    protected DevicePeers(IDevice device, int rank, int size)
    {
        Device = device;
        Rank = rank;
        Size = size;
    }

    /// <summary>The device every rank's tensors are on.</summary>
    public IDevice Device { get; }

    public int Rank { get; }

    public int Size { get; }

    /// <summary>Publishes this rank's input and output, returns every rank's (as addresses valid in this rank); meets the peers first.</summary>
    public abstract (ulong[] Inputs, ulong[] Outputs) Exchange(ulong input, ulong output);

    /// <summary>Records the current end of this rank's stream as its progress.</summary>
    public abstract void Signal();

    /// <summary>Makes this rank's stream wait for <paramref name="peer"/>'s progress as last signalled before the barrier just passed.</summary>
    public abstract void Await(int peer);

    public abstract void Dispose();
}

/// <summary>Thread ranks: one address space, the device object and its events shared by reference.</summary>
internal sealed class ThreadDevicePeers : DevicePeers
{
    private readonly ThreadTransport.Shared _shared;
    private readonly Action _barrier;
    private readonly Func<string, Exception> _fail;
    private readonly DeviceRank _mine;

    public ThreadDevicePeers(ThreadTransport.Shared shared, IDevice device, int rank, int size, Action barrier, Func<string, Exception> fail)
        : base(device, rank, size)
    {
        _shared = shared;
        _barrier = barrier;
        _fail = fail;
        _mine = new DeviceRank(device, device.CreateEvent());
    }

    public override (ulong[] Inputs, ulong[] Outputs) Exchange(ulong input, ulong output)
    {
        var pointers = _shared.DevicePointers;
        Volatile.Write(ref pointers[2 * Rank], input);
        Volatile.Write(ref pointers[2 * Rank + 1], output);
        Volatile.Write(ref _shared.DeviceRanks[Rank], _mine);
        _barrier();
        var inputs = new ulong[Size];
        var outputs = new ulong[Size];
        for (int p = 0; p < Size; p++)
        {
            inputs[p] = Volatile.Read(ref pointers[2 * p]);
            outputs[p] = Volatile.Read(ref pointers[2 * p + 1]);
            // Addresses of another device mean nothing here (no peer access is set up): every rank sees the same
            // table, so every rank refuses the same way.
            var theirs = Volatile.Read(ref _shared.DeviceRanks[p]);
            if (theirs is null || !ReferenceEquals(theirs.Device, Device))
                throw _fail($"rank {p}'s tensors are on {theirs?.Device.Name ?? "no device"}, this rank's on {Device.Name}; " +
                            "thread ranks must share one device object for device-direct collectives (or use host tensors)");
        }
        return (inputs, outputs);
    }

    public override void Signal() => _mine.Progress.Record(Device.CurrentStream());

    public override void Await(int peer)
    {
        if (peer == Rank) return;
        Device.CurrentStream().Wait(Volatile.Read(ref _shared.DeviceRanks[peer])!.Progress);
    }

    public override void Dispose() => _mine.Progress.Dispose();
}

/// <summary>Process ranks on one GPU: buffers and progress events travel as CUDA IPC handles, gathered over the group's links.</summary>
internal sealed class IpcDevicePeers : DevicePeers
{
    private const int Slot = 2 * CudaIpcPeers.ExportBytes + Interop.CUipcEventHandle.Size;
    private readonly CudaIpcPeers _ipc;
    private readonly Engine _engine;
    private byte[] _events = [];

    public IpcDevicePeers(CudaDevice device, CudaIpcPeers ipc, Engine engine, int rank, int size) : base(device, rank, size)
    {
        _ipc = ipc;
        _engine = engine;
    }

    public override (ulong[] Inputs, ulong[] Outputs) Exchange(ulong input, ulong output)
    {
        var all = new byte[Slot * Size];
        var mine = all.AsSpan(Rank * Slot, Slot);
        _ipc.Export(input, mine[..CudaIpcPeers.ExportBytes]);
        _ipc.Export(output, mine[CudaIpcPeers.ExportBytes..(2 * CudaIpcPeers.ExportBytes)]);
        _ipc.ExportProgress(mine[(2 * CudaIpcPeers.ExportBytes)..]);
        Ring.AllGather(_engine, all, new Chunks(all.Length, Size, 1));
        _events = all;
        var inputs = new ulong[Size];
        var outputs = new ulong[Size];
        for (int p = 0; p < Size; p++)
        {
            if (p == Rank)
            {
                (inputs[p], outputs[p]) = (input, output);
                continue;
            }
            var theirs = all.AsSpan(p * Slot, Slot);
            inputs[p] = _ipc.Open(theirs[..CudaIpcPeers.ExportBytes]);
            outputs[p] = _ipc.Open(theirs[CudaIpcPeers.ExportBytes..(2 * CudaIpcPeers.ExportBytes)]);
        }
        return (inputs, outputs);
    }

    public override void Signal() => _ipc.RecordProgress();

    public override void Await(int peer)
    {
        if (peer == Rank) return;
        _ipc.WaitForPeer(_events.AsSpan(peer * Slot + 2 * CudaIpcPeers.ExportBytes, Interop.CUipcEventHandle.Size));
    }

    // The CudaIpcPeers (opened handles, the event) belong to the group, which keeps them across collectives.
    public override void Dispose() { }
}
