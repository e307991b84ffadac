namespace NativeParallel.Devices;

/// <summary>The kinds of device behind <see cref="IDevice"/>.</summary>
public enum DeviceKind
{
    /// <summary>The host CPU: vectorised, multi-threaded C# kernels.</summary>
    Cpu,
    /// <summary>An NVIDIA GPU through the CUDA driver API; kernels compiled by NVRTC.</summary>
    Cuda,
    /// <summary>The CUDA C kernels compiled for the host and run on fibers (emulated GPU).</summary>
    Emu,
}
