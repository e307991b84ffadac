using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using NativeParallel.Comm.Transports;
using NativeParallel.Devices;
using NativeParallel.Interop;

namespace NativeParallel.Comm;

/// <summary>What a thread rank publishes to its peers for device-direct collectives: its device, its progress event and the stream that event was last recorded on.</summary>
internal sealed class DeviceRank(IDevice device, IDeviceEvent progress)
{
    public IDevice Device { get; } = device;

    public IDeviceEvent Progress { get; } = progress;

    /// <summary>The stream of the latest record of <see cref="Progress"/>; written before the meeting that publishes it.</summary>
    public IDeviceStream? RecordedOn;
}

/// <summary>
/// How a device-direct collective reaches its peers' buffers and orders its stream against theirs. A rank's stream
/// is the stream current where the collective was called (<see cref="CurrentStreams"/>; an async call captures it). Thread ranks share
/// an address space: they publish addresses and an event each. Process ranks on one GPU exchange CUDA IPC exports
/// of their buffers and of one interprocess event each.
/// The ordering rule, at every step where a rank will read what a peer wrote (or produced before the call): the
/// peer records its progress event on its stream (<see cref="Signal"/>), all ranks meet on the host (the group's
/// barrier), then the reader's stream waits for that event (<see cref="Await"/>) before it reads. A stream waits for
/// an event's latest record at the time of the wait, and a record covers everything enqueued before it, so one event
/// per rank, re-recorded at each step, is enough: a wait that sees a later record only waits for more, never less,
/// and never for work enqueued after the wait, so no cycle can form.
/// </summary>
/// <remarks>
/// <see cref="Exchange{TDescriptor}"/> is the collective's first meeting and its agreement check at once: every rank
/// sends its call's descriptor and its addresses to every peer in one hop, so a device-direct call costs no separate
/// handshake.
/// </remarks>
internal abstract class DevicePeers : IDisposable
{
    private readonly Engine _engine;
    private byte[] _staging = [];

    protected DevicePeers(IDevice device, Engine engine, int rank, int size)
    {
        Device = device;
        _engine = engine;
        Rank = rank;
        Size = size;
    }

    /// <summary>The device every rank's tensors are on.</summary>
    public IDevice Device { get; }

    public int Rank { get; }

    public int Size { get; }

    /// <summary>
    /// Meets the peers: sends <paramref name="mine"/> (the call's descriptor) and this rank's input and output to
    /// every peer, checks each peer's descriptor against it (<paramref name="disagreement"/>(theirs, mine, peer): why
    /// they differ, or null), and returns every rank's addresses as valid in this rank.
    /// </summary>
    public (ulong[] Inputs, ulong[] Outputs) Exchange<TDescriptor>(TDescriptor mine, Func<TDescriptor, TDescriptor, int, string?> disagreement,
        ulong input, ulong output) where TDescriptor : unmanaged
    {
        int header = Unsafe.SizeOf<TDescriptor>(), slot = header + PayloadBytes;
        if (_staging.Length < slot * (Size + 1)) _staging = new byte[slot * (Size + 1)];
        var slots = _staging.AsSpan(0, slot * Size);
        var outgoing = _staging.AsSpan(slot * Size, slot);
        MemoryMarshal.Write(outgoing, in mine);
        Publish(input, output, outgoing[header..]);
        _engine.ExchangeAll(outgoing, slots, slot);
        for (int p = 0; p < Size; p++)
        {
            if (p == Rank) continue;
            if (disagreement(MemoryMarshal.Read<TDescriptor>(slots.Slice(p * slot, header)), mine, p) is { } why)
                throw _engine.Fail(why, p, abortOthers: true);
        }
        var inputs = new ulong[Size];
        var outputs = new ulong[Size];
        for (int p = 0; p < Size; p++)
            (inputs[p], outputs[p]) = p == Rank ? (input, output) : Resolve(p, slots.Slice(p * slot + header, PayloadBytes));
        return (inputs, outputs);
    }

    /// <summary>Bytes of what a rank sends its peers about its buffers and event.</summary>
    protected abstract int PayloadBytes { get; }

    /// <summary>Writes what peers need to reach <paramref name="input"/>, <paramref name="output"/> and this rank's progress (0: no buffer).</summary>
    protected abstract void Publish(ulong input, ulong output, Span<byte> payload);

    /// <summary>A peer's input and output as addresses valid in this rank, from what it published.</summary>
    protected abstract (ulong Input, ulong Output) Resolve(int peer, ReadOnlySpan<byte> payload);

    /// <summary>Records the current end of this rank's stream as its progress.</summary>
    public abstract void Signal();

    /// <summary>The first <see cref="Signal"/> of a collective, before <see cref="Exchange{TDescriptor}"/>: it always records (peers' producers).</summary>
    public virtual void SignalStart() => Signal();

    /// <summary>Makes this rank's stream wait for <paramref name="peer"/>'s progress as last signalled before the barrier just passed.</summary>
    public abstract void Await(int peer);

    public abstract void Dispose();
}

/// <summary>Thread ranks: one address space, the device object and its events shared by reference.</summary>
internal sealed class ThreadDevicePeers : DevicePeers
{
    private readonly ThreadTransport.Shared _shared;
    private readonly Func<string, Exception> _fail;
    private readonly DeviceRank _mine;
    // Every rank of this call enqueues on this rank's stream: host order (the meetings) orders their work, so the
    // call's later signals and waits have nothing to do.
    private bool _oneStream;

    public ThreadDevicePeers(ThreadTransport.Shared shared, IDevice device, Engine engine, int rank, int size, Func<string, Exception> fail)
        : base(device, engine, rank, size)
    {
        _shared = shared;
        _fail = fail;
        // Only ordering, never timing: a CUDA event without timestamps is the cheaper one to record and wait for.
        _mine = new DeviceRank(device, device is CudaDevice cuda ? cuda.CreateEvent(timing: false) : device.CreateEvent());
    }

    protected override int PayloadBytes => 2 * sizeof(ulong);

    protected override void Publish(ulong input, ulong output, Span<byte> payload)
    {
        // The meeting's messages publish this store: a peer reads it after it has received this rank's payload.
        Volatile.Write(ref _shared.DeviceRanks[Rank], _mine);
        _oneStream = true;
        MemoryMarshal.Write(payload, in input);
        MemoryMarshal.Write(payload[sizeof(ulong)..], in output);
    }

    protected override (ulong Input, ulong Output) Resolve(int peer, ReadOnlySpan<byte> payload)
    {
        // Addresses of another device mean nothing here (no peer access is set up): every rank sees the same
        // table, so every rank refuses the same way.
        var theirs = Volatile.Read(ref _shared.DeviceRanks[peer]);
        if (theirs is null || !ReferenceEquals(theirs.Device, Device))
            throw _fail($"rank {peer}'s tensors are on {theirs?.Device.Name ?? "no device"}, this rank's on {Device.Name}; " +
                        "thread ranks must share one device object for device-direct collectives (or use host tensors)");
        // Each rank's start signal recorded on the stream it runs this call on, before the exchange.
        _oneStream &= ReferenceEquals(Volatile.Read(ref theirs.RecordedOn), Volatile.Read(ref _mine.RecordedOn));
        return (MemoryMarshal.Read<ulong>(payload), MemoryMarshal.Read<ulong>(payload[sizeof(ulong)..]));
    }

    public override void SignalStart()
    {
        _oneStream = false;
        Signal();
    }

    public override void Signal()
    {
        var stream = Device.CurrentStream();
        // One stream for every rank (the usual case of thread ranks on one GPU): nobody waits for this record.
        if (_oneStream && ReferenceEquals(stream, _mine.RecordedOn)) return;
        _mine.Progress.Record(stream);
        Volatile.Write(ref _mine.RecordedOn, stream);
    }

    public override void Await(int peer)
    {
        if (peer == Rank) return;
        var theirs = Volatile.Read(ref _shared.DeviceRanks[peer])!;
        var stream = Device.CurrentStream();
        // Recorded on this very stream before the meeting: everything it covers is already ahead in stream order.
        if (ReferenceEquals(Volatile.Read(ref theirs.RecordedOn), stream)) return;
        stream.Wait(theirs.Progress);
    }

    public override void Dispose() => _mine.Progress.Dispose();
}

/// <summary>Process ranks on one GPU: buffers and progress events travel as CUDA IPC handles, exchanged with the group's descriptors.</summary>
internal sealed class IpcDevicePeers : DevicePeers
{
    private const int Slot = 2 * CudaIpcPeers.ExportBytes + CUipcEventHandle.Size;
    private readonly CudaIpcPeers _ipc;
    private readonly CUevent[] _peerProgress;

    public IpcDevicePeers(CudaDevice device, CudaIpcPeers ipc, Engine engine, int rank, int size) : base(device, engine, rank, size)
    {
        _ipc = ipc;
        _peerProgress = new CUevent[size];
    }

    protected override int PayloadBytes => Slot;

    protected override void Publish(ulong input, ulong output, Span<byte> payload)
    {
        _ipc.BeginUse();
        _ipc.Export(input, payload[..CudaIpcPeers.ExportBytes]);
        _ipc.Export(output, payload[CudaIpcPeers.ExportBytes..(2 * CudaIpcPeers.ExportBytes)]);
        _ipc.ExportProgress(payload[(2 * CudaIpcPeers.ExportBytes)..]);
    }

    protected override (ulong Input, ulong Output) Resolve(int peer, ReadOnlySpan<byte> payload)
    {
        _peerProgress[peer] = _ipc.OpenProgress(payload[(2 * CudaIpcPeers.ExportBytes)..]);
        return (_ipc.Open(payload[..CudaIpcPeers.ExportBytes]), _ipc.Open(payload[CudaIpcPeers.ExportBytes..(2 * CudaIpcPeers.ExportBytes)]));
    }

    public override void Signal() => _ipc.RecordProgress();

    public override void Await(int peer)
    {
        if (peer == Rank) return;
        _ipc.WaitForPeer(_peerProgress[peer]);
    }

    // The CudaIpcPeers (opened handles, the event) belong to the group, which keeps them across collectives.
    public override void Dispose() { }
}
