using System.Runtime.InteropServices;
using NativeParallel.Devices;
using NativeParallel.Kernels;
using NativeParallel.Kernels.Gpu;
using NativeParallel.Kernels.Ops;
using NativeParallel.Tensors;

namespace NativeParallel.Tests.Kernels;

/// <summary>
/// A launch allocates nothing on the managed heap: argument checks, entry-point names, grid and argument struct, with
/// no string built per call. A launcher that records and runs nothing stands in for the GPU, so the host side of each
/// forward op is measured alone (the CUDA driver's and the emulator's own work are not ours to count). Attention
/// decode is left out: its split version takes a scratch tensor per launch.
/// </summary>
public sealed class LaunchAllocationTests
{
    private sealed unsafe class RecordingLauncher : IDevice, IKernelLauncher
    {
        public int Launches;
        public DeviceKind Kind => DeviceKind.Cuda;
        public string Name => "recording";
        public string Description => "launches nothing, counts launches";
        public int MultiprocessorCount => 132;
        public IKernels Kernels => CpuDevice.Instance.Kernels;
        public IDeviceStream DefaultStream => CpuDevice.Instance.DefaultStream;

        public void Launch<TArgs>(string file, string function, Dim3 grid, Dim3 block, uint sharedBytes, in TArgs args) where TArgs : unmanaged =>
            Launches++;

        public DeviceBuffer Allocate(long bytes)
        {
            void* p = NativeMemory.AlignedAlloc((nuint)Math.Max(bytes, 1), 64);
            NativeMemory.Clear(p, (nuint)Math.Max(bytes, 1));
            return new(this, (ulong)p, bytes, static p => NativeMemory.AlignedFree((void*)p));
        }
        public IDeviceStream CreateStream() => CpuDevice.Instance.CreateStream();
        public IDeviceEvent CreateEvent() => CpuDevice.Instance.CreateEvent();
        public void CopyHostToDevice(ReadOnlySpan<byte> src, ulong dst, IDeviceStream? stream = null) => CpuDevice.Instance.CopyHostToDevice(src, dst);
        public void CopyDeviceToHost(ulong src, Span<byte> dst, IDeviceStream? stream = null) => CpuDevice.Instance.CopyDeviceToHost(src, dst);
        public void CopyDeviceToDevice(ulong src, ulong dst, long bytes, IDeviceStream? stream = null) => CpuDevice.Instance.CopyDeviceToDevice(src, dst, bytes);
        public void Memset(ulong dst, byte value, long bytes, IDeviceStream? stream = null) => CpuDevice.Instance.Memset(dst, value, bytes);
        public void Synchronize() { }
        public void Dispose() { }
    }

    [Theory]
    [InlineData("f32")]
    [InlineData("bf16")]
    public void ForwardLaunchesAllocateNothing(string dtypeName)
    {
        var dt = dtypeName == "f32" ? DType.F32 : DType.BF16;
        var device = new RecordingLauncher();
        IKernels k = device.Kernels;
        using var a = Tensor.Empty(device, dt, 64, 32);
        using var b = Tensor.Empty(device, dt, 48, 32);
        using var c = Tensor.Empty(device, dt, 64, 48);
        using var y = Tensor.Empty(device, dt, 64, 32);
        using var w = Tensor.Empty(device, dt, 32);
        using var ids = Tensor.Empty(device, DType.I32, 64);
        using var table = Tensor.Empty(device, dt, 100, 32);
        using var heads = Tensor.Empty(device, dt, 64, 2, 16);
        using var q = Tensor.Empty(device, dt, 1, 8, 4, 16);
        using var kv = Tensor.Empty(device, dt, 1, 8, 2, 16);
        using var attention = Tensor.Empty(device, dt, 1, 8, 4, 16);
        using var values = Tensor.Empty(device, DType.F32, 64, 4);
        using var indices = Tensor.Empty(device, DType.I32, 64, 4);
        using var argmax = Tensor.Empty(device, DType.I32, 64);
        var reduceInputs = new[] { a, y };
        // MoE training's backward ops, launched once per layer and step: (64 tokens, top-2) over 8 experts.
        using var slots = Tensor.Empty(device, dt, 128, 32);
        using var dSlots = Tensor.Empty(device, dt, 128, 32);
        using var position = Tensor.Empty(device, DType.I32, 128);
        using var weights = Tensor.Empty(device, DType.F32, 64, 2);
        using var dWeights = Tensor.Empty(device, DType.F32, 64, 2);
        using var experts = Tensor.Empty(device, DType.I32, 64, 2);
        using var dLogits = Tensor.Empty(device, dt, 64, 8);
        var launches = new (string Op, Action Launch)[]
        {
            ("matmul", () => k.Matmul(a, b, c)),
            ("rmsnorm", () => k.RmsNorm(a, w, y, 1e-5f)),
            ("layernorm", () => k.LayerNorm(a, w, w, y, 1e-5f)),
            ("embedding", () => k.Embedding(ids, table, y)),
            ("rope", () => k.Rope(heads, ids, 10000f)),
            ("add_bias", () => k.AddBias(a, w)),
            ("add", () => k.Add(a, y, y)),
            ("swiglu", () => k.SwiGlu(a, y, y)),
            ("gelu", () => k.Gelu(a, y)),
            ("softmax", () => k.Softmax(a, y, 0.5f)),
            ("attention_prefill", () => k.AttentionPrefill(q, kv, kv, attention, 0, 0.25f)),
            ("argmax", () => k.Argmax(a, argmax)),
            ("topk", () => k.TopK(a, 4, values, indices)),
            ("reduce", () => k.Reduce(ReduceOp.Sum, reduceInputs, y)),
            ("moe_combine_bwd", () => MoeCombineBackward.Run(a, slots, position, weights, dSlots, dWeights)),
            ("moe_router_bwd", () => MoeRouterBackward.Run(weights, dWeights, experts, dLogits)),
        };
        // Warm up: static tables, the JIT and tiered recompilation, whose promotions allocate on the calling thread
        // now and then. A launch that allocates does so every time, so each op gets three tries of ten launches and
        // fails only when none of them came out clean.
        for (int round = 0; round < 50; round++)
            foreach (var (_, launch) in launches) launch();
        var allocating = new List<string>();
        foreach (var (op, launch) in launches)
        {
            long fewest = long.MaxValue;
            for (int attempt = 0; attempt < 3 && fewest != 0; attempt++)
            {
                int before = device.Launches;
                long allocated = GC.GetAllocatedBytesForCurrentThread();
                for (int i = 0; i < 10; i++) launch();
                allocated = GC.GetAllocatedBytesForCurrentThread() - allocated;
                Assert.Equal(10, device.Launches - before);
                fewest = Math.Min(fewest, allocated);
            }
            if (fewest != 0) allocating.Add($"{op} {fewest / 10} B");
        }
        Assert.True(allocating.Count == 0, $"launches allocated on the managed heap (per launch): {string.Join(", ", allocating)}");
    }
}
