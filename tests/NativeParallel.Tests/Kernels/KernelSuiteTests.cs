using NativeParallel.Devices;
using NativeParallel.Kernels.Check;

namespace NativeParallel.Tests.Kernels;

/// <summary>
/// The kernel suite, written once and run on every device kind: each case of <see cref="KernelSuite"/> against
/// the CPU reference (fresh random inputs, poisoned outputs, bounds by dtype).
/// </summary>
public abstract class KernelSuiteTests
{
    public static TheoryData<string> CaseIds => new(KernelSuite.Cases.Select(c => c.Id));

    /// <summary>The device under test (skips when it is absent).</summary>
    protected abstract IDevice OpenDevice();

    /// <summary>Fiber schedules per case (the emulated device runs several to expose races).</summary>
    protected virtual int Schedules => 1;

    [Theory]
    [MemberData(nameof(CaseIds))]
    public void MatchesReference(string caseId)
    {
        var device = OpenDevice();
        var kernelCase = KernelSuite.Cases.Single(c => c.Id == caseId);
        var result = ScheduledCheck.Run(kernelCase, device, Hardware.Seed, Schedules);
        Assert.True(result.Passed,
            $"{caseId} on {device.Name}: {result.Message} (rel err {result.RelativeError:E2}, bound {result.Bound:E0}); " +
            $"reproduce with NATIVEPARALLEL_TEST_SEED={Hardware.Seed}");
    }
}

/// <summary>The suite on the CPU device (the vectorised production path).</summary>
public sealed class CpuKernelSuiteTests : KernelSuiteTests
{
    protected override IDevice OpenDevice() => CpuDevice.Instance;
}

/// <summary>The suite on the emulated device: the kernels/*.cu source itself, under three fiber schedules.</summary>
public sealed class EmuKernelSuiteTests : KernelSuiteTests
{
    private static readonly Lazy<EmuDevice> s_device = new(() => new EmuDevice());

    protected override int Schedules => 3;

    protected override IDevice OpenDevice()
    {
        Hardware.RequireEmu();
        return s_device.Value;
    }
}

/// <summary>The suite on the first GPU; skips on machines without one.</summary>
public sealed class CudaKernelSuiteTests : KernelSuiteTests
{
    private static readonly Lazy<CudaDevice> s_device = new(() => CudaDevice.Open(0));

    protected override IDevice OpenDevice()
    {
        Hardware.RequireCuda();
        return s_device.Value;
    }
}

/// <summary>
/// The memory-bound CPU kernels (Kernels/Cpu/CpuRowKernels.cs, CpuAttention.cs) on their Vector256 path, which machines without
/// AVX-512 run; <see cref="CpuKernelSuiteTests"/> takes the Vector512 one where the CPU has it.
/// </summary>
public sealed class CpuVector256KernelSuiteTests
{
    private static readonly string[] RowOps = ["rmsnorm", "softmax", "cross_entropy", "attention_decode", "attention_prefill", "swiglu"];

    public static TheoryData<string> CaseIds => new(KernelSuite.Cases.Where(c => RowOps.Contains(c.Op)).Select(c => c.Id));

    [Theory]
    [MemberData(nameof(CaseIds))]
    public void MatchesReference(string caseId)
    {
        var kernelCase = KernelSuite.Cases.Single(c => c.Id == caseId);
        bool before = NativeParallel.Kernels.Cpu.CpuPackedGemm.PreferVector512;
        try
        {
            NativeParallel.Kernels.Cpu.CpuPackedGemm.PreferVector512 = false;
            var result = ScheduledCheck.Run(kernelCase, CpuDevice.Instance, Hardware.Seed, 1);
            Assert.True(result.Passed, $"{caseId} (Vector256): {result.Message} (rel err {result.RelativeError:E2}, bound {result.Bound:E0}); " +
                $"reproduce with NATIVEPARALLEL_TEST_SEED={Hardware.Seed}");
        }
        finally
        {
            NativeParallel.Kernels.Cpu.CpuPackedGemm.PreferVector512 = before;
        }
    }
}
