using NativeParallel.Comm;
using NativeParallel.Comm.Rendezvous;
using NativeParallel.Devices;
using NativeParallel.Interop;
using NativeParallel.Tensors;

namespace NativeParallel.Native;

/// <summary>
/// What an npComm_t stands for: one rank's <see cref="ProcessGroup"/>, and the CUDA devices its callers' buffers
/// have lived on (opened once each). Calls are blocking: a call on device buffers first waits for the caller's
/// stream, so earlier work on it has written the input, and returns once the output is written, so later work on
/// any stream sees it.
/// </summary>
internal sealed unsafe class Communicator(ProcessGroup group) : IDisposable
{
    private readonly Dictionary<int, CudaDevice> _gpus = [];

    public ProcessGroup Group { get; } = group;

    /// <summary>Joins rank <paramref name="rank"/> of <paramref name="ranks"/> at the store the id names.</summary>
    public static Communicator Join(int ranks, ReadOnlySpan<byte> id, int rank)
    {
        if (ranks < 1) throw new ArgumentException($"nranks must be at least 1; got {ranks}");
        if (rank < 0 || rank >= ranks) throw new ArgumentException($"rank {rank} is not a rank of {ranks} (0 to {ranks - 1})");
        var (address, port) = UniqueId.Decode(id);
        // Rank coordinates come from the caller, not a launcher: every rank counts as local to the store's host
        // until the rendezvous exchanges real host names (which choose shm or tcp).
        var job = new LaunchEnvironment(rank, ranks, rank, ranks, address, port, "npCommInitRank")
        {
            AddressSource = "npUniqueId",
            PortSource = "npUniqueId",
            Secret = UniqueId.Secret(id),
        };
        return new Communicator(ProcessGroup.Join(job, "npComm"));
    }

    /// <summary>
    /// A non-owning tensor of <paramref name="count"/> elements at <paramref name="pointer"/>: on the GPU that owns
    /// it when CUDA knows the address as device memory, else on the host.
    /// </summary>
    public Tensor Wrap(void* pointer, ulong count, DType dtype, string what)
    {
        if (count > int.MaxValue) throw new ArgumentException($"{what}: {count} elements is more than one call takes ({int.MaxValue}); split the buffer");
        if (pointer is null && count > 0) throw new ArgumentException($"{what} is NULL");
        ulong address = (ulong)pointer;
        return Tensor.Wrap(DeviceOf(address), address, dtype, (int)count);
    }

    /// <summary>Waits for the caller's stream (when given) so that the inputs are written before we read them.</summary>
    public static void WaitFor(void* stream)
    {
        if (stream is null) return;
        if (CudaDriver.UnavailableReason is { } reason)
            throw new ArgumentException($"a stream was passed but CUDA is unavailable ({reason}); pass NULL as the stream for host buffers");
        CudaException.Check(Cuda.cuStreamSynchronize(new CUstream((nint)stream)));
    }

    /// <summary>Waits for our own work on the GPUs the call touched, so the output is complete on return.</summary>
    public void Finish(params Tensor[] tensors)
    {
        foreach (var t in tensors)
            if (t.Device is CudaDevice gpu) gpu.CurrentStream().Synchronize(); // where the collective ordered its work
    }

    private IDevice DeviceOf(ulong address)
    {
        if (address == 0 || CudaDriver.UnavailableReason is not null) return CpuDevice.Instance;
        uint type = 0;
        // Host memory CUDA never saw answers CUDA_ERROR_INVALID_VALUE: it is the host's.
        if (Cuda.cuPointerGetAttribute(&type, CUpointer_attribute.MEMORY_TYPE, new CUdeviceptr(address)) != CUresult.CUDA_SUCCESS) return CpuDevice.Instance;
        if (type != (uint)CUmemorytype.DEVICE && type != (uint)CUmemorytype.UNIFIED) return CpuDevice.Instance;
        int ordinal = 0;
        CudaException.Check(Cuda.cuPointerGetAttribute(&ordinal, CUpointer_attribute.DEVICE_ORDINAL, new CUdeviceptr(address)));
        lock (_gpus)
        {
            if (!_gpus.TryGetValue(ordinal, out var gpu)) _gpus[ordinal] = gpu = CudaDevice.Open(ordinal);
            return gpu;
        }
    }

    public void Dispose()
    {
        Group.Dispose();
        lock (_gpus)
        {
            foreach (var gpu in _gpus.Values) gpu.Dispose();
            _gpus.Clear();
        }
    }
}
