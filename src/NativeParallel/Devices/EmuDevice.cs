using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using System.Text;
using NativeParallel.Diagnostics;
using NativeParallel.Kernels;
using NativeParallel.Kernels.Gpu;

namespace NativeParallel.Devices;

/// <summary>
/// The emulated GPU: host memory, and the very kernels/*.cu source compiled by the host C++ compiler and run with
/// one fiber per CUDA thread (kernels/emu/). The CUDA device's host code (argument packing, grid math) runs
/// unchanged through each op file's launcher (Kernels/Ops/). <see cref="Schedule"/> picks the fiber interleaving, so running a
/// kernel under several schedules exposes races (missing barriers); <see cref="Sanitize"/> builds kernels with
/// AddressSanitizer and UndefinedBehaviorSanitizer (the process must have libasan preloaded).
/// Streams run for real: the default stream runs work on the issuing thread, every other stream on its own worker,
/// concurrently or deferred (<see cref="StreamOrder"/>), so a missing event between streams is a wrong result here
/// before it is a rare one on a GPU.
/// </summary>
public sealed unsafe class EmuDevice : HostMemoryDevice, IKernelLauncher
{
    private readonly ConcurrentDictionary<string, Lazy<Module>> _modules = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, bool> _reportedBuildFailures = new(StringComparer.Ordinal);
    private readonly EmuStream _defaultStream;
    private readonly List<EmuStream> _streams = new();

    // np_emu_launch(entry, args, kernel name, grid xyz, block xyz, schedule, workers, error, error bytes)
    private sealed class Module(EmuCompiler.Library library, nint handle, nint launch)
    {
        public EmuCompiler.Library Library { get; } = library;
        public nint Handle { get; } = handle;
        public delegate* unmanaged<nint, void*, byte*, uint, uint, uint, uint, uint, uint, uint, uint, byte*, int, int> Launch =>
            (delegate* unmanaged<nint, void*, byte*, uint, uint, uint, uint, uint, uint, uint, uint, byte*, int, int>)launch;
        public ConcurrentDictionary<string, nint> Entries { get; } = new(StringComparer.Ordinal);
    }

    /// <summary>Creates an emulated device; <paramref name="sanitize"/> builds kernels with ASan and UBSan.</summary>
    /// <exception cref="InvalidOperationException">No host C++ compiler is installed.</exception>
    public EmuDevice(bool sanitize = false)
    {
        if (EmuCompiler.UnavailableReason is { } reason) throw new InvalidOperationException($"the emulated device is unavailable: {reason}");
        Sanitize = sanitize;
        Kernels = NativeParallel.Kernels.Ops.OpKernels.Instance;
        _defaultStream = new EmuStream(this, inline: true);
        StreamOrder = Environment.GetEnvironmentVariable("NATIVEPARALLEL_EMU_STREAMS") switch
        {
            null or "" or "concurrent" => EmuStreamOrder.Concurrent,
            "deferred" => EmuStreamOrder.Deferred,
            var other => throw new ArgumentException($"NATIVEPARALLEL_EMU_STREAMS={other}: expected concurrent or deferred"),
        };
    }

    /// <summary>How work on streams other than the default one runs (NATIVEPARALLEL_EMU_STREAMS=concurrent|deferred; concurrent by default).</summary>
    public EmuStreamOrder StreamOrder { get; set; }

    /// <inheritdoc/>
    public override IDeviceStream DefaultStream => _defaultStream;

    /// <inheritdoc/>
    public override IDeviceStream CreateStream()
    {
        var stream = new EmuStream(this, inline: false);
        lock (_streams) _streams.Add(stream);
        return stream;
    }

    internal void Forget(EmuStream stream)
    {
        lock (_streams) _streams.Remove(stream);
    }

    private EmuStream[] LiveStreams()
    {
        lock (_streams) return _streams.ToArray();
    }

    /// <inheritdoc/>
    public override IDeviceEvent CreateEvent() => new EmuEvent(this);

    private EmuStream StreamOf(IDeviceStream? stream) => stream switch
    {
        null => (EmuStream)this.CurrentStream(),
        EmuStream mine when ReferenceEquals(mine.Device, this) => mine,
        _ => throw new ArgumentException($"emu: the stream belongs to {stream.Device.Name}, not to this device"),
    };

    /// <inheritdoc/>
    public override void CopyHostToDevice(ReadOnlySpan<byte> src, ulong dst, IDeviceStream? stream = null)
    {
        // The host's bytes may change once this returns: the stream's earlier work runs first, then the copy here.
        StreamOf(stream).Synchronize();
        base.CopyHostToDevice(src, dst);
    }

    /// <inheritdoc/>
    public override void CopyDeviceToHost(ulong src, Span<byte> dst, IDeviceStream? stream = null)
    {
        StreamOf(stream).Synchronize();
        base.CopyDeviceToHost(src, dst);
    }

    /// <inheritdoc/>
    public override void CopyDeviceToDevice(ulong src, ulong dst, long bytes, IDeviceStream? stream = null)
    {
        var s = StreamOf(stream);
        if (s.Inline) base.CopyDeviceToDevice(src, dst, bytes);
        else s.Enqueue(() => Buffer.MemoryCopy((void*)src, (void*)dst, bytes, bytes));
    }

    /// <inheritdoc/>
    public override void Memset(ulong dst, byte value, long bytes, IDeviceStream? stream = null)
    {
        var s = StreamOf(stream);
        if (s.Inline) base.Memset(dst, value, bytes);
        else s.Enqueue(() => NativeMemory.Fill((void*)dst, (nuint)bytes, value));
    }

    /// <inheritdoc/>
    public override void Synchronize()
    {
        foreach (var stream in LiveStreams()) stream.Synchronize();
        ReleasePassed();
    }

    // Memory freed while streams still had work queued: given back once each of those streams has passed the
    // point it had reached at the free (the fence a caching allocator keeps), never by making the streams run,
    // which would hide a missing event behind every free.
    private readonly List<(ulong Pointer, Action<ulong> Free, (EmuStream Stream, long Position)[] Fences)> _freedLater = new();

    /// <inheritdoc/>
    protected override void Release(ulong pointer, Action<ulong> free)
    {
        // Most frees happen with no stream but the default one: no fence to take, nothing waiting, no allocation.
        bool anyStream;
        lock (_streams) anyStream = _streams.Count > 0;
        if (!anyStream)
        {
            free(pointer);
            ReleasePassed();
            return;
        }
        var fences = LiveStreams().Where(s => s.Pending).Select(s => (s, s.Issued)).ToArray();
        if (fences.Length == 0) free(pointer);
        else lock (_freedLater) _freedLater.Add((pointer, free, fences));
        ReleasePassed();
    }

    private void ReleasePassed()
    {
        List<(ulong Pointer, Action<ulong> Free)>? ready = null;
        lock (_freedLater)
        {
            if (_freedLater.Count == 0) return;
            for (int i = _freedLater.Count - 1; i >= 0; i--)
            {
                if (!_freedLater[i].Fences.All(f => f.Stream.Passed(f.Position))) continue;
                (ready ??= new()).Add((_freedLater[i].Pointer, _freedLater[i].Free));
                _freedLater.RemoveAt(i);
            }
        }
        if (ready is null) return;
        foreach (var (p, free) in ready) free(p);
    }

    /// <inheritdoc/>
    public override void Dispose()
    {
        foreach (var stream in LiveStreams()) stream.Dispose();
        ReleasePassed();
        base.Dispose();
    }

    /// <summary>Fiber interleaving of later launches: 0 forward, 1 reverse, 2 and above seeded shuffles.</summary>
    public uint Schedule { get; set; }

    /// <summary>True when kernels are built with AddressSanitizer and UndefinedBehaviorSanitizer.</summary>
    public bool Sanitize { get; }

    /// <inheritdoc/>
    protected override bool ExactAllocations => Sanitize;

    /// <inheritdoc/>
    public override DeviceKind Kind => DeviceKind.Emu;

    /// <inheritdoc/>
    public override string Name => "emu";

    /// <inheritdoc/>
    public override string Description =>
        $"kernels/*.cu on CPU fibers, built by {EmuCompiler.Compiler.Version}, {MultiprocessorCount} worker threads{(Sanitize ? ", ASan + UBSan" : "")}";

    /// <inheritdoc/>
    public override IKernels Kernels { get; }

    /// <summary>Worker threads per launch (one per core): grids are sized as if each were a multiprocessor.</summary>
    public int MultiprocessorCount => Environment.ProcessorCount;

    /// <inheritdoc/>
    public void Launch<TArgs>(string file, string function, Dim3 grid, Dim3 block, uint sharedBytes, in TArgs args) where TArgs : unmanaged
    {
        // Host time: on CUDA the enqueue, on the emulated device's default stream the whole run.
        using var traced = Tracer.Launch(function, Name, grid.X, grid.Y, grid.Z, block.X, block.Y, block.Z, sharedBytes);
        var stream = (EmuStream)this.CurrentStream();
        if (stream.Inline)
        {
            Run(file, function, grid, block, args, Schedule);
            return;
        }
        // A queued launch keeps its own copy of the arguments and the schedule it was issued under; the module is
        // built now, so a build failure is the issuer's error, not the stream's.
        GetModule(file);
        TArgs copy = args;
        uint schedule = Schedule;
        // Traced, the stream's own lane shows when the launch really ran (its host span above is only the enqueue).
        var timing = Tracer.DeviceLaunch(this, stream, function, grid.X, grid.Y, grid.Z, block.X, block.Y, block.Z);
        timing?.Start.Record(stream);
        stream.Enqueue(() => Run(file, function, grid, block, copy, schedule));
        timing?.Stop.Record(stream);
    }

    private void Run<TArgs>(string file, string function, Dim3 grid, Dim3 block, TArgs copy, uint schedule) where TArgs : unmanaged
    {
        var module = GetModule(file);
        nint entry = module.Entries.GetOrAdd(function, name =>
            NativeLibrary.TryGetExport(module.Handle, "np_emu_entry_" + name, out nint address)
                ? address
                : throw new KernelLaunchException($"emu: no entry point '{name}' in kernels/{file}; it has {string.Join(", ", module.Library.EntryPoints)}", null));
        int nameLength = Encoding.UTF8.GetByteCount(function);
        byte* name = stackalloc byte[nameLength + 1];
        Encoding.UTF8.GetBytes(function, new Span<byte>(name, nameLength));
        name[nameLength] = 0;
        const int errorBytes = 4096;
        byte* error = stackalloc byte[errorBytes];
        int rc = module.Launch(entry, &copy, name, grid.X, grid.Y, grid.Z, block.X, block.Y, block.Z, schedule, (uint)MultiprocessorCount, error, errorBytes);
        if (rc != 0)
            throw new KernelLaunchException($"emu: {function} (kernels/{file}), grid {grid} block {block}, schedule {schedule}: " +
                Marshal.PtrToStringUTF8((nint)error), null);
    }

    // A file that fails to build fails once with the compiler's output; later launches say so in one line.
    private Module GetModule(string file)
    {
        var lazy = _modules.GetOrAdd(file, f => new Lazy<Module>(() => Load(f)));
        try
        {
            return lazy.Value;
        }
        catch (InvalidOperationException) when (!_reportedBuildFailures.TryAdd(file, true))
        {
            throw new KernelLaunchException($"emu: kernels/{file} did not build for the emulated device (the compiler output was reported with the first failure)", null);
        }
    }

    private Module Load(string file)
    {
        var library = EmuCompiler.Build(file, Sanitize);
        nint handle = NativeLibrary.Load(library.Path);
        return new Module(library, handle, NativeLibrary.GetExport(handle, "np_emu_launch"));
    }
}
