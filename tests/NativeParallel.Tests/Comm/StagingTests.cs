using System.Runtime.InteropServices;
using NativeParallel.Comm;
using NativeParallel.Devices;
using NativeParallel.Kernels;
using NativeParallel.Kernels.Cpu;
using NativeParallel.Models;
using NativeParallel.Parallel;
using NativeParallel.Tensors;

namespace NativeParallel.Tests.Comm;

/// <summary>
/// Tensors that do not live in host memory (a GPU's) are staged through host tensors by the collectives. A device
/// that is not a HostMemoryDevice (though its memory is reachable, so kernels can run) exercises that path here.
/// </summary>
public sealed class StagingTests
{
    private sealed unsafe class OffHostDevice : IDevice
    {
        public DeviceKind Kind => DeviceKind.Cuda;
        public string Name => "offhost";
        public string Description => "test device outside HostMemoryDevice";
        public IKernels Kernels { get; } = new CpuKernels();
        public IDeviceStream DefaultStream => CpuDevice.Instance.DefaultStream;
        public DeviceBuffer Allocate(long bytes) =>
            new(this, (ulong)NativeMemory.AlignedAlloc((nuint)Math.Max(bytes, 1), 64), bytes, static p => NativeMemory.AlignedFree((void*)p));
        public IDeviceStream CreateStream() => CpuDevice.Instance.CreateStream();
        public IDeviceEvent CreateEvent() => CpuDevice.Instance.CreateEvent();
        public void CopyHostToDevice(ReadOnlySpan<byte> src, ulong dst, IDeviceStream? stream = null) => CpuDevice.Instance.CopyHostToDevice(src, dst);
        public void CopyDeviceToHost(ulong src, Span<byte> dst, IDeviceStream? stream = null) => CpuDevice.Instance.CopyDeviceToHost(src, dst);
        public void CopyDeviceToDevice(ulong src, ulong dst, long bytes, IDeviceStream? stream = null) => CpuDevice.Instance.CopyDeviceToDevice(src, dst, bytes);
        public void Memset(ulong dst, byte value, long bytes, IDeviceStream? stream = null) => CpuDevice.Instance.Memset(dst, value, bytes);
        public void Synchronize() { }
        public void Dispose() { }
    }

    [Fact]
    public void CollectivesOnOffHostTensorsAreStaged()
    {
        var device = new OffHostDevice();
        var groups = ProcessGroup.CreateThreadGroup(3, timeout: TimeSpan.FromSeconds(20));
        ExactInputs.OnThreads(groups, g =>
        {
            using var t = Tensor.FromFloats(device, Enumerable.Range(0, 50).Select(i => (float)(i + g.Rank)).ToArray(), DType.F32, 50);
            g.AllReduce(t);
            Assert.Equal(Enumerable.Range(0, 50).Select(i => (float)(3 * i + 3)), t.ToFloats());
            using var gathered = Tensor.Empty(device, DType.F32, 150);
            g.AllGather(t.Narrow(0, 0, 50), gathered);
            Assert.Equal(3 * 50, gathered.ToFloats().Length);
            using var output = Tensor.FromFloats(device, new float[50], DType.F32, 50);
            g.Reduce(t, output, root: 1, ReduceOp.Max);
            Assert.Equal(g.Rank == 1 ? t.ToFloats() : new float[50], output.ToFloats());
        });
        foreach (var g in groups) g.Dispose();
    }

    [Fact]
    public void StrategiesRunOnADeviceTheirRanksShare()
    {
        var config = new LlamaConfig { Vocab = 64, Hidden = 32, Layers = 2, Heads = 4, KvHeads = 2, Ffn = 48, MaxSequence = 16 };
        var weights = new LlamaWeights(config, 4);
        int[][] prompts = [[1, 2, 3, 4], [5, 6, 7, 8]];
        var device = new OffHostDevice();
        var single = StrategyRun.Single(device, weights, prompts, 3);
        var r = StrategyRun.Run(weights, Strategy.Parse("tp=2,pp=2"), prompts, 3, (single.Logits, single.Tokens), device: device);
        Assert.True(r.MaxLogitsError <= 1e-5 && r.TokensIdentical && r.RanksIdentical, $"rel err {r.MaxLogitsError:E2}");
    }
}
