using System.Runtime.InteropServices;
using NativeParallel.Kernels;
using NativeParallel.Kernels.Cpu;

namespace NativeParallel.Devices;

/// <summary>The host CPU as a device: host memory, and kernels written in vectorised, multi-threaded C#.</summary>
public sealed class CpuDevice : HostMemoryDevice
{
    private static readonly Lazy<CpuDevice> s_instance = new(() => new CpuDevice());

    private CpuDevice() => Kernels = NativeParallel.Kernels.Ops.OpKernels.Instance;

    /// <summary>The process's CPU device.</summary>
    public static CpuDevice Instance => s_instance.Value;

    /// <inheritdoc/>
    public override DeviceKind Kind => DeviceKind.Cpu;

    /// <inheritdoc/>
    public override string Name => "cpu";

    /// <inheritdoc/>
    public override string Description =>
        $"{Environment.ProcessorCount} logical cores, {RuntimeInformation.ProcessArchitecture}, " +
        $"kernels on {(NativeParallel.Kernels.Cpu.CpuPackedGemm.UsesVector512 ? 512 : 256)}-bit vectors" +
        (System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated ? " (AVX-512)" : "");

    /// <inheritdoc/>
    public override IKernels Kernels { get; }
}
