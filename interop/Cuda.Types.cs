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
    MAX_THREADS_PER_BLOCK = 1,
    MAX_BLOCK_DIM_X = 2,
    MAX_BLOCK_DIM_Y = 3,
    MAX_BLOCK_DIM_Z = 4,
    MAX_GRID_DIM_X = 5,
    MAX_GRID_DIM_Y = 6,
    MAX_GRID_DIM_Z = 7,
    /// <summary>Static shared memory a block may use without opting in (usually 48 KiB).</summary>
    MAX_SHARED_MEMORY_PER_BLOCK = 8,
    TOTAL_CONSTANT_MEMORY = 9,
    WARP_SIZE = 10,
    MAX_PITCH = 11,
    MAX_REGISTERS_PER_BLOCK = 12,
    /// <summary>Peak SM clock in kHz.</summary>
    CLOCK_RATE = 13,
    TEXTURE_ALIGNMENT = 14,
    GPU_OVERLAP = 15,
    MULTIPROCESSOR_COUNT = 16,
    KERNEL_EXEC_TIMEOUT = 17,
    INTEGRATED = 18,
    CAN_MAP_HOST_MEMORY = 19,
    COMPUTE_MODE = 20,
    CONCURRENT_KERNELS = 31,
    ECC_ENABLED = 32,
    PCI_BUS_ID = 33,
    PCI_DEVICE_ID = 34,
    TCC_DRIVER = 35,
    /// <summary>Peak memory clock in kHz.</summary>
    MEMORY_CLOCK_RATE = 36,
    /// <summary>Global memory bus width in bits.</summary>
    GLOBAL_MEMORY_BUS_WIDTH = 37,
    L2_CACHE_SIZE = 38,
    MAX_THREADS_PER_MULTIPROCESSOR = 39,
    ASYNC_ENGINE_COUNT = 40,
    UNIFIED_ADDRESSING = 41,
    PCI_DOMAIN_ID = 50,
    COMPUTE_CAPABILITY_MAJOR = 75,
    COMPUTE_CAPABILITY_MINOR = 76,
    STREAM_PRIORITIES_SUPPORTED = 78,
    GLOBAL_L1_CACHE_SUPPORTED = 79,
    LOCAL_L1_CACHE_SUPPORTED = 80,
    MAX_SHARED_MEMORY_PER_MULTIPROCESSOR = 81,
    MAX_REGISTERS_PER_MULTIPROCESSOR = 82,
    MANAGED_MEMORY = 83,
    MULTI_GPU_BOARD = 84,
    MULTI_GPU_BOARD_GROUP_ID = 85,
    HOST_NATIVE_ATOMIC_SUPPORTED = 86,
    SINGLE_TO_DOUBLE_PRECISION_PERF_RATIO = 87,
    PAGEABLE_MEMORY_ACCESS = 88,
    CONCURRENT_MANAGED_ACCESS = 89,
    COMPUTE_PREEMPTION_SUPPORTED = 90,
    CAN_USE_HOST_POINTER_FOR_REGISTERED_MEM = 91,
    COOPERATIVE_LAUNCH = 95,
    /// <summary>Largest dynamic shared memory a block can opt into with <c>cuFuncSetAttribute</c>.</summary>
    MAX_SHARED_MEMORY_PER_BLOCK_OPTIN = 97,
    CAN_FLUSH_REMOTE_WRITES = 98,
    HOST_REGISTER_SUPPORTED = 99,
    PAGEABLE_MEMORY_ACCESS_USES_HOST_PAGE_TABLES = 100,
    DIRECT_MANAGED_MEM_ACCESS_FROM_HOST = 101,
    MAX_BLOCKS_PER_MULTIPROCESSOR = 106,
    RESERVED_SHARED_MEMORY_PER_BLOCK = 111,
}

/// <summary>Kernel attributes for <c>cuFuncGetAttribute</c>/<c>cuFuncSetAttribute</c> (<c>CUfunction_attribute</c>).</summary>
public enum CUfunction_attribute
{
    MAX_THREADS_PER_BLOCK = 0,
    SHARED_SIZE_BYTES = 1,
    CONST_SIZE_BYTES = 2,
    LOCAL_SIZE_BYTES = 3,
    NUM_REGS = 4,
    PTX_VERSION = 5,
    BINARY_VERSION = 6,
    CACHE_MODE_CA = 7,
    /// <summary>Set this above 48 KiB before launching a kernel that needs more dynamic shared memory.</summary>
    MAX_DYNAMIC_SHARED_SIZE_BYTES = 8,
    PREFERRED_SHARED_MEMORY_CARVEOUT = 9,
}

/// <summary>Pointer attributes for <c>cuPointerGetAttribute</c> (<c>CUpointer_attribute</c>).</summary>
public enum CUpointer_attribute
{
    CONTEXT = 1,
    /// <summary>Returns a <see cref="CUmemorytype"/> (as a 32-bit value).</summary>
    MEMORY_TYPE = 2,
    DEVICE_POINTER = 3,
    HOST_POINTER = 4,
    P2P_TOKENS = 5,
    SYNC_MEMOPS = 6,
    BUFFER_ID = 7,
    IS_MANAGED = 8,
    DEVICE_ORDINAL = 9,
    IS_LEGACY_CUDA_IPC_CAPABLE = 10,
    RANGE_START_ADDR = 11,
    RANGE_SIZE = 12,
    MAPPED = 13,
}

/// <summary>Memory kinds reported by <see cref="CUpointer_attribute.MEMORY_TYPE"/> (<c>CUmemorytype</c>).</summary>
public enum CUmemorytype : uint
{
    HOST = 1,
    DEVICE = 2,
    ARRAY = 3,
    UNIFIED = 4,
}

/// <summary>JIT options for <c>cuModuleLoadDataEx</c> (<c>CUjit_option</c>).</summary>
public enum CUjit_option
{
    MAX_REGISTERS = 0,
    THREADS_PER_BLOCK = 1,
    WALL_TIME = 2,
    /// <summary>Value: pointer to a byte buffer that receives informational messages.</summary>
    INFO_LOG_BUFFER = 3,
    /// <summary>Value: buffer size in bytes (cast to a pointer); on return, bytes written.</summary>
    INFO_LOG_BUFFER_SIZE_BYTES = 4,
    /// <summary>Value: pointer to a byte buffer that receives error messages.</summary>
    ERROR_LOG_BUFFER = 5,
    /// <summary>Value: buffer size in bytes (cast to a pointer); on return, bytes written.</summary>
    ERROR_LOG_BUFFER_SIZE_BYTES = 6,
    OPTIMIZATION_LEVEL = 7,
    TARGET_FROM_CUCONTEXT = 8,
    TARGET = 9,
    FALLBACK_STRATEGY = 10,
    GENERATE_DEBUG_INFO = 11,
    LOG_VERBOSE = 12,
    GENERATE_LINE_INFO = 13,
    CACHE_MODE = 14,
}

/// <summary>Flags for <c>cuStreamCreate</c> (<c>CUstream_flags</c>).</summary>
[Flags]
public enum CUstream_flags : uint
{
    DEFAULT = 0,
    /// <summary>Do not synchronise with the legacy default stream.</summary>
    NON_BLOCKING = 1,
}

/// <summary>Flags for <c>cuEventCreate</c> (<c>CUevent_flags</c>).</summary>
[Flags]
public enum CUevent_flags : uint
{
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
    NONE = 0,
    PORTABLE = 1,
    DEVICEMAP = 2,
    WRITECOMBINED = 4,
}

/// <summary>Flags for <c>cuMemHostRegister_v2</c>.</summary>
[Flags]
public enum CUmemhostregister_flags : uint
{
    NONE = 0,
    PORTABLE = 1,
    DEVICEMAP = 2,
    IOMEMORY = 4,
    READ_ONLY = 8,
}

/// <summary>Flags for <c>cuIpcOpenMemHandle_v2</c> (<c>CUipcMem_flags</c>).</summary>
[Flags]
public enum CUipcMem_flags : uint
{
    NONE = 0,
    /// <summary><c>CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS</c>: enable peer access on demand. The driver requires this flag.</summary>
    CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS = 1,
}
