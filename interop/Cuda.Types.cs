using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace NativeParallel.Interop;

// Handle types are one-field structs rather than bare nint so that the compiler stops a stream
// being passed where an event is expected; they have the layout of the C handle, so the
// generated P/Invoke stubs pass them through unchanged.

/// <summary>A device address (<c>CUdeviceptr</c>, 64-bit on every supported platform).</summary>
public readonly record struct CUdeviceptr(ulong Value)
{
    /// <summary>The null device pointer.</summary>
    public static CUdeviceptr Null => default;

    /// <summary>Whether this is the null pointer.</summary>
    public bool IsNull => Value == 0;

    /// <summary>Pointer arithmetic in bytes.</summary>
    public static CUdeviceptr operator +(CUdeviceptr p, ulong bytes) => new(p.Value + bytes);

    /// <inheritdoc/>
    public override string ToString() => $"0x{Value:x}";
}

/// <summary>A device ordinal (<c>CUdevice</c>).</summary>
public readonly record struct CUdevice(int Ordinal);

/// <summary>A context handle (<c>CUcontext</c>).</summary>
public readonly record struct CUcontext(nint Handle)
{
    /// <summary>Whether this is the null handle.</summary>
    public bool IsNull => Handle == 0;
}

/// <summary>A loaded module handle (<c>CUmodule</c>).</summary>
public readonly record struct CUmodule(nint Handle)
{
    /// <summary>Whether this is the null handle.</summary>
    public bool IsNull => Handle == 0;
}

/// <summary>A kernel handle (<c>CUfunction</c>).</summary>
public readonly record struct CUfunction(nint Handle)
{
    /// <summary>Whether this is the null handle.</summary>
    public bool IsNull => Handle == 0;
}

/// <summary>A stream handle (<c>CUstream</c>). The default value is the legacy default stream.</summary>
public readonly record struct CUstream(nint Handle)
{
    /// <summary>The legacy default stream (handle 0).</summary>
    public static CUstream Default => default;

    /// <summary>The legacy default stream, named explicitly (<c>CU_STREAM_LEGACY</c>).</summary>
    public static CUstream Legacy => new(1);

    /// <summary>The calling thread's per-thread default stream (<c>CU_STREAM_PER_THREAD</c>).</summary>
    public static CUstream PerThread => new(2);
}

/// <summary>An event handle (<c>CUevent</c>).</summary>
public readonly record struct CUevent(nint Handle)
{
    /// <summary>Whether this is the null handle.</summary>
    public bool IsNull => Handle == 0;
}

/// <summary>
/// An opaque inter-process memory handle (<c>CUipcMemHandle</c>, 64 bytes). It is plain data:
/// copy it with <see cref="ToArray"/> to send it to another process and rebuild it there with
/// <see cref="FromBytes"/>.
/// </summary>
[StructLayout(LayoutKind.Sequential, Size = Size)]
public unsafe struct CUipcMemHandle
{
    /// <summary>Size of the handle in bytes (<c>CU_IPC_HANDLE_SIZE</c>).</summary>
    public const int Size = 64;

    private fixed byte _reserved[Size];

    /// <summary>The handle's bytes, in place.</summary>
    [UnscopedRef]
    public Span<byte> AsSpan() => MemoryMarshal.CreateSpan(ref _reserved[0], Size);

    /// <summary>A copy of the handle's bytes.</summary>
    public readonly byte[] ToArray()
    {
        var a = new byte[Size];
        fixed (byte* p = _reserved)
            new ReadOnlySpan<byte>(p, Size).CopyTo(a);
        return a;
    }

    /// <summary>Rebuilds a handle from exactly <see cref="Size"/> bytes.</summary>
    public static CUipcMemHandle FromBytes(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length != Size)
            throw new ArgumentException($"A CUipcMemHandle is {Size} bytes, got {bytes.Length}.", nameof(bytes));
        CUipcMemHandle h = default;
        bytes.CopyTo(h.AsSpan());
        return h;
    }
}

/// <summary>An opaque inter-process event handle (<c>CUipcEventHandle</c>, 64 bytes).</summary>
[StructLayout(LayoutKind.Sequential, Size = Size)]
public unsafe struct CUipcEventHandle
{
    /// <summary>Size of the handle in bytes (<c>CU_IPC_HANDLE_SIZE</c>).</summary>
    public const int Size = 64;

    private fixed byte _reserved[Size];

    /// <summary>The handle's bytes, in place.</summary>
    [UnscopedRef]
    public Span<byte> AsSpan() => MemoryMarshal.CreateSpan(ref _reserved[0], Size);

    /// <summary>A copy of the handle's bytes.</summary>
    public readonly byte[] ToArray()
    {
        var a = new byte[Size];
        fixed (byte* p = _reserved)
            new ReadOnlySpan<byte>(p, Size).CopyTo(a);
        return a;
    }

    /// <summary>Rebuilds a handle from exactly <see cref="Size"/> bytes.</summary>
    public static CUipcEventHandle FromBytes(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length != Size)
            throw new ArgumentException($"A CUipcEventHandle is {Size} bytes, got {bytes.Length}.", nameof(bytes));
        CUipcEventHandle h = default;
        bytes.CopyTo(h.AsSpan());
        return h;
    }
}

/// <summary>A device UUID (<c>CUuuid</c>, 16 bytes).</summary>
[StructLayout(LayoutKind.Sequential, Size = 16)]
public unsafe struct CUuuid
{
    private fixed byte _bytes[16];

    /// <summary>A copy of the 16 bytes.</summary>
    public readonly byte[] ToArray()
    {
        var a = new byte[16];
        fixed (byte* p = _bytes)
            new ReadOnlySpan<byte>(p, 16).CopyTo(a);
        return a;
    }

    /// <summary>The UUID in nvidia-smi's format, <c>GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx</c>.</summary>
    public override readonly string ToString()
    {
        // The bytes are in display order, which is Guid's big-endian reading.
        return "GPU-" + new Guid(ToArray(), bigEndian: true).ToString("D");
    }
}

/// <summary>Device attributes for <c>cuDeviceGetAttribute</c> (<c>CUdevice_attribute</c>; values from <c>cuda.h</c>).</summary>
public enum CUdevice_attribute
{
    /// <summary>Most threads in one block.</summary>
    MAX_THREADS_PER_BLOCK = 1,
    /// <summary>Largest block extent in x.</summary>
    MAX_BLOCK_DIM_X = 2,
    /// <summary>Largest block extent in y.</summary>
    MAX_BLOCK_DIM_Y = 3,
    /// <summary>Largest block extent in z.</summary>
    MAX_BLOCK_DIM_Z = 4,
    /// <summary>Largest grid extent in x.</summary>
    MAX_GRID_DIM_X = 5,
    /// <summary>Largest grid extent in y.</summary>
    MAX_GRID_DIM_Y = 6,
    /// <summary>Largest grid extent in z.</summary>
    MAX_GRID_DIM_Z = 7,
    /// <summary>Static shared memory a block may use without opting in (usually 48 KiB).</summary>
    MAX_SHARED_MEMORY_PER_BLOCK = 8,
    /// <summary>Constant memory on the device, in bytes.</summary>
    TOTAL_CONSTANT_MEMORY = 9,
    /// <summary>Threads per warp (32 on every NVIDIA GPU so far).</summary>
    WARP_SIZE = 10,
    /// <summary>Largest pitch of a pitched allocation, in bytes.</summary>
    MAX_PITCH = 11,
    /// <summary>32-bit registers available to one block.</summary>
    MAX_REGISTERS_PER_BLOCK = 12,
    /// <summary>Peak SM clock in kHz.</summary>
    CLOCK_RATE = 13,
    /// <summary>Alignment required of texture base addresses, in bytes.</summary>
    TEXTURE_ALIGNMENT = 14,
    /// <summary>Deprecated: 1 when the device can copy while it runs a kernel (see ASYNC_ENGINE_COUNT).</summary>
    GPU_OVERLAP = 15,
    /// <summary>Number of streaming multiprocessors.</summary>
    MULTIPROCESSOR_COUNT = 16,
    /// <summary>1 when a watchdog limits kernel run time (a display is attached).</summary>
    KERNEL_EXEC_TIMEOUT = 17,
    /// <summary>1 for an integrated GPU sharing memory with the host.</summary>
    INTEGRATED = 18,
    /// <summary>1 when host memory can be mapped into the device's address space.</summary>
    CAN_MAP_HOST_MEMORY = 19,
    /// <summary>The compute mode (default, exclusive process, prohibited).</summary>
    COMPUTE_MODE = 20,
    /// <summary>1 when kernels of one context can run concurrently.</summary>
    CONCURRENT_KERNELS = 31,
    /// <summary>1 when ECC is on.</summary>
    ECC_ENABLED = 32,
    /// <summary>PCI bus number.</summary>
    PCI_BUS_ID = 33,
    /// <summary>PCI device (slot) number.</summary>
    PCI_DEVICE_ID = 34,
    /// <summary>1 when the device runs the Windows TCC driver.</summary>
    TCC_DRIVER = 35,
    /// <summary>Peak memory clock in kHz.</summary>
    MEMORY_CLOCK_RATE = 36,
    /// <summary>Global memory bus width in bits.</summary>
    GLOBAL_MEMORY_BUS_WIDTH = 37,
    /// <summary>L2 cache size in bytes.</summary>
    L2_CACHE_SIZE = 38,
    /// <summary>Most resident threads per multiprocessor.</summary>
    MAX_THREADS_PER_MULTIPROCESSOR = 39,
    /// <summary>Copy engines: how many copies can run while kernels run.</summary>
    ASYNC_ENGINE_COUNT = 40,
    /// <summary>1 when the device shares one virtual address space with the host (UVA).</summary>
    UNIFIED_ADDRESSING = 41,
    /// <summary>PCI domain number.</summary>
    PCI_DOMAIN_ID = 50,
    /// <summary>Compute capability, major number (9 for sm_90).</summary>
    COMPUTE_CAPABILITY_MAJOR = 75,
    /// <summary>Compute capability, minor number.</summary>
    COMPUTE_CAPABILITY_MINOR = 76,
    /// <summary>1 when streams can have priorities.</summary>
    STREAM_PRIORITIES_SUPPORTED = 78,
    /// <summary>1 when global memory accesses can be cached in L1.</summary>
    GLOBAL_L1_CACHE_SUPPORTED = 79,
    /// <summary>1 when local memory accesses can be cached in L1.</summary>
    LOCAL_L1_CACHE_SUPPORTED = 80,
    /// <summary>Shared memory per multiprocessor, in bytes.</summary>
    MAX_SHARED_MEMORY_PER_MULTIPROCESSOR = 81,
    /// <summary>32-bit registers per multiprocessor.</summary>
    MAX_REGISTERS_PER_MULTIPROCESSOR = 82,
    /// <summary>1 when the device supports managed (unified) memory.</summary>
    MANAGED_MEMORY = 83,
    /// <summary>1 when the device is on a multi-GPU board.</summary>
    MULTI_GPU_BOARD = 84,
    /// <summary>Identifier shared by the GPUs of one multi-GPU board.</summary>
    MULTI_GPU_BOARD_GROUP_ID = 85,
    /// <summary>1 when atomics between host and device are native over the link.</summary>
    HOST_NATIVE_ATOMIC_SUPPORTED = 86,
    /// <summary>Ratio of single- to double-precision throughput.</summary>
    SINGLE_TO_DOUBLE_PRECISION_PERF_RATIO = 87,
    /// <summary>1 when the device can access pageable host memory coherently.</summary>
    PAGEABLE_MEMORY_ACCESS = 88,
    /// <summary>1 when the device and the host can access managed memory at the same time.</summary>
    CONCURRENT_MANAGED_ACCESS = 89,
    /// <summary>1 when compute work can be preempted.</summary>
    COMPUTE_PREEMPTION_SUPPORTED = 90,
    /// <summary>1 when registered host memory has the same address on the device.</summary>
    CAN_USE_HOST_POINTER_FOR_REGISTERED_MEM = 91,
    /// <summary>1 when cooperative launches are supported.</summary>
    COOPERATIVE_LAUNCH = 95,
    /// <summary>Largest dynamic shared memory a block can opt into with <c>cuFuncSetAttribute</c>.</summary>
    MAX_SHARED_MEMORY_PER_BLOCK_OPTIN = 97,
    /// <summary>1 when remote writes can be flushed (cuFlushGPUDirectRDMAWrites).</summary>
    CAN_FLUSH_REMOTE_WRITES = 98,
    /// <summary>1 when cuMemHostRegister is supported.</summary>
    HOST_REGISTER_SUPPORTED = 99,
    /// <summary>1 when the device reads pageable memory through the host's page tables.</summary>
    PAGEABLE_MEMORY_ACCESS_USES_HOST_PAGE_TABLES = 100,
    /// <summary>1 when the host can access managed memory on the device without migration.</summary>
    DIRECT_MANAGED_MEM_ACCESS_FROM_HOST = 101,
    /// <summary>Most resident blocks per multiprocessor.</summary>
    MAX_BLOCKS_PER_MULTIPROCESSOR = 106,
    /// <summary>Shared memory the system reserves per block, in bytes.</summary>
    RESERVED_SHARED_MEMORY_PER_BLOCK = 111,
}

/// <summary>Kernel attributes for <c>cuFuncGetAttribute</c>/<c>cuFuncSetAttribute</c> (<c>CUfunction_attribute</c>).</summary>
public enum CUfunction_attribute
{
    /// <summary>Most threads per block this kernel can launch with (its register use limits it).</summary>
    MAX_THREADS_PER_BLOCK = 0,
    /// <summary>Static shared memory of the kernel, in bytes.</summary>
    SHARED_SIZE_BYTES = 1,
    /// <summary>Constant memory of the kernel, in bytes.</summary>
    CONST_SIZE_BYTES = 2,
    /// <summary>Local memory per thread (spills and stack), in bytes.</summary>
    LOCAL_SIZE_BYTES = 3,
    /// <summary>Registers per thread.</summary>
    NUM_REGS = 4,
    /// <summary>PTX virtual architecture the kernel was compiled for (major × 10 + minor).</summary>
    PTX_VERSION = 5,
    /// <summary>Binary architecture of the kernel (major × 10 + minor).</summary>
    BINARY_VERSION = 6,
    /// <summary>1 when the kernel was compiled with global loads cached in L1 (-Xptxas -dlcm=ca).</summary>
    CACHE_MODE_CA = 7,
    /// <summary>Set this above 48 KiB before launching a kernel that needs more dynamic shared memory.</summary>
    MAX_DYNAMIC_SHARED_SIZE_BYTES = 8,
    /// <summary>Preferred share of L1/shared memory given to shared memory, in percent.</summary>
    PREFERRED_SHARED_MEMORY_CARVEOUT = 9,
}

/// <summary>Pointer attributes for <c>cuPointerGetAttribute</c> (<c>CUpointer_attribute</c>).</summary>
public enum CUpointer_attribute
{
    /// <summary>The context the memory belongs to.</summary>
    CONTEXT = 1,
    /// <summary>Returns a <see cref="CUmemorytype"/> (as a 32-bit value).</summary>
    MEMORY_TYPE = 2,
    /// <summary>The address to use on the device.</summary>
    DEVICE_POINTER = 3,
    /// <summary>The address to use on the host (mapped or managed memory).</summary>
    HOST_POINTER = 4,
    /// <summary>Tokens for GPUDirect RDMA (nvidia-p2p).</summary>
    P2P_TOKENS = 5,
    /// <summary>1 when synchronous memory operations on the range are forced to synchronise.</summary>
    SYNC_MEMOPS = 6,
    /// <summary>A process-unique identifier of the allocation.</summary>
    BUFFER_ID = 7,
    /// <summary>1 when the memory is managed.</summary>
    IS_MANAGED = 8,
    /// <summary>Ordinal of the device the memory is on.</summary>
    DEVICE_ORDINAL = 9,
    /// <summary>1 when the memory can be exported with cuIpcGetMemHandle.</summary>
    IS_LEGACY_CUDA_IPC_CAPABLE = 10,
    /// <summary>Start address of the allocation containing the pointer.</summary>
    RANGE_START_ADDR = 11,
    /// <summary>Size in bytes of the allocation containing the pointer.</summary>
    RANGE_SIZE = 12,
    /// <summary>1 when the range is mapped (virtual memory management).</summary>
    MAPPED = 13,
}

/// <summary>Memory kinds reported by <see cref="CUpointer_attribute.MEMORY_TYPE"/> (<c>CUmemorytype</c>).</summary>
public enum CUmemorytype : uint
{
    /// <summary>Host memory.</summary>
    HOST = 1,
    /// <summary>Device memory.</summary>
    DEVICE = 2,
    /// <summary>A CUDA array.</summary>
    ARRAY = 3,
    /// <summary>Unified (managed) memory.</summary>
    UNIFIED = 4,
}

/// <summary>JIT options for <c>cuModuleLoadDataEx</c> (<c>CUjit_option</c>).</summary>
public enum CUjit_option
{
    /// <summary>Value: the most registers per thread the JIT may use.</summary>
    MAX_REGISTERS = 0,
    /// <summary>Value: block size to compile for; on return, the size reached.</summary>
    THREADS_PER_BLOCK = 1,
    /// <summary>On return: compile time in milliseconds (a float).</summary>
    WALL_TIME = 2,
    /// <summary>Value: pointer to a byte buffer that receives informational messages.</summary>
    INFO_LOG_BUFFER = 3,
    /// <summary>Value: buffer size in bytes (cast to a pointer); on return, bytes written.</summary>
    INFO_LOG_BUFFER_SIZE_BYTES = 4,
    /// <summary>Value: pointer to a byte buffer that receives error messages.</summary>
    ERROR_LOG_BUFFER = 5,
    /// <summary>Value: buffer size in bytes (cast to a pointer); on return, bytes written.</summary>
    ERROR_LOG_BUFFER_SIZE_BYTES = 6,
    /// <summary>Value: optimisation level 0 to 4 (default 4).</summary>
    OPTIMIZATION_LEVEL = 7,
    /// <summary>Compile for the current context's device (no value).</summary>
    TARGET_FROM_CUCONTEXT = 8,
    /// <summary>Value: a CUjit_target (compute capability) to compile for.</summary>
    TARGET = 9,
    /// <summary>Value: prefer PTX or binary when no exact match exists.</summary>
    FALLBACK_STRATEGY = 10,
    /// <summary>Value: 1 to generate debug information.</summary>
    GENERATE_DEBUG_INFO = 11,
    /// <summary>Value: 1 for verbose log messages.</summary>
    LOG_VERBOSE = 12,
    /// <summary>Value: 1 to generate line-number information.</summary>
    GENERATE_LINE_INFO = 13,
    /// <summary>Value: the global-load caching mode (CUjit_cacheMode).</summary>
    CACHE_MODE = 14,
}

/// <summary>Flags for <c>cuStreamCreate</c> (<c>CUstream_flags</c>).</summary>
[Flags]
public enum CUstream_flags : uint
{
    /// <summary>Synchronise with the legacy default stream (CU_STREAM_DEFAULT).</summary>
    DEFAULT = 0,
    /// <summary>Do not synchronise with the legacy default stream.</summary>
    NON_BLOCKING = 1,
}

/// <summary>Flags for <c>cuEventCreate</c> (<c>CUevent_flags</c>).</summary>
[Flags]
public enum CUevent_flags : uint
{
    /// <summary>Timing enabled, spinning waits (CU_EVENT_DEFAULT).</summary>
    DEFAULT = 0,
    /// <summary>Waiting threads block instead of spinning.</summary>
    BLOCKING_SYNC = 1,
    /// <summary>No timestamps: cheaper, for pure synchronisation events.</summary>
    DISABLE_TIMING = 2,
    /// <summary>Shareable between processes; requires <see cref="DISABLE_TIMING"/>.</summary>
    INTERPROCESS = 4,
}

/// <summary>Flags for <c>cuMemHostAlloc</c>.</summary>
[Flags]
public enum CUmemhostalloc_flags : uint
{
    /// <summary>Pinned memory for the current context only.</summary>
    NONE = 0,
    /// <summary>Pinned for every context, not only the current one.</summary>
    PORTABLE = 1,
    /// <summary>Mapped into the device's address space.</summary>
    DEVICEMAP = 2,
    /// <summary>Write-combined: fast host writes and device reads over PCIe, slow host reads.</summary>
    WRITECOMBINED = 4,
}

/// <summary>Flags for <c>cuMemHostRegister_v2</c>.</summary>
[Flags]
public enum CUmemhostregister_flags : uint
{
    /// <summary>Register the range for the current context only.</summary>
    NONE = 0,
    /// <summary>Registered for every context.</summary>
    PORTABLE = 1,
    /// <summary>Mapped into the device's address space.</summary>
    DEVICEMAP = 2,
    /// <summary>The range is I/O memory of a third-party device.</summary>
    IOMEMORY = 4,
    /// <summary>The device only reads the range.</summary>
    READ_ONLY = 8,
}

/// <summary>Flags for <c>cuIpcOpenMemHandle_v2</c> (<c>CUipcMem_flags</c>).</summary>
[Flags]
public enum CUipcMem_flags : uint
{
    /// <summary>No flags (the driver rejects it: use CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS).</summary>
    NONE = 0,
    /// <summary><c>CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS</c>: enable peer access on demand. The driver requires this flag.</summary>
    CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS = 1,
}
