using NativeParallel.Devices;
using NativeParallel.Diagnostics;
using NativeParallel.Interop;
using NativeParallel.Kernels;

namespace NativeParallel.Cli.Commands;

/// <summary><c>nativeparallel info</c>: what this machine offers the runtime.</summary>
internal static class InfoCommand
{
    public static int Run(CommandLine line)
    {
        if (Entry.HelpRequested(line)) return 0;
        string? json = line.Option("json");
        line.RejectUnknown();

        var devices = new List<object> { new { name = "cpu", description = CpuDevice.Instance.Description } };
        Console.WriteLine($"cpu        {CpuDevice.Instance.Description}");
        string? cudaReason = CudaDriver.UnavailableReason;
        string? driver = CudaDriver.DriverVersion();
        if (cudaReason is null)
        {
            for (int i = 0; i < CudaDriver.DeviceCount(); i++)
            {
                using var gpu = CudaDevice.Open(i);
                Console.WriteLine($"{gpu.Name,-10} {gpu.Description}");
                devices.Add(new { name = gpu.Name, description = gpu.Description, arch = gpu.Arch });
            }
        }
        Console.WriteLine($"cuda       {(cudaReason is null ? $"driver {driver}, {NativeLibraries.LoadedPath(NativeLibraryKind.Cuda)}" : $"unavailable: {cudaReason}")}");

        string nvrtc = NativeLibraries.IsAvailable(NativeLibraryKind.Nvrtc)
            ? $"{KernelCompiler.NvrtcVersion}, {NativeLibraries.LoadedPath(NativeLibraryKind.Nvrtc)}, targets {string.Join(' ', KernelCompiler.SupportedArchs())}"
            : "unavailable (install libnvrtc, or set NATIVEPARALLEL_NVRTC)";
        Console.WriteLine($"nvrtc      {nvrtc}");
        string? builtinsPath = NativeLibraries.NvrtcBuiltinsPath;
        string builtins = builtinsPath
            ?? (NativeLibraries.IsAvailable(NativeLibraryKind.Nvrtc) ? "not found beside NVRTC (left to the system loader)" : "unavailable");
        Console.WriteLine($"builtins   {builtins}");
        string cublas = NativeLibraries.IsAvailable(NativeLibraryKind.Cublas)
            ? $"{NativeLibraries.LoadedPath(NativeLibraryKind.Cublas)}"
            : "unavailable (install cuBLAS, or set NATIVEPARALLEL_CUBLAS)";
        Console.WriteLine($"cublas     {cublas}");
        string emu = EmuCompiler.UnavailableReason is { } why ? $"unavailable: {why}" : $"{EmuCompiler.Compiler.Version} ({EmuCompiler.Compiler.Path})";
        Console.WriteLine($"emu        {emu}");
        Console.WriteLine($"cache      {Tunables.KernelCacheDir ?? "off"}");
        Console.WriteLine($"kernels    {KernelSources.Files.Count} files: {string.Join(' ', KernelSources.Files)}");
        foreach (var (name, _) in Tunables.All)
        {
            string? value = Tunables.Raw(name);
            if (value is not null) Console.WriteLine($"env        {name}={value}");
        }
        JsonReport.Write(json, "info", line, new
        {
            devices,
            cuda = cudaReason is null ? $"driver {driver}" : $"unavailable: {cudaReason}",
            nvrtc,
            nvrtcPath = NativeLibraries.LoadedPath(NativeLibraryKind.Nvrtc),
            nvrtcBuiltins = builtinsPath,
            cublas,
            emu,
            cache = Tunables.KernelCacheDir,
            kernels = KernelSources.Files,
        });
        return 0;
    }
}
