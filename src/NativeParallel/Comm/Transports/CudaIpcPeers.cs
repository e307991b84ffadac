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

    private readonly Dictionary<ulong, (ulong Start, CUipcMemHandle Handle)> _exports = new();
    private readonly Dictionary<string, (ulong Start, long LastUse)> _opened = new(StringComparer.Ordinal);
    private readonly Dictionary<string, CUevent> _openedEvents = new(StringComparer.Ordinal);
    private CUevent _progress;
    private byte[]? _progressExport;
    private long _uses;

    /// <summary>Driver calls that exported an allocation (cuIpcGetMemHandle); the rest were served from the cache.</summary>
    public long ExportCalls { get; private set; }

    /// <summary>Driver calls that mapped a peer's allocation (cuIpcOpenMemHandle).</summary>
    public long OpenCalls { get; private set; }

    /// <summary>Peer allocations mapped now.</summary>
    public int OpenedCount => _opened.Count;

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
        if (!_exports.TryGetValue(bufferId, out var export) || export.Start != start)
        {
            CudaException.Check(Cuda.cuIpcGetMemHandle(out var handle, new CUdeviceptr(start)));
            ExportCalls++;
            if (_exports.Count >= MaxCached) _exports.Clear();
            _exports[bufferId] = export = (start, handle);
        }
        export.Handle.AsSpan().CopyTo(destination);
        BitConverter.TryWriteBytes(destination[CUipcMemHandle.Size..], (long)(pointer - start));
    }

    /// <summary>Starts one exchange's opens: mappings not used from here on are the ones <see cref="Open"/> may close when the cache is full.</summary>
    public void BeginUse() => _uses++;

    /// <summary>This process's address of a peer's export.</summary>
    public ulong Open(ReadOnlySpan<byte> export)
    {
        var handleBytes = export[..CUipcMemHandle.Size];
        long offset = BitConverter.ToInt64(export[CUipcMemHandle.Size..]);
        if (offset < 0) return 0;
        string key = Convert.ToHexString(handleBytes);
        if (_opened.TryGetValue(key, out var opened))
        {
            _opened[key] = (opened.Start, _uses);
            return opened.Start + (ulong)offset;
        }
        if (_opened.Count >= MaxCached) CloseUnused();
        CUipcMemHandle handle = default;
        handleBytes.CopyTo(handle.AsSpan());
        device.MakeCurrent();
        CudaException.Check(Cuda.cuIpcOpenMemHandle_v2(out var mapped, handle, CUipcMem_flags.CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS));
        OpenCalls++;
        _opened[key] = (mapped.Value, _uses);
        return mapped.Value + (ulong)offset;
    }

    // Closing a mapping is not stream-ordered: the device first finishes every read of the peers' memory queued so far.
    private void CloseUnused()
    {
        device.Synchronize();
        foreach (var (key, opened) in _opened.ToArray())
        {
            if (opened.LastUse == _uses) continue;
            CudaException.Check(Cuda.cuIpcCloseMemHandle(new CUdeviceptr(opened.Start)));
            _opened.Remove(key);
        }
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
        foreach (var opened in _opened.Values) Cuda.cuIpcCloseMemHandle(new CUdeviceptr(opened.Start));
        _opened.Clear();
        _exports.Clear();
    }
}
