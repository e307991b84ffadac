using NativeParallel.Devices;
using NativeParallel.Interop;

namespace NativeParallel.Comm.Transports;

/// <summary>
/// CUDA IPC between the processes sharing one GPU: a buffer is exported as (handle of its allocation, offset
/// into it), and a peer's export is opened once per allocation (the driver allows one open of a handle per
/// context, so opened allocations are cached) and addressed at base + offset. Each process also owns one
/// interprocess event, exported once and opened by its peers once, which orders their streams after its own.
/// </summary>
/// <remarks>
/// Exporting and opening are driver round trips (an export asks the kernel driver to share the allocation), far
/// dearer than a collective on a small buffer, so neither is on the hot path: exports are cached by the
/// allocation's buffer id (process-unique, never reused, so an allocation freed and another made at the same
/// address gets a fresh export) and opened mappings by the handle's bytes (a new allocation has a new handle).
/// Both caches are bounded: past <see cref="MaxCached"/> entries the export cache is cleared, and the mappings not
/// used by the collective in hand are closed after the device has finished with them.
/// </remarks>
internal sealed unsafe class CudaIpcPeers(CudaDevice device) : IDisposable
{
    /// <summary>Bytes of one export: the 64-byte handle, then the offset.</summary>
    public const int ExportBytes = CUipcMemHandle.Size + sizeof(long);

    /// <summary>The most exports, or opened peer allocations, kept at once.</summary>
    public const int MaxCached = 64;

    private readonly IpcExportCache _exports = new(MaxCached, start =>
    {
        CudaException.Check(Cuda.cuIpcGetMemHandle(out var handle, new CUdeviceptr(start)));
        return handle.ToArray();
    });
    private readonly IpcMappingCache _opened = new(MaxCached,
        handleBytes =>
        {
            device.MakeCurrent();
            CudaException.Check(Cuda.cuIpcOpenMemHandle_v2(out var mapped, CUipcMemHandle.FromBytes(handleBytes), CUipcMem_flags.CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS));
            return mapped.Value;
        },
        // Closing a mapping is not stream-ordered: the device first finishes every read of the peers' memory queued so far.
        beforeClose: device.Synchronize,
        close: start => CudaException.Check(Cuda.cuIpcCloseMemHandle(new CUdeviceptr(start))));
    private readonly Dictionary<string, CUevent> _openedEvents = new(StringComparer.Ordinal);
    private CUevent _progress;
    private byte[]? _progressExport;

    /// <summary>Driver exports made so far (memory and event handles): once per allocation and once for the event, not per collective.</summary>
    public long ExportCalls => _exports.Exports + (_progressExport is null ? 0 : 1);

    /// <summary>Peers' memory and event handles opened so far: once per peer allocation and per peer event, not per collective.</summary>
    public long OpenCalls => _opened.Opens + _openedEvents.Count;

    /// <summary>Writes the export of <paramref name="pointer"/> (a cuMemAlloc allocation, or inside one, or 0 for none) into <paramref name="destination"/>.</summary>
    public void Export(ulong pointer, Span<byte> destination)
    {
        // An empty tensor has no allocation to export: offset −1 says so, and its peers get address 0.
        if (pointer == 0)
        {
            destination[..CUipcMemHandle.Size].Clear();
            BitConverter.TryWriteBytes(destination[CUipcMemHandle.Size..], -1L);
            return;
        }
        device.MakeCurrent();
        ulong start = 0, bufferId = 0;
        CudaException.Check(Cuda.cuPointerGetAttribute(&start, CUpointer_attribute.RANGE_START_ADDR, new CUdeviceptr(pointer)));
        CudaException.Check(Cuda.cuPointerGetAttribute(&bufferId, CUpointer_attribute.BUFFER_ID, new CUdeviceptr(pointer)));
        _exports.Handle(bufferId, start).CopyTo(destination);
        BitConverter.TryWriteBytes(destination[CUipcMemHandle.Size..], (long)(pointer - start));
    }

    /// <summary>Starts one exchange's opens: mappings not used from here on are the ones a full cache may close.</summary>
    public void BeginUse() => _opened.BeginUse();

    /// <summary>This process's address of a peer's export.</summary>
    public ulong Open(ReadOnlySpan<byte> export)
    {
        long offset = BitConverter.ToInt64(export[CUipcMemHandle.Size..]);
        return offset < 0 ? 0 : _opened.Open(export[..CUipcMemHandle.Size]) + (ulong)offset;
    }

    /// <summary>
    /// This process's progress event: interprocess events must not time (DISABLE_TIMING), and it is recorded on the
    /// device's default stream, where the collectives and their producers run.
    /// </summary>
    public CUevent Progress
    {
        get
        {
            if (_progress.IsNull)
            {
                device.MakeCurrent();
                CudaException.Check(Cuda.cuEventCreate(out _progress, CUevent_flags.DISABLE_TIMING | CUevent_flags.INTERPROCESS));
            }
            return _progress;
        }
    }

    /// <summary>Marks the current end of this process's default stream: what a peer waiting on <see cref="Progress"/> waits for.</summary>
    public void RecordProgress()
    {
        var evt = Progress;
        device.MakeCurrent();
        CudaException.Check(Cuda.cuEventRecord(evt, device.Stream(null)));
    }

    /// <summary>Writes the IPC handle of <see cref="Progress"/> (<see cref="CUipcEventHandle.Size"/> bytes), exported once.</summary>
    public void ExportProgress(Span<byte> destination)
    {
        if (_progressExport is null)
        {
            var evt = Progress;
            device.MakeCurrent();
            CudaException.Check(Cuda.cuIpcGetEventHandle(out var handle, evt));
            _progressExport = handle.AsSpan().ToArray();
        }
        _progressExport.CopyTo(destination);
    }

    /// <summary>A peer's progress event from its export, opened once.</summary>
    public CUevent OpenProgress(ReadOnlySpan<byte> exportedProgress)
    {
        string key = Convert.ToHexString(exportedProgress);
        if (!_openedEvents.TryGetValue(key, out var evt))
        {
            device.MakeCurrent();
            CudaException.Check(Cuda.cuIpcOpenEventHandle(out evt, CUipcEventHandle.FromBytes(exportedProgress)));
            _openedEvents[key] = evt;
        }
        return evt;
    }

    /// <summary>
    /// Makes this process's default stream wait for a peer's progress event, as last recorded before this call
    /// (cuStreamWaitEvent takes the latest record; the caller orders the peer's record before it on the host).
    /// </summary>
    public void WaitForPeer(CUevent peerProgress)
    {
        device.MakeCurrent();
        CudaException.Check(Cuda.cuStreamWaitEvent(device.Stream(null), peerProgress, 0));
    }

    public void Dispose()
    {
        device.MakeCurrent();
        foreach (var evt in _openedEvents.Values) Cuda.cuEventDestroy_v2(evt);
        _openedEvents.Clear();
        if (!_progress.IsNull) Cuda.cuEventDestroy_v2(_progress);
        _progress = default;
        _progressExport = null;
        foreach (ulong start in _opened.Drain()) Cuda.cuIpcCloseMemHandle(new CUdeviceptr(start));
        _exports.Clear();
    }
}

/// <summary>
/// This process's IPC exports, by the allocation's buffer id (process-unique and never reused: an allocation freed
/// and another made at the same address is a new id, so it never gets the old handle). Bounded: cleared when full.
/// </summary>
internal sealed class IpcExportCache(int capacity, Func<ulong, byte[]> export)
{
    private readonly Dictionary<ulong, (ulong Start, byte[] Handle)> _handles = new();

    /// <summary>Driver exports made (the calls the cache did not answer).</summary>
    public long Exports { get; private set; }

    public int Count => _handles.Count;

    /// <summary>The handle of the allocation <paramref name="bufferId"/> that starts at <paramref name="start"/>.</summary>
    public ReadOnlySpan<byte> Handle(ulong bufferId, ulong start)
    {
        if (_handles.TryGetValue(bufferId, out var known) && known.Start == start) return known.Handle;
        if (_handles.Count >= capacity) _handles.Clear();
        var handle = export(start);
        Exports++;
        _handles[bufferId] = (start, handle);
        return handle;
    }

    public void Clear() => _handles.Clear();
}

/// <summary>
/// Peers' allocations mapped into this process, by handle bytes (a new allocation has a new handle, so a stale
/// mapping is never returned for it). Bounded: when full, the mappings the current exchange has not used are
/// closed, after <c>beforeClose</c> (the device finishing every read queued so far).
/// </summary>
internal sealed class IpcMappingCache(int capacity, Func<ReadOnlySpan<byte>, ulong> open, Action beforeClose, Action<ulong> close)
{
    private readonly Dictionary<string, (ulong Start, long LastUse)> _mapped = new(StringComparer.Ordinal);
    private long _use;

    /// <summary>Driver opens made (the calls the cache did not answer).</summary>
    public long Opens { get; private set; }

    /// <summary>Mappings closed to keep within the capacity.</summary>
    public long Closes { get; private set; }

    public int Count => _mapped.Count;

    /// <summary>Starts an exchange: what it opens or finds is in use until the next one starts.</summary>
    public void BeginUse() => _use++;

    /// <summary>The base address, in this process, of the allocation behind <paramref name="handle"/>.</summary>
    public ulong Open(ReadOnlySpan<byte> handle)
    {
        string key = Convert.ToHexString(handle);
        if (_mapped.TryGetValue(key, out var known))
        {
            _mapped[key] = (known.Start, _use);
            return known.Start;
        }
        if (_mapped.Count >= capacity) CloseUnused();
        ulong start = open(handle);
        Opens++;
        _mapped[key] = (start, _use);
        return start;
    }

    private void CloseUnused()
    {
        beforeClose();
        foreach (var (key, mapped) in _mapped.ToArray())
        {
            if (mapped.LastUse == _use) continue;
            close(mapped.Start);
            Closes++;
            _mapped.Remove(key);
        }
    }

    /// <summary>Forgets every mapping and returns their base addresses, for the owner to close.</summary>
    public ulong[] Drain()
    {
        var starts = _mapped.Values.Select(m => m.Start).ToArray();
        _mapped.Clear();
        return starts;
    }
}
