using System.Runtime.InteropServices;
using NativeParallel.Devices;
using NativeParallel.Kernels;
using NativeParallel.Kernels.Gpu;
using NativeParallel.Tensors;

namespace NativeParallel.Tests.Kernels;

/// <summary>
/// A launch allocates nothing on the managed heap: argument checks, entry-point names, grid and argument struct, with
/// no string built per call. A launcher that records and runs nothing stands in for the GPU, so the host side of each
/// forward op is measured alone (the CUDA driver's and the emulator's own work are not ours to count).
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
        void Launches()
        {
            k.Matmul(a, b, c);
            k.RmsNorm(a, w, y, 1e-5f);
            k.LayerNorm(a, w, w, y, 1e-5f);
            k.Embedding(ids, table, y);
            k.Rope(heads, ids, 10000f);
            k.AddBias(a, w);
            k.Add(a, y, y);
            k.SwiGlu(a, y, y);
            k.Gelu(a, y);
            k.Softmax(a, y, 0.5f);
            k.AttentionPrefill(q, kv, kv, attention, 0, 0.25f);
            k.Argmax(a, argmax);
            k.TopK(a, 4, values, indices);
            k.Reduce(ReduceOp.Sum, reduceInputs, y);
        }
        Launches(); // first calls: static tables and the JIT
        int before = device.Launches;
        long allocated = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 10; i++) Launches();
        allocated = GC.GetAllocatedBytesForCurrentThread() - allocated;
        Assert.Equal(10 * 14, device.Launches - before);
        Assert.True(allocated == 0, $"ten rounds of the forward ops' launches allocated {allocated} bytes on the managed heap");
    }
}
