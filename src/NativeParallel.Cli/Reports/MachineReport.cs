using System.Runtime.InteropServices;
using System.Text;
using NativeParallel.Devices;
using NativeParallel.Interop;
using NativeParallel.Kernels;

namespace NativeParallel.Cli.Reports;

/// <summary>One GPU as the driver names it, read without creating a context.</summary>
internal sealed record GpuReport(int Ordinal, string Name, string Arch, long MemoryBytes);

/// <summary>
/// The machine a result was measured on, for --json reports: CPU model and logical cores, memory, OS, .NET, the CUDA
/// driver (its CUDA version, and the NVIDIA kernel module's version on Linux) and GPUs where present, and NVRTC where
/// found. Null means absent (no GPU driver, no NVRTC), never unknown.
/// </summary>
internal sealed record MachineReport(
    string Host, string CpuModel, int LogicalCores, long MemoryBytes, string Os, string Architecture, string Dotnet,
    string? CudaDriver, string? NvidiaDriver, IReadOnlyList<GpuReport> Gpus, string? Nvrtc)
{
    private static readonly Lazy<MachineReport> s_current = new(Read);

    /// <summary>This machine, read once per process.</summary>
    public static MachineReport Current => s_current.Value;

    private static MachineReport Read()
    {
        var gpus = new List<GpuReport>();
        string? driver = null;
        if (NativeParallel.Devices.CudaDriver.UnavailableReason is null)
        {
            driver = NativeParallel.Devices.CudaDriver.DriverVersion();
            for (int i = 0; i < NativeParallel.Devices.CudaDriver.DeviceCount(); i++)
                if (ReadGpu(i) is { } gpu) gpus.Add(gpu);
        }
        string? nvrtc = NativeLibraries.IsAvailable(NativeLibraryKind.Nvrtc) ? KernelCompiler.NvrtcVersion : null;
        return new MachineReport(Environment.MachineName, ReadCpuModel(), Environment.ProcessorCount, ReadMemoryBytes(),
            RuntimeInformation.OSDescription, RuntimeInformation.OSArchitecture.ToString().ToLowerInvariant(), RuntimeInformation.FrameworkDescription,
            driver, ReadNvidiaDriver(), gpus, nvrtc);
    }

    // The name and limits of GPU `ordinal` straight from the driver: opening a CudaDevice would create a context,
    // which a report has no use for.
    private static unsafe GpuReport? ReadGpu(int ordinal)
    {
        if (Cuda.cuDeviceGet(out var device, ordinal) != CUresult.CUDA_SUCCESS) return null;
        byte* buffer = stackalloc byte[256];
        string name = Cuda.cuDeviceGetName(buffer, 256, device) == CUresult.CUDA_SUCCESS
            ? Encoding.UTF8.GetString(new ReadOnlySpan<byte>(buffer, 256)).Split('\0')[0] : "unknown";
        Cuda.cuDeviceGetAttribute(out int major, CUdevice_attribute.COMPUTE_CAPABILITY_MAJOR, device);
        Cuda.cuDeviceGetAttribute(out int minor, CUdevice_attribute.COMPUTE_CAPABILITY_MINOR, device);
        Cuda.cuDeviceTotalMem_v2(out nuint bytes, device);
        return new GpuReport(ordinal, name, $"sm_{major}{minor}", (long)bytes);
    }

    // The kernel module's version as nvidia-smi shows it ("550.54.15"), from /proc/driver/nvidia/version: the CUDA
    // driver API only tells the CUDA version it supports.
    private static string? ReadNvidiaDriver()
    {
        try
        {
            const string path = "/proc/driver/nvidia/version";
            if (!File.Exists(path)) return null;
            return NvidiaDriverVersion(File.ReadLines(path).FirstOrDefault() ?? "");
        }
        catch (IOException) { return null; }
        catch (UnauthorizedAccessException) { return null; }
    }

    /// <summary>The version in the file's first line (proprietary or open kernel module), else the line itself.</summary>
    internal static string? NvidiaDriverVersion(string firstLine)
    {
        var match = System.Text.RegularExpressions.Regex.Match(firstLine, @"Kernel Module(?: for [^ ]+)?\s+(\d[\d.]*)");
        return match.Success ? match.Groups[1].Value : firstLine.Trim() is { Length: > 0 } line ? line : null;
    }

    // /proc/cpuinfo's "model name" (x86) or "Model"/"Hardware" (Arm boards); elsewhere only the architecture is known.
    private static string ReadCpuModel()
    {
        try
        {
            if (File.Exists("/proc/cpuinfo"))
                foreach (string line in File.ReadLines("/proc/cpuinfo"))
                {
                    int colon = line.IndexOf(':');
                    if (colon < 0) continue;
                    string key = line[..colon].Trim();
                    if (key is "model name" or "Model" or "Hardware" && line[(colon + 1)..].Trim() is { Length: > 0 } value) return value;
                }
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return $"{RuntimeInformation.ProcessArchitecture.ToString().ToLowerInvariant()} (model not reported)";
    }

    // The machine's memory (/proc/meminfo MemTotal); elsewhere what the runtime may use, which is that or a container's limit.
    private static long ReadMemoryBytes()
    {
        try
        {
            if (File.Exists("/proc/meminfo"))
                foreach (string line in File.ReadLines("/proc/meminfo"))
                    if (line.StartsWith("MemTotal:", StringComparison.Ordinal)
                        && long.TryParse(line["MemTotal:".Length..].Trim().Split(' ')[0], out long kib)) return kib * 1024;
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
    }
}
