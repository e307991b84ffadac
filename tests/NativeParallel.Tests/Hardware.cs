using NativeParallel.Devices;
using NativeParallel.Diagnostics;
using NativeParallel.Interop;

namespace NativeParallel.Tests;

/// <summary>
/// What this machine has. A test that needs missing hardware skips with the reason, unless
/// NATIVEPARALLEL_REQUIRE lists it (CI sets nvrtc), in which case it fails: a missing install never hides.
/// </summary>
internal static class Hardware
{
    public static void RequireNvrtc()
    {
        if (NativeLibraries.IsAvailable(NativeLibraryKind.Nvrtc)) return;
        Missing("nvrtc", "NVRTC is not installed (Debian non-free libnvrtc11.2, or NATIVEPARALLEL_NVRTC)");
    }

    public static void RequireEmu()
    {
        if (EmuCompiler.UnavailableReason is not { } reason) return;
        Missing("emu", $"the emulated device needs a host C++ compiler: {reason}");
    }

    /// <summary>True when a CUDA driver is present.</summary>
    public static bool HasCuda => CudaDriver.UnavailableReason is null;

    public static void RequireCuda()
    {
        string? reason = CudaDriver.UnavailableReason;
        if (reason is null) return;
        Missing("cuda", $"needs an NVIDIA GPU: {reason}");
    }

    /// <summary>The folder of Debian's fortunes package: a few MB of real English text for training tests.</summary>
    public const string FortunesFolder = "/usr/share/games/fortunes";

    public static void RequireFortunes()
    {
        if (Directory.Exists(FortunesFolder)) return;
        Missing("fortunes", $"needs Debian's fortunes package ({FortunesFolder}) as a real text corpus: apt-get install fortunes, or ./build.sh setup as root");
    }

    /// <summary>gcc, which compiles the C API's test program (and links NativeAOT where clang is missing).</summary>
    public static void RequireGcc()
    {
        if (Packaging.RepositoryCommand.OnPath("gcc")) return;
        Missing("gcc", "needs gcc to compile the C API's test program: apt-get install gcc");
    }

    private static void Missing(string capability, string reason)
    {
        if (Tunables.Required.Contains(capability))
            Assert.Fail($"NATIVEPARALLEL_REQUIRE lists '{capability}' but it is missing: {reason}");
        Assert.Skip(reason);
    }

    /// <summary>Fresh inputs every run; NATIVEPARALLEL_TEST_SEED reproduces one.</summary>
    public static ulong Seed { get; } = ulong.TryParse(Environment.GetEnvironmentVariable("NATIVEPARALLEL_TEST_SEED"), out ulong s)
        ? s
        : (ulong)Environment.TickCount64;
}
