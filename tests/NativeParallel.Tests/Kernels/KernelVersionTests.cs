using NativeParallel.Devices;
using NativeParallel.Kernels;
using NativeParallel.Kernels.Check;

namespace NativeParallel.Tests.Kernels;

/// <summary>
/// Every version of a versioned device kernel (not only the default the suite runs) against the reference, and the
/// version switch itself: scopes nest and restore, bad names are refused with what exists.
/// </summary>
public abstract class KernelVersionTests
{
    protected abstract IDevice OpenDevice();

    public static TheoryData<string, string> OpVersions()
    {
        var data = new TheoryData<string, string>();
        foreach (var (op, entry) in KernelVersions.Ops)
            foreach (string version in entry.Versions) data.Add(op, version);
        return data;
    }

    [Theory]
    [MemberData(nameof(OpVersions))]
    public void EveryVersionMatchesTheReference(string op, string version)
    {
        var device = OpenDevice();
        var cases = KernelSuite.Cases.Where(c => c.Op == op).ToArray();
        Assert.NotEmpty(cases);
        using var scope = KernelVersions.Use(op, version);
        Assert.Equal(version, KernelVersions.Selected(op));
        foreach (var kernelCase in cases)
        {
            var result = ScheduledCheck.Run(kernelCase, device, Hardware.Seed, 1);
            Assert.True(result.Passed, $"{op} {version} {kernelCase.Id} on {device.Name}: {result.Message} (rel err {result.RelativeError:E2}); NATIVEPARALLEL_TEST_SEED={Hardware.Seed}");
        }
    }
}

public sealed class EmuKernelVersionTests : KernelVersionTests
{
    protected override IDevice OpenDevice()
    {
        Hardware.RequireEmu();
        return Training.EmuDevices.Shared;
    }
}

public sealed class CudaKernelVersionTests : KernelVersionTests
{
    protected override IDevice OpenDevice()
    {
        Hardware.RequireCuda();
        return DeviceRegistry.Open("cuda");
    }
}

public sealed class KernelVersionSwitchTests
{
    [Fact]
    public void ScopesNestAndRestoreTheDefault()
    {
        string fallback = KernelVersions.Selected("matmul");
        using (KernelVersions.Use("matmul", "v2"))
        {
            Assert.Equal("v2", KernelVersions.Selected("matmul"));
            using (KernelVersions.Use("matmul", "v3")) Assert.Equal("v3", KernelVersions.Selected("matmul"));
            Assert.Equal("v2", KernelVersions.Selected("matmul"));
        }
        Assert.Equal(fallback, KernelVersions.Selected("matmul"));
    }

    [Fact]
    public void BadNamesAreRefusedWithWhatExists()
    {
        var e = Assert.Throws<ArgumentException>(() => KernelVersions.Use("matmul", "v9"));
        Assert.Contains("v2, v3, v4", e.Message);
        e = Assert.Throws<ArgumentException>(() => KernelVersions.Parse("softmax=v2"));
        Assert.Contains("versioned ops: matmul, matmul_bwd", e.Message);
        e = Assert.Throws<ArgumentException>(() => KernelVersions.Parse("matmul"));
        Assert.Contains("op=version", e.Message);
        Assert.Equal("v1", KernelVersions.Parse(" matmul_bwd = v1 ")["matmul_bwd"]);
    }
}
