using NativeParallel.Comm;
using NativeParallel.Devices;
using NativeParallel.Kernels;
using NativeParallel.Tensors;

namespace NativeParallel.Tests.Comm;

/// <summary>
/// Device-direct all-reduce (ranks sharing a kernel device reduce their chunks from every rank's buffer with the
/// reduce kernel, then copy the rest): on the emulated device, which runs the same kernel source a GPU would.
/// </summary>
public sealed class DeviceDirectTests
{
    private static readonly Lazy<EmuDevice> s_emu = new(() => new EmuDevice());

    [Theory]
    [InlineData(3, DType.F32, ReduceOp.Sum, 1000)]
    [InlineData(4, DType.BF16, ReduceOp.Avg, 999)]
    [InlineData(2, DType.F16, ReduceOp.Max, 5)]
    [InlineData(5, DType.F32, ReduceOp.Prod, 3)]
    public void EmulatedDeviceRanksReduceThroughTheKernel(int ranks, DType dtype, ReduceOp op, int count)
    {
        Hardware.RequireEmu();
        var device = s_emu.Value;
        var groups = ProcessGroup.CreateThreadGroup(ranks, timeout: TimeSpan.FromSeconds(60));
        ExactInputs.OnThreads(groups, g =>
        {
            var values = Enumerable.Range(0, count).Select(i => (float)ExactInputs.Value(op, g.Rank, ranks, i)).ToArray();
            using var input = Tensor.FromFloats(device, values, dtype, count);
            using var output = Tensor.Empty(device, dtype, count);
            g.AllReduce(input, output, op);
            Assert.Equal(1, g.DeviceDirectCalls);
            Assert.Equal(0, g.StagedBytes);
            var expected = Enumerable.Range(0, count).Select(i => (float)ExactInputs.Reduced(op, ranks, i)).ToArray();
            Assert.Equal(expected, output.ToFloats());
            g.AllReduce(input, op); // in place
            Assert.Equal(expected, input.ToFloats());
        });
        foreach (var g in groups) g.Dispose();
    }

    [Fact]
    public void RanksOnDifferentPathsAreCaughtByTheAgreementCheck()
    {
        Hardware.RequireEmu();
        var groups = ProcessGroup.CreateThreadGroup(2, timeout: TimeSpan.FromSeconds(20));
        var errors = new Exception?[2];
        var threads = groups.Select((g, r) => new Thread(() =>
        {
            try
            {
                // Rank 0 on the emulated device (direct), rank 1 in host memory (ring): a program error to report.
                IDevice device = r == 0 ? s_emu.Value : CpuDevice.Instance;
                using var t = Tensor.FromFloats(device, new float[50_000], DType.F32, 50_000);
                g.AllReduce(t);
            }
            catch (Exception e) { errors[r] = e; }
        })).ToArray();
        foreach (var t in threads) t.Start();
        foreach (var t in threads) Assert.True(t.Join(TimeSpan.FromMinutes(1)));
        foreach (var g in groups) g.Dispose();
        Assert.Contains(errors, e => e is CollectiveException c && c.Message.Contains("algorithm direct") && c.Message.Contains("algorithm ring"));
    }
}

/// <summary>
/// The GPU paths of the device-direct collectives: thread ranks sharing a GPU, and processes through CUDA IPC memory
/// and event handles; each exact, and (rank 0's count) device-direct with nothing staged through host memory.
/// </summary>
public sealed class CudaDeviceDirectTests
{
    [Theory]
    [InlineData("threads", "all_reduce")]
    [InlineData("processes", "all_reduce")]
    [InlineData("threads", "all_gather")]
    [InlineData("processes", "all_gather")]
    [InlineData("threads", "reduce_scatter")]
    [InlineData("processes", "reduce_scatter")]
    [InlineData("threads", "broadcast")]
    [InlineData("processes", "broadcast")]
    [InlineData("threads", "all_to_all")]
    [InlineData("processes", "all_to_all")]
    public void CollectivesOnOneGpuAreExactAndDirect(string ranks, string op)
    {
        Hardware.RequireCuda();
        var info = new System.Diagnostics.ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        string[] args = [Path.Combine(AppContext.BaseDirectory, "NativeParallel.Cli.dll"), "bench", "collectives", "--ranks", "2", "--device", "cuda", "--op", op,
            "-b", "1K", "-e", "16M", "-f", "64", "-n", "3", "-w", "1", .. ranks == "threads" ? new[] { "--transport", "threads" } : []];
        foreach (string a in args) info.ArgumentList.Add(a);
        using var process = System.Diagnostics.Process.Start(info)!;
        string output = process.StandardOutput.ReadToEnd() + process.StandardError.ReadToEnd();
        Assert.True(process.WaitForExit(TimeSpan.FromMinutes(3)));
        Assert.True(process.ExitCode == 0, output);
        Assert.Contains("# Out of bounds values : 0 OK", output);
        Assert.Matches(@"# Device path +: [1-9]\d* collectives device-direct, 0 bytes staged", output);
    }
}
