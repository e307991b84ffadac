namespace NativeParallel.Tests.Cli;

/// <summary><c>bench kernels --op NAME --version all</c>: one op's versions side by side; a bad name or version is refused before any work.</summary>
[Collection(nameof(Kernels.EnvironmentCollection))]
public sealed class BenchKernelsVersionTests
{
    [Fact]
    public void EveryCpuMatmulVersionIsTimedAndNothingElse()
    {
        var (code, output) = InProcessCli.Run("bench", "kernels", "--device", "cpu", "--op", "matmul", "--version", "all", "--repeats", "1", "--warmup", "0");
        Assert.True(code == 0, output);
        foreach (string dtype in new[] { "f32", "bf16" })
        {
            Assert.Contains($"matmul {dtype} (v1 dot products, Vector256)", output);
            Assert.Contains($"matmul {dtype} (v2 packed 6x16, Vector256)", output);
            if (!System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated) continue;
            Assert.Contains($"matmul {dtype} (v2 packed 6x32, Vector512)", output);
            Assert.Contains($"matmul {dtype} (v3 packed 12x32, Vector512)", output);
        }
        Assert.Contains("device copy", output); // the roof stays
        Assert.DoesNotContain("rmsnorm", output);
        Assert.DoesNotContain("matmul_bwd", output);
    }

    [Theory]
    [InlineData("--op", "nope", "no such kernel benchmark")]
    [InlineData("--version", "v9", "expected default or all")]
    public void ABadOpOrVersionIsAUsageError(string option, string value, string message)
    {
        var (code, output) = InProcessCli.Run("bench", "kernels", "--device", "cpu", option, value);
        Assert.Equal(2, code);
        Assert.Contains(message, output);
    }
}
