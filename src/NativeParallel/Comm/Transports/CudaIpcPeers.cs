using NativeParallel.Devices;
using NativeParallel.Interop;

namespace NativeParallel.Comm.Transports;

/// <summary>
/// CUDA IPC between the processes sharing one GPU: a buffer is exported as (handle of its allocation, offset
/// into it), and a peer's export is opened once per allocation (the driver allows one open of a handle per
/// context, so opened allocations are cached) and addressed at base + offset.
/// </summary>
internal sealed unsafe class CudaIpcPeers(CudaDevice device) : IDisposable
{
    /// <summary>Bytes of one export: the 64-byte handle, then the offset.</summary>
    public const int ExportBytes = CUipcMemHandle.Size + sizeof(long);

    private readonly Dictionary<string, ulong> _opened = new(StringComparer.Ordinal);

    /// <summary>Writes the export of <paramref name="pointer"/> (a cuMemAlloc allocation, or inside one) into <paramref name="destination"/>.</summary>
    public void Export(ulong pointer, Span<byte> destination)
    {
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

    public void Dispose()
    {
        device.MakeCurrent();
        foreach (ulong start in _opened.Values) Cuda.cuIpcCloseMemHandle(new CUdeviceptr(start));
        _opened.Clear();
    }
}
