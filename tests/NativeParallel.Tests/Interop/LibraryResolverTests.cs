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

    [Fact]
    public void NvrtcBuiltinsAreFoundBesideTheSystemNvrtc()
    {
        const string nvrtc = "/lib/x86_64-linux-gnu/libnvrtc.so.11.2";
        if (!OperatingSystem.IsLinux() || !File.Exists(nvrtc) || !File.Exists("/lib/x86_64-linux-gnu/libnvrtc-builtins.so.11.8"))
            Assert.Skip("Debian's libnvrtc11.2 (NVRTC 11.8) is not installed");
        // libnvrtc.so.11.2 links to libnvrtc.so.11.8.89, which opens libnvrtc-builtins.so.11.8 by that soname.
        Assert.Equal("/lib/x86_64-linux-gnu/libnvrtc-builtins.so.11.8", NativeLibraries.NvrtcBuiltinsBeside(nvrtc));
    }

    [Fact]
    public void NvrtcBuiltinsOfTheSameVersionAreChosenInAPipWheelOrToolkitFolder()
    {
        if (!OperatingSystem.IsLinux()) Assert.Skip("Linux file names");
        string dir = Directory.CreateTempSubdirectory("np-nvrtc-").FullName;
        try
        {
            string Touch(string name) { string p = Path.Combine(dir, name); File.WriteAllBytes(p, []); return p; }
            // A pip wheel (nvidia/cuda_nvrtc/lib): NVRTC by its major version only, the builtins by major.minor, an
            // alternative build beside them, and an older toolkit's builtins left in the same folder.
            string nvrtc12 = Touch("libnvrtc.so.12");
            Touch("libnvrtc-builtins.alt.so.12.4");
            Touch("libnvrtc-builtins.so.11.8");
            Assert.Null(NativeLibraries.NvrtcBuiltinsBeside(nvrtc12));
            string builtins124 = Touch("libnvrtc-builtins.so.12.4");
            Touch("libnvrtc-builtins.so.12.4.127");
            Touch("libnvrtc-builtins.so");
            Assert.Equal(builtins124, NativeLibraries.NvrtcBuiltinsBeside(nvrtc12));

            // A toolkit folder: libnvrtc.so.12 links to the fully versioned file, whose minor version picks the builtins
            // even when a newer minor's builtins are there too.
            string real = Touch("libnvrtc.so.12.4.127");
            File.Delete(nvrtc12);
            File.CreateSymbolicLink(nvrtc12, real);
            Touch("libnvrtc-builtins.so.12.6");
            Assert.Equal(builtins124, NativeLibraries.NvrtcBuiltinsBeside(nvrtc12));
            Assert.Equal(Path.Combine(dir, "libnvrtc-builtins.so.11.8"), NativeLibraries.NvrtcBuiltinsBeside(Path.Combine(dir, "libnvrtc.so.11.2")));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void TheLoadedNvrtcHasItsBuiltinsLoadedFromItsOwnFolder()
    {
        Hardware.RequireNvrtc();
        if (!OperatingSystem.IsLinux()) Assert.Skip("reads /proc/self/maps");
        string? builtins = NativeLibraries.NvrtcBuiltinsPath;
        Assert.NotNull(builtins);
        Assert.True(File.Exists(builtins), builtins);
        Assert.StartsWith("libnvrtc-builtins", Path.GetFileName(builtins));
        // Loaded, so that NVRTC's own dlopen by soname finds it whatever the loader path says.
        Assert.Contains(File.ReadLines("/proc/self/maps"), line => line.Contains(Path.GetFileName(File.ResolveLinkTarget(builtins, true)?.FullName ?? builtins)));
    }
}
