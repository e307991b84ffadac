using NativeParallel.Devices;
using NativeParallel.Interop;

namespace NativeParallel.Tests.Interop;

public sealed class LibraryResolverTests
{
    [Fact]
    public void MissingCudaDriverListsEveryPathTried()
    {
        if (NativeLibraries.IsAvailable(NativeLibraryKind.Cuda)) Assert.Skip("this machine has the CUDA driver; the missing-library path cannot be seen");
        Assert.False(NativeLibraries.TryLoad(NativeLibraryKind.Cuda, out var path, out var tried));
        Assert.Null(path);
        Assert.Contains(tried, t => t.Contains("libcuda.so.1"));
        Assert.True(tried.Count >= 3, $"expected several candidates, got {string.Join("; ", tried)}");
        var e = Assert.Throws<InvalidOperationException>(() => DeviceRegistry.Open("cuda"));
        Assert.Contains("NATIVEPARALLEL_CUDA", e.Message);
    }

    [Fact]
    public void NvrtcVersionIsReadFromTheLoadedLibrary()
    {
        Hardware.RequireNvrtc();
        var (major, minor) = NvrtcProgram.Version;
        Assert.True(major >= 11, $"NVRTC {major}.{minor}");
        Assert.Contains(80, NvrtcProgram.SupportedArchs());
    }

    [Fact]
    public void CudaErrorsCarryTheApiAndTheErrorName()
    {
        var e = CudaException.Create(CUresult.CUDA_ERROR_OUT_OF_MEMORY, "cuMemAlloc_v2");
        Assert.Equal("cuMemAlloc_v2", e.ApiName);
        Assert.Contains("CUDA_ERROR_OUT_OF_MEMORY", e.Message);
    }

    [Fact]
    public void AutoPicksTheCpuWhenNoGpuIsPresent()
    {
        if (CudaDriver.UnavailableReason is null) Assert.Skip("a GPU is present, so auto picks CUDA");
        Assert.Same(CpuDevice.Instance, DeviceRegistry.Open("auto"));
        Assert.Throws<ArgumentException>(() => DeviceRegistry.Open("tpu"));
    }
}
