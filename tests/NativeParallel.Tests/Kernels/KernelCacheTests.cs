using NativeParallel.Kernels;

namespace NativeParallel.Tests.Kernels;

/// <summary>The on-disk cache: a second process-level compile of the same kernel loads the stored binary.</summary>
[Collection(nameof(EnvironmentCollection))]
public sealed class KernelCacheTests
{
    [Fact]
    public void WarmStartLoadsFromDiskWithoutCompiling()
    {
        Hardware.RequireNvrtc();
        string dir = Path.Combine(Path.GetTempPath(), $"np-cache-test-{Guid.NewGuid():N}");
        string? previous = Environment.GetEnvironmentVariable("NATIVEPARALLEL_CACHE_DIR");
        try
        {
            Environment.SetEnvironmentVariable("NATIVEPARALLEL_CACHE_DIR", dir);
            // useCache: false skips the in-memory map but still stores; then a cached compile must find the files.
            var cold = KernelCompiler.Compile("gelu.cu", "sm_80", useCache: false);
            Assert.False(cold.FromCache);
            KernelCompiler.ClearMemoryCache();
            var warm = KernelCompiler.Compile("gelu.cu", "sm_80");
            Assert.True(warm.FromCache, "the second compile should have loaded the binary from " + dir);
            Assert.Equal(cold.Image, warm.Image);
            Assert.Equal(cold.Functions, warm.Functions);
            Assert.Equal(2, Directory.GetFiles(dir).Length); // image and log, no temporaries left
        }
        finally
        {
            Environment.SetEnvironmentVariable("NATIVEPARALLEL_CACHE_DIR", previous);
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void PtxasReportIsParsedPerEntryPoint()
    {
        const string log = """
            ptxas info    : 0 bytes gmem
            ptxas info    : Compiling entry function 'first' for 'sm_90'
            ptxas info    : Function properties for first
            ptxas         .     16 bytes stack frame, 8 bytes spill stores, 4 bytes spill loads
            ptxas info    : Used 40 registers, 8192 bytes smem, 400 bytes cmem[0]
            ptxas info    : Compiling entry function 'second' for 'sm_90'
            ptxas info    : Function properties for second
            ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
            ptxas info    : Used 8 registers
            """;
        var usage = KernelResourceUsage.ParsePtxasLog(log);
        Assert.Equal(2, usage.Count);
        Assert.Equal(new KernelResourceUsage("first", "sm_90", 40, 8, 4, 16, 8192, 400), usage[0]);
        Assert.True(usage[0].Spills);
        Assert.Equal(new KernelResourceUsage("second", "sm_90", 8, 0, 0, 0, 0, 0), usage[1]);
        Assert.False(usage[1].Spills);
    }
}

/// <summary>Tests that change process environment variables run one at a time.</summary>
[CollectionDefinition(nameof(EnvironmentCollection), DisableParallelization = true)]
public sealed class EnvironmentCollection;
