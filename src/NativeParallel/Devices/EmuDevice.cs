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
/// unchanged through <see cref="GpuKernels"/>. <see cref="Schedule"/> picks the fiber interleaving, so running a
/// kernel under several schedules exposes races (missing barriers); <see cref="Sanitize"/> builds kernels with
/// AddressSanitizer and UndefinedBehaviorSanitizer (the process must have libasan preloaded).
/// </summary>
public sealed unsafe class EmuDevice : HostMemoryDevice, IKernelLauncher
{
    private readonly ConcurrentDictionary<string, Lazy<Module>> _modules = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, bool> _reportedBuildFailures = new(StringComparer.Ordinal);

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
        Kernels = new TracedKernels(new GpuKernels(this));
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
        // Host time: on CUDA the enqueue, on the emulated device the whole run (it runs the kernel before returning).
        using var traced = Tracer.Launch(function, Name, grid.X, grid.Y, grid.Z, block.X, block.Y, block.Z, sharedBytes);
        var module = GetModule(file);
        nint entry = module.Entries.GetOrAdd(function, name =>
            NativeLibrary.TryGetExport(module.Handle, "np_emu_entry_" + name, out nint address)
                ? address
                : throw new KernelLaunchException($"emu: no entry point '{name}' in kernels/{file}; it has {string.Join(", ", module.Library.EntryPoints)}", null));
        TArgs copy = args;
        int nameLength = Encoding.UTF8.GetByteCount(function);
        byte* name = stackalloc byte[nameLength + 1];
        Encoding.UTF8.GetBytes(function, new Span<byte>(name, nameLength));
        name[nameLength] = 0;
        const int errorBytes = 4096;
        byte* error = stackalloc byte[errorBytes];
        int rc = module.Launch(entry, &copy, name, grid.X, grid.Y, grid.Z, block.X, block.Y, block.Z, Schedule, (uint)MultiprocessorCount, error, errorBytes);
        if (rc != 0)
            throw new KernelLaunchException($"emu: {function} (kernels/{file}), grid {grid} block {block}, schedule {Schedule}: " +
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
