using NativeParallel.Devices;
using NativeParallel.Interop;

namespace NativeParallel.Comm.Transports;

/// <summary>
/// CUDA IPC between the processes sharing one GPU: a buffer is exported as (handle of its allocation, offset
/// into it), and a peer's export is opened once per allocation (the driver allows one open of a handle per
/// context, so opened allocations are cached) and addressed at base + offset. Each process also owns one
/// interprocess event, exported once and opened by its peers once, which orders their streams after its own.
/// </summary>
internal sealed unsafe class CudaIpcPeers(CudaDevice device) : IDisposable
{
    /// <summary>Bytes of one export: the 64-byte handle, then the offset.</summary>
    public const int ExportBytes = CUipcMemHandle.Size + sizeof(long);

    private readonly Dictionary<string, ulong> _opened = new(StringComparer.Ordinal);
    private readonly Dictionary<string, CUevent> _openedEvents = new(StringComparer.Ordinal);
    private CUevent _progress;

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
        ulong start = 0;
        CudaException.Check(Cuda.cuPointerGetAttribute(&start, CUpointer_attribute.RANGE_START_ADDR, new CUdeviceptr(pointer)));
        CudaException.Check(Cuda.cuIpcGetMemHandle(out var handle, new CUdeviceptr(start)));
        handle.AsSpan().CopyTo(destination);
        BitConverter.TryWriteBytes(destination[CUipcMemHandle.Size..], (long)(pointer - start));
    }

    /// <summary>This process's address of a peer's export.</summary>
    public ulong Open(ReadOnlySpan<byte> export)
    {
        var handleBytes = export[..CUipcMemHandle.Size];
        long offset = BitConverter.ToInt64(export[CUipcMemHandle.Size..]);
        if (offset < 0) return 0;
        string key = Convert.ToHexString(handleBytes);
        if (!_opened.TryGetValue(key, out ulong start))
        {
            CUipcMemHandle handle = default;
            handleBytes.CopyTo(handle.AsSpan());
            device.MakeCurrent();
            CudaException.Check(Cuda.cuIpcOpenMemHandle_v2(out var mapped, handle, CUipcMem_flags.CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS));
            _opened[key] = start = mapped.Value;
        }
        return start + (ulong)offset;
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

    /// <summary>Writes the IPC handle of <see cref="Progress"/> (<see cref="CUipcEventHandle.Size"/> bytes).</summary>
    public void ExportProgress(Span<byte> destination)
    {
        var evt = Progress;
        device.MakeCurrent();
        CudaException.Check(Cuda.cuIpcGetEventHandle(out var handle, evt));
        handle.AsSpan().CopyTo(destination);
    }

    /// <summary>
    /// Makes this process's default stream wait for a peer's progress event, as last recorded before this call
    /// (cuStreamWaitEvent takes the latest record; the caller orders the peer's record before it on the host).
    /// </summary>
    public void WaitForPeer(ReadOnlySpan<byte> exportedProgress)
    {
        string key = Convert.ToHexString(exportedProgress);
        if (!_openedEvents.TryGetValue(key, out var evt))
        {
            device.MakeCurrent();
            CudaException.Check(Cuda.cuIpcOpenEventHandle(out evt, CUipcEventHandle.FromBytes(exportedProgress)));
            _openedEvents[key] = evt;
        }
        device.MakeCurrent();
        CudaException.Check(Cuda.cuStreamWaitEvent(device.Stream(null), evt, 0));
    }

    public void Dispose()
    {
        device.MakeCurrent();
        foreach (var evt in _openedEvents.Values) Cuda.cuEventDestroy_v2(evt);
        _openedEvents.Clear();
        if (!_progress.IsNull) Cuda.cuEventDestroy_v2(_progress);
        _progress = default;
        foreach (ulong start in _opened.Values) Cuda.cuIpcCloseMemHandle(new CUdeviceptr(start));
        _opened.Clear();
    }
}
