using System.Runtime.InteropServices;
using NativeParallel.Comm;
using NativeParallel.Devices;
using NativeParallel.Kernels;
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
        public IKernels Kernels { get; } = NativeParallel.Kernels.Ops.OpKernels.Instance;
        public IDeviceStream DefaultStream => CpuDevice.Instance.DefaultStream;
        public long CopiesIn, CopiesOut;

        // Fresh memory is poisoned (NaN), so that an output nobody wrote cannot pass for a right one.
        public DeviceBuffer Allocate(long bytes)
        {
            void* p = NativeMemory.AlignedAlloc((nuint)Math.Max(bytes, 1), 64);
            NativeMemory.Fill(p, (nuint)Math.Max(bytes, 1), 0xFF);
            return new(this, (ulong)p, bytes, static p => NativeMemory.AlignedFree((void*)p));
        }
        public IDeviceStream CreateStream() => CpuDevice.Instance.CreateStream();
        public IDeviceEvent CreateEvent() => CpuDevice.Instance.CreateEvent();
        public void CopyHostToDevice(ReadOnlySpan<byte> src, ulong dst, IDeviceStream? stream = null)
        {
            Interlocked.Increment(ref CopiesIn);
            CpuDevice.Instance.CopyHostToDevice(src, dst);
        }
        public void CopyDeviceToHost(ulong src, Span<byte> dst, IDeviceStream? stream = null)
        {
            Interlocked.Increment(ref CopiesOut);
            CpuDevice.Instance.CopyDeviceToHost(src, dst);
        }
        public void CopyDeviceToDevice(ulong src, ulong dst, long bytes, IDeviceStream? stream = null) => CpuDevice.Instance.CopyDeviceToDevice(src, dst, bytes);
        public void Memset(ulong dst, byte value, long bytes, IDeviceStream? stream = null) => CpuDevice.Instance.Memset(dst, value, bytes);
        public void Synchronize() { }
        public void Dispose() { }
    }

    // Rank r's 50 values, as raw f32 bits from a seeded stream: any bit pattern (NaNs with payloads, -0, subnormals),
    // so that only an exact byte-for-byte trip through host staging and back gives them back.
    private static byte[] RankBits(ulong seed, int rank)
    {
        var bytes = new byte[50 * sizeof(float)];
        var ints = new int[50];
        SeededRandom.Integers(seed + (ulong)rank, ints, int.MaxValue);
        for (int i = 0; i < ints.Length; i++)
            BitConverter.TryWriteBytes(bytes.AsSpan(4 * i), (ints[i] << 1) ^ (i * 0x01010101) ^ rank);
        return bytes;
    }

    // Exact small integers, different on every rank, so that a reduction result names the ranks it came from.
    private static float Value(int rank, int i) => (i % 3 == rank ? 1000f : 0f) + i * (rank + 1) - 7 * rank;

    [Fact]
    public void CollectivesOnOffHostTensorsAreStaged()
    {
        var device = new OffHostDevice();
        ulong seed = Hardware.Seed;
        var groups = ProcessGroup.CreateThreadGroup(3, timeout: TimeSpan.FromSeconds(20));
        ExactInputs.OnThreads(groups, g =>
        {
            using var t = Tensor.FromFloats(device, Enumerable.Range(0, 50).Select(i => Value(g.Rank, i)).ToArray(), DType.F32, 50);
            g.AllReduce(t);
            Assert.Equal(Enumerable.Range(0, 50).Select(i => Value(0, i) + Value(1, i) + Value(2, i)), t.ToFloats());

            // all_gather: every rank's bits, in rank order, byte for byte, into an output that starts poisoned.
            using var mine = Tensor.Empty(device, DType.F32, 50);
            mine.CopyFromHost(RankBits(seed, g.Rank));
            using var gathered = Tensor.Empty(device, DType.F32, 150);
            long copiesIn = Interlocked.Read(ref device.CopiesIn);
            g.AllGather(mine, gathered);
            Assert.True(Interlocked.Read(ref device.CopiesIn) > copiesIn, "all_gather did not copy its output back to the device");
            Assert.Equal([.. RankBits(seed, 0), .. RankBits(seed, 1), .. RankBits(seed, 2)], gathered.ToBytes());
            Assert.Equal(RankBits(seed, g.Rank), mine.ToBytes()); // the input is left as it was

            // reduce (max) to rank 1; the other ranks' outputs come back unchanged.
            using var input = Tensor.FromFloats(device, Enumerable.Range(0, 50).Select(i => Value(g.Rank, i)).ToArray(), DType.F32, 50);
            using var output = Tensor.FromFloats(device, Enumerable.Range(0, 50).Select(i => -1f - i).ToArray(), DType.F32, 50);
            g.Reduce(input, output, root: 1, ReduceOp.Max);
            float[] expected = g.Rank == 1
                ? Enumerable.Range(0, 50).Select(i => Math.Max(Value(0, i), Math.Max(Value(1, i), Value(2, i)))).ToArray()
                : Enumerable.Range(0, 50).Select(i => -1f - i).ToArray();
            Assert.Equal(expected, output.ToFloats());

            // Peers cannot address this device, so nothing went device-direct and every byte was staged.
            Assert.Equal(0, g.DeviceDirectCalls);
            // all_reduce in place: in and back; all_gather: input in, output in and back; reduce: input in, output in and back.
            Assert.Equal(50 * 4 * 2 + (50 + 150 + 150) * 4 + 50 * 4 * 3, g.StagedBytes);
        });
        Assert.True(device.CopiesOut > 0 && device.CopiesIn > 0);
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
