using NativeParallel.Diagnostics;

namespace NativeParallel.Devices;

/// <summary>Opens devices by name: <c>cpu</c>, <c>emu</c> (the emulated GPU), <c>cuda</c>, <c>cuda:N</c>, or <c>auto</c> (the best present: CUDA, else CPU).</summary>
public static class DeviceRegistry
{
    /// <summary>Opens the device named <paramref name="name"/> (default: NATIVEPARALLEL_DEVICE, else auto).</summary>
    /// <exception cref="ArgumentException">Unknown name.</exception>
    /// <exception cref="InvalidOperationException">CUDA was asked for and is unavailable; the message says why.</exception>
    public static IDevice Open(string? name = null)
    {
        name = (name ?? Tunables.DefaultDevice).Trim().ToLowerInvariant();
        if (name == "auto") return CudaDriver.UnavailableReason is null ? CudaDevice.Open(0) : CpuDevice.Instance;
        if (name == "cpu") return CpuDevice.Instance;
        if (name == "cuda" || name.StartsWith("cuda:", StringComparison.Ordinal))
        {
            int ordinal = name == "cuda" ? 0 : int.TryParse(name[5..], out int n) ? n : throw new ArgumentException($"bad device '{name}': expected cuda:N");
            string? reason = CudaDriver.UnavailableReason;
            if (reason is not null) throw new InvalidOperationException($"device {name} requested but CUDA is unavailable: {reason}");
            int count = CudaDriver.DeviceCount();
            if (ordinal >= count) throw new ArgumentException($"device {name} requested but only {count} GPU(s) are present");
            return CudaDevice.Open(ordinal);
        }
        if (name == "emu") return new EmuDevice(sanitize: Tunables.Raw("NATIVEPARALLEL_EMU_SANITIZE") == "1");
        throw new ArgumentException($"unknown device '{name}': expected cpu, emu, cuda, cuda:N or auto");
    }
}
