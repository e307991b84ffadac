using System.Collections.Concurrent;
using System.Text;
using NativeParallel.Diagnostics;
using NativeParallel.Interop;
using NativeParallel.Kernels;
using NativeParallel.Kernels.Gpu;

namespace NativeParallel.Devices;

/// <summary>
/// An NVIDIA GPU through the CUDA driver API: the device's primary context, memory from cuMemAlloc, a default
/// stream and the thread's current stream (<see cref="CurrentStreams"/>) that kernels and copies are ordered on, and kernels/*.cu compiled by NVRTC for the device's
/// architecture on first use (cached on disk), loaded as modules and launched with one argument struct.
/// </summary>
public sealed unsafe class CudaDevice : IDevice, IKernelLauncher
{
    private readonly CUdevice _device;
    private readonly CUcontext _context;
    private readonly CudaStream _defaultStream;
    private readonly ConcurrentDictionary<string, Lazy<CUmodule>> _modules = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<(string File, string Function), CUfunction> _functions = new();
    private readonly BlockCache _blocks;
    private bool _disposed;

    private CudaDevice(int ordinal)
    {
        CudaDriver.EnsureInitialized();
        CudaException.Check(Cuda.cuDeviceGet(out _device, ordinal));
        CudaException.Check(Cuda.cuDevicePrimaryCtxRetain(out _context, _device));
        MakeCurrent();
        Ordinal = ordinal;
        ComputeCapability = (Attribute(CUdevice_attribute.COMPUTE_CAPABILITY_MAJOR), Attribute(CUdevice_attribute.COMPUTE_CAPABILITY_MINOR));
        MultiprocessorCount = Attribute(CUdevice_attribute.MULTIPROCESSOR_COUNT);
        CudaException.Check(Cuda.cuDeviceTotalMem_v2(out nuint total, _device));
        TotalMemoryBytes = (long)total;
        ModelName = ReadName();
        _defaultStream = new CudaStream(this);
        // Up to an eighth of the device's memory waits for reuse; the rest goes back to the driver when freed.
        _blocks = new BlockCache(TotalMemoryBytes / 8, p => CudaException.Check(Cuda.cuMemFree_v2(new CUdeviceptr(p))));
        Kernels = NativeParallel.Kernels.Ops.OpKernels.Instance;
        Log.Info($"opened cuda:{ordinal} {ModelName} sm_{ComputeCapability.Major}{ComputeCapability.Minor}, {MultiprocessorCount} SMs");
    }

    /// <summary>Opens GPU <paramref name="ordinal"/> (its primary context, shared with other libraries in the process).</summary>
    /// <exception cref="NativeLibraryNotFoundException">The CUDA driver library is not installed.</exception>
    /// <exception cref="CudaException">The driver refused (no such device, driver too old...).</exception>
    public static CudaDevice Open(int ordinal = 0) => new(ordinal);

    /// <summary>Device index.</summary>
    public int Ordinal { get; }

    /// <summary>The device's name as the driver reports it, e.g. "NVIDIA H100 80GB HBM3".</summary>
    public string ModelName { get; }

    /// <summary>Compute capability (9, 0) for Hopper.</summary>
    public (int Major, int Minor) ComputeCapability { get; }

    /// <summary>The real architecture name, e.g. sm_90.</summary>
    public string Arch => $"sm_{ComputeCapability.Major}{ComputeCapability.Minor}";

    /// <inheritdoc/>
    public int MultiprocessorCount { get; }

    /// <summary>Global memory in bytes.</summary>
    public long TotalMemoryBytes { get; }

    /// <inheritdoc/>
    public DeviceKind Kind => DeviceKind.Cuda;

    /// <inheritdoc/>
    public string Name => $"cuda:{Ordinal}";

    /// <inheritdoc/>
    public string Description => $"{ModelName}, {Arch}, {MultiprocessorCount} SMs, {TotalMemoryBytes / (1L << 30)} GiB";

    /// <inheritdoc/>
    public IKernels Kernels { get; }

    /// <inheritdoc/>
    public IDeviceStream DefaultStream => _defaultStream;

    /// <summary>The driver handle of <paramref name="stream"/>, or of the calling thread's current stream of this device when null.</summary>
    internal CUstream Stream(IDeviceStream? stream) => ((CudaStream)(stream ?? this.CurrentStream())).Handle;

    /// <summary>Makes this device's context current on the calling thread (every entry point does it).</summary>
    public void MakeCurrent() => CudaException.Check(Cuda.cuCtxSetCurrent(_context));

    private int Attribute(CUdevice_attribute attribute)
    {
        CudaException.Check(Cuda.cuDeviceGetAttribute(out int value, attribute, _device));
        return value;
    }

    private string ReadName()
    {
        byte* buffer = stackalloc byte[256];
        CudaException.Check(Cuda.cuDeviceGetName(buffer, 256, _device));
        return Encoding.UTF8.GetString(new ReadOnlySpan<byte>(buffer, 256).TrimEnd((byte)0)).Split('\0')[0];
    }

    /// <inheritdoc/>
    public DeviceBuffer Allocate(long bytes)
    {
        if (bytes < 0) throw new ArgumentOutOfRangeException(nameof(bytes), bytes, "allocation size must be non-negative");
        MakeCurrent();
        // Sizes are rounded so freed blocks fit later requests; 0 bytes still gets a valid, distinct block.
        long size = BlockCache.RoundUp(bytes);
        if (_blocks.TryTake(size, this.CurrentStream(), out ulong reused)) return new DeviceBuffer(this, reused, bytes, p => Free(size, p));
        var result = Cuda.cuMemAlloc_v2(out CUdeviceptr pointer, (nuint)size);
        if (result == CUresult.CUDA_ERROR_OUT_OF_MEMORY && _blocks.CachedBytes > 0)
        {
            // Cached blocks of other sizes may be what is missing: give them back and try once more.
            Synchronize();
            _blocks.Flush();
            result = Cuda.cuMemAlloc_v2(out pointer, (nuint)size);
        }
        if (result == CUresult.CUDA_ERROR_OUT_OF_MEMORY)
        {
            Cuda.cuMemGetInfo_v2(out nuint free, out nuint total);
            throw new OutOfMemoryException($"{Name}: cannot allocate {bytes} bytes; {free} of {total} bytes free on the device");
        }
        CudaException.Check(result);
        return new DeviceBuffer(this, pointer.Value, bytes, p => Free(size, p));
    }

    private void Free(long size, ulong pointer)
    {
        if (_disposed) return; // the context is gone with the device; the driver has reclaimed it
        MakeCurrent();
        // Work already queued on the freeing stream may still use the block: that stream may take it back at once
        // (its later work follows in order); any other stream only after the fence recorded here has passed.
        var stream = (CudaStream)this.CurrentStream();
        _blocks.Return(size, pointer, stream, FreeFence.Record(this, stream.Handle));
    }

    // Fences of freed blocks: events without timing, recycled, since every free records one.
    private readonly Stack<CUevent> _spareFenceEvents = new();

    private sealed class FreeFence : BlockCache.IFence
    {
        private readonly CudaDevice _owner;
        private readonly CUevent _event;

        private FreeFence(CudaDevice owner, CUevent evt)
        {
            _owner = owner;
            _event = evt;
        }

        public static FreeFence Record(CudaDevice owner, CUstream stream)
        {
            CUevent evt;
            lock (owner._spareFenceEvents)
                if (!owner._spareFenceEvents.TryPop(out evt)) CudaException.Check(Cuda.cuEventCreate(out evt, CUevent_flags.DISABLE_TIMING));
            CudaException.Check(Cuda.cuEventRecord(evt, stream));
            return new FreeFence(owner, evt);
        }

        public bool Passed
        {
            get
            {
                _owner.MakeCurrent();
                return Cuda.cuEventQuery(_event) == CUresult.CUDA_SUCCESS;
            }
        }

        public void Dispose()
        {
            if (_owner._disposed) return;
            lock (_owner._spareFenceEvents) _owner._spareFenceEvents.Push(_event);
        }
    }

    /// <inheritdoc/>
    public IDeviceStream CreateStream() => new CudaStream(this);

    /// <inheritdoc/>
    public IDeviceEvent CreateEvent() => new CudaEvent(this, timing: true);

    /// <summary>An event for ordering only (<paramref name="timing"/> false: DISABLE_TIMING, the cheaper record and wait), or one that can also time.</summary>
    internal IDeviceEvent CreateEvent(bool timing) => new CudaEvent(this, timing);

    /// <inheritdoc/>
    public void CopyHostToDevice(ReadOnlySpan<byte> src, ulong dst, IDeviceStream? stream = null)
    {
        MakeCurrent();
        var s = Stream(stream);
        fixed (byte* p = src)
        {
            CudaException.Check(Cuda.cuMemcpyHtoDAsync_v2(new CUdeviceptr(dst), p, (nuint)src.Length, s));
            // Pageable source: wait, so the caller may reuse the span when we return.
            CudaException.Check(Cuda.cuStreamSynchronize(s));
        }
    }

    /// <inheritdoc/>
    public void CopyDeviceToHost(ulong src, Span<byte> dst, IDeviceStream? stream = null)
    {
        MakeCurrent();
        var s = Stream(stream);
        fixed (byte* p = dst)
        {
            CudaException.Check(Cuda.cuMemcpyDtoHAsync_v2(p, new CUdeviceptr(src), (nuint)dst.Length, s));
            CudaException.Check(Cuda.cuStreamSynchronize(s));
        }
    }

    /// <inheritdoc/>
    public void CopyDeviceToDevice(ulong src, ulong dst, long bytes, IDeviceStream? stream = null)
    {
        MakeCurrent();
        CudaException.Check(Cuda.cuMemcpyDtoDAsync_v2(new CUdeviceptr(dst), new CUdeviceptr(src), (nuint)bytes, Stream(stream)));
    }

    /// <inheritdoc/>
    public void Memset(ulong dst, byte value, long bytes, IDeviceStream? stream = null)
    {
        MakeCurrent();
        CudaException.Check(Cuda.cuMemsetD8Async(new CUdeviceptr(dst), value, (nuint)bytes, Stream(stream)));
    }

    /// <inheritdoc/>
    public void Synchronize()
    {
        MakeCurrent();
        CudaException.Check(Cuda.cuCtxSynchronize());
    }

    /// <summary>The compile target for this device: its own sm_XY when NVRTC knows it, else PTX for the newest compute_XY below it (JIT by the driver).</summary>
    public string CompileTarget
    {
        get
        {
            int own = ComputeCapability.Major * 10 + ComputeCapability.Minor;
            var supported = Interop.NvrtcProgram.SupportedArchs();
            if (supported.Contains(own)) return $"sm_{own}";
            int best = supported.Where(a => a <= own).DefaultIfEmpty(0).Max();
            if (best == 0) throw new NotSupportedException($"{Name} is {Arch}; NVRTC {KernelCompiler.NvrtcVersion} supports none at or below it");
            Log.Warn($"NVRTC {KernelCompiler.NvrtcVersion} cannot target {Arch}; using PTX for compute_{best}, compiled by the driver");
            return $"compute_{best}";
        }
    }

    /// <summary>The function <paramref name="function"/> of kernel file <paramref name="file"/>, compiling and loading the module on first use.</summary>
    public CUfunction GetFunction(string file, string function) => _functions.GetOrAdd((file, function), key =>
    {
        // Lazy: two threads asking for a new file compile and load it once.
        var module = _modules.GetOrAdd(key.File, f => new Lazy<CUmodule>(() => LoadModule(f))).Value;
        MakeCurrent();
        var result = Cuda.cuModuleGetFunction(out CUfunction f, module, key.Function);
        if (result != CUresult.CUDA_SUCCESS)
            throw new KernelLaunchException($"{Name}: no entry point '{key.Function}' in kernels/{key.File} ({result}); check the extern \"C\" names in the file", null);
        return f;
    });

    private CUmodule LoadModule(string file)
    {
        var compiled = KernelCompiler.Compile(file, CompileTarget);
        MakeCurrent();
        fixed (byte* image = compiled.Image)
        {
            var result = Cuda.cuModuleLoadData(out CUmodule module, image);
            if (result != CUresult.CUDA_SUCCESS)
                throw new KernelLaunchException($"{Name}: cuModuleLoadData failed for kernels/{file} ({compiled.Arch}, {compiled.Image.Length} bytes): {result}. " +
                    "The driver may be older than the NVRTC that built it: update the driver or point NATIVEPARALLEL_NVRTC at an older NVRTC.",
                    CudaException.Create(result, "cuModuleLoadData"));
            return module;
        }
    }

    /// <inheritdoc/>
    public void Launch<TArgs>(string file, string function, Dim3 grid, Dim3 block, uint sharedBytes, in TArgs args) where TArgs : unmanaged
    {
        // Host time: on CUDA the enqueue, on the emulated device the whole run (it runs the kernel before returning).
        using var traced = Tracer.Launch(function, Name, grid.X, grid.Y, grid.Z, block.X, block.Y, block.Z, sharedBytes);
        var f = GetFunction(file, function);
        MakeCurrent();
        TArgs copy = args;
        void* parameter = &copy;
        var stream = this.CurrentStream();
        var timing = Tracer.DeviceLaunch(this, stream, function, grid.X, grid.Y, grid.Z, block.X, block.Y, block.Z);
        timing?.Start.Record(stream);
        var result = Cuda.cuLaunchKernel(f, grid.X, grid.Y, grid.Z, block.X, block.Y, block.Z, sharedBytes, Stream(stream), &parameter, null);
        timing?.Stop.Record(stream);
        if (result != CUresult.CUDA_SUCCESS)
            throw new KernelLaunchException($"{Name}: launch of {function} (kernels/{file}) failed, grid {grid} block {block} shared {sharedBytes} B",
                CudaException.Create(result, "cuLaunchKernel"));
    }

    /// <summary>Releases the modules and the primary context reference. Buffers still alive are reclaimed with the context.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        MakeCurrent();
        Cuda.cuCtxSynchronize();
        foreach (var module in _modules.Values.Where(m => m.IsValueCreated)) Cuda.cuModuleUnload(module.Value);
        _blocks.Flush();
        lock (_spareFenceEvents)
            while (_spareFenceEvents.TryPop(out var evt)) Cuda.cuEventDestroy_v2(evt);
        _defaultStream.Dispose();
        _disposed = true;
        Cuda.cuDevicePrimaryCtxRelease_v2(_device);
    }

    private sealed class CudaStream : IDeviceStream
    {
        private readonly CudaDevice _owner;

        public CudaStream(CudaDevice owner)
        {
            _owner = owner;
            owner.MakeCurrent();
            CudaException.Check(Cuda.cuStreamCreate(out var handle, CUstream_flags.NON_BLOCKING));
            Handle = handle;
        }

        public CUstream Handle { get; }

        public IDevice Device => _owner;

        public void Synchronize()
        {
            _owner.MakeCurrent();
            CudaException.Check(Cuda.cuStreamSynchronize(Handle));
        }

        public void Wait(IDeviceEvent evt)
        {
            _owner.MakeCurrent();
            CudaException.Check(Cuda.cuStreamWaitEvent(Handle, ((CudaEvent)evt).Handle, 0));
        }

        public void Dispose()
        {
            if (_owner._disposed) return;
            _owner.MakeCurrent();
            Cuda.cuStreamDestroy_v2(Handle);
        }
    }

    private sealed class CudaEvent : IDeviceEvent
    {
        private readonly CudaDevice _owner;

        public CudaEvent(CudaDevice owner, bool timing)
        {
            _owner = owner;
            owner.MakeCurrent();
            CudaException.Check(Cuda.cuEventCreate(out var handle, timing ? CUevent_flags.DEFAULT : CUevent_flags.DISABLE_TIMING));
            Handle = handle;
        }

        public CUevent Handle { get; }

        public void Record(IDeviceStream? stream = null)
        {
            _owner.MakeCurrent();
            CudaException.Check(Cuda.cuEventRecord(Handle, _owner.Stream(stream)));
        }

        public void Synchronize()
        {
            _owner.MakeCurrent();
            CudaException.Check(Cuda.cuEventSynchronize(Handle));
        }

        public double ElapsedMillisecondsSince(IDeviceEvent start)
        {
            _owner.MakeCurrent();
            CudaException.Check(Cuda.cuEventElapsedTime(out float ms, ((CudaEvent)start).Handle, Handle));
            return ms;
        }

        public void Dispose()
        {
            if (_owner._disposed) return;
            _owner.MakeCurrent();
            Cuda.cuEventDestroy_v2(Handle);
        }
    }
}

/// <summary>A kernel could not be loaded or launched; the message names the device, kernel, file and launch shape.</summary>
public sealed class KernelLaunchException(string message, Exception? inner) : Exception(message, inner);

/// <summary>Process-wide driver state: cuInit once, and whether any GPU is usable.</summary>
public static class CudaDriver
{
    private static readonly Lazy<(bool Ok, string Reason)> s_init = new(() =>
    {
        if (!NativeLibraries.TryLoad(NativeLibraryKind.Cuda, out _, out var tried))
            return (false, $"the CUDA driver library is not installed (tried {tried.Count} paths; set NATIVEPARALLEL_CUDA)");
        var result = Cuda.cuInit(0);
        return result == CUresult.CUDA_SUCCESS ? (true, "") : (false, $"cuInit failed: {result}");
    });

    /// <summary>Initialises the driver once; throws when it cannot be.</summary>
    public static void EnsureInitialized()
    {
        if (!s_init.Value.Ok) throw new InvalidOperationException($"CUDA is unavailable: {s_init.Value.Reason}");
    }

    /// <summary>Why CUDA is unavailable, or null when it is usable.</summary>
    public static string? UnavailableReason => s_init.Value.Ok ? (DeviceCount() > 0 ? null : "the driver reports no GPU") : s_init.Value.Reason;

    /// <summary>Number of GPUs; 0 when the driver is missing or reports none.</summary>
    public static int DeviceCount()
    {
        if (!s_init.Value.Ok) return 0;
        return Cuda.cuDeviceGetCount(out int count) == CUresult.CUDA_SUCCESS ? count : 0;
    }

    /// <summary>Driver version as "13.0" style text, or null when unavailable.</summary>
    public static string? DriverVersion()
    {
        if (!s_init.Value.Ok || Cuda.cuDriverGetVersion(out int v) != CUresult.CUDA_SUCCESS) return null;
        return $"{v / 1000}.{v % 1000 / 10}";
    }
}
