using NativeParallel.Devices;
using NativeParallel.Kernels.Check;
using NativeParallel.Tensors;

namespace NativeParallel.Benchmarks;

/// <summary>One timed kernel: median time, what it achieved, and the baseline beside it.</summary>
/// <param name="Name">Kernel (or baseline) name.</param>
/// <param name="Shape">Problem size.</param>
/// <param name="MedianMs">Median of the timed runs, milliseconds.</param>
/// <param name="Achieved">GB/s (memory-bound kernels) or TFLOP/s (matmul).</param>
/// <param name="Unit">"GB/s" or "TFLOP/s".</param>
/// <param name="Baseline">What it is compared with: the measured device copy bandwidth, or cuBLAS.</param>
/// <param name="BaselineValue">The baseline's figure in the same unit (null when none is available).</param>
/// <param name="Check">Correctness of the timed output (relative error against the baseline or reference), or empty.</param>
public sealed record KernelBenchmarkResult(string Name, string Shape, double MedianMs, double Achieved, string Unit, string Baseline,
    double? BaselineValue, string Check)
{
    /// <summary>Achieved / baseline.</summary>
    public double? Ratio => BaselineValue is > 0 ? Achieved / BaselineValue : null;
}

/// <summary>
/// The first kernel benchmark (validate, then time, as llm.c does): median of event-timed runs after warm-up,
/// the L2 cache flushed before every run, figures in GB/s or TFLOP/s beside the measured device copy bandwidth
/// and, on CUDA, cuBLAS.
/// </summary>
public static class KernelBenchmarks
{
    /// <summary>Runs every benchmark on <paramref name="device"/>; <paramref name="progress"/> gets one line per result.</summary>
    public static IReadOnlyList<KernelBenchmarkResult> Run(IDevice device, int warmup, int repeats, Action<KernelBenchmarkResult> progress)
    {
        bool gpu = device.Kind == DeviceKind.Cuda;
        var results = new List<KernelBenchmarkResult>();
        void Add(KernelBenchmarkResult r)
        {
            results.Add(r);
            progress(r);
        }
        // Bigger than any L2 (H100: 50 MB, H200: 60 MB), and than this CPU's caches.
        using var flush = device.Allocate(gpu ? 256L << 20 : 64L << 20);
        var timer = new Timer(device, flush, warmup, repeats);

        // Device copy: the bandwidth roof that every memory-bound kernel is quoted against.
        long copyBytes = gpu ? 1L << 30 : 256L << 20;
        double copyGBs;
        using (var src = device.Allocate(copyBytes))
        using (var dst = device.Allocate(copyBytes))
        {
            device.Memset(src.Pointer, 1, copyBytes);
            double ms = timer.Median(() => device.CopyDeviceToDevice(src.Pointer, dst.Pointer, copyBytes));
            copyGBs = 2.0 * copyBytes / (ms * 1e6);
            Add(new("device copy (D2D)", $"{copyBytes >> 20} MiB", ms, copyGBs, "GB/s", "itself (read + write)", copyGBs, ""));
        }
        var k = device.Kernels;
        KernelBenchmarkResult Bandwidth(string name, string shape, double ms, double bytes) =>
            new(name, shape, ms, bytes / (ms * 1e6), "GB/s", "device copy", copyGBs, "");

        {
            int count = gpu ? 64 << 20 : 16 << 20;
            using var a = Tensor.Uniform(device, DType.F32, 1, -1, 1, count);
            using var b = Tensor.Uniform(device, DType.F32, 2, -1, 1, count);
            using var o = Tensor.Empty(device, DType.F32, count);
            double ms = timer.Median(() => k.Add(a, b, o));
            Add(Bandwidth("residual_add f32", $"{count >> 20} M elements", ms, 3.0 * count * 4));
        }
        {
            int rows = gpu ? 16384 : 2048, d = 4096;
            using var x = Tensor.Uniform(device, DType.BF16, 3, -1, 1, rows, d);
            using var w = Tensor.Uniform(device, DType.BF16, 4, 0.5f, 1.5f, d);
            using var y = Tensor.Empty(device, DType.BF16, rows, d);
            double ms = timer.Median(() => k.RmsNorm(x, w, y, 1e-5f));
            Add(Bandwidth("rmsnorm bf16", $"{rows} x {d}", ms, 2.0 * rows * d * 2 + d * 2));
        }
        {
            int rows = gpu ? 4096 : 256, n = 32000;
            using var x = Tensor.Uniform(device, DType.F32, 5, -8, 8, rows, n);
            using var y = Tensor.Empty(device, DType.F32, rows, n);
            double ms = timer.Median(() => k.Softmax(x, y, 1f));
            Add(Bandwidth("softmax f32", $"{rows} x {n}", ms, 2.0 * rows * n * 4));
        }
        {
            int batch = gpu ? 32 : 4, capacity = gpu ? 4096 : 1024, hq = 32, hkv = 8, d = 128;
            using var q = Tensor.Uniform(device, DType.BF16, 6, -1, 1, batch, hq, d);
            using var kc = Tensor.Uniform(device, DType.BF16, 7, -1, 1, batch, capacity, hkv, d);
            using var vc = Tensor.Uniform(device, DType.BF16, 8, -1, 1, batch, capacity, hkv, d);
            using var lengths = Tensor.FromInts(device, Enumerable.Repeat(capacity, batch).ToArray(), batch);
            using var o = Tensor.Empty(device, DType.BF16, batch, hq, d);
            double ms = timer.Median(() => k.AttentionDecode(q, kc, vc, lengths, o, 1f / MathF.Sqrt(d)));
            Add(Bandwidth("attention_decode bf16", $"b{batch} cache {capacity} hq{hq} hkv{hkv} d{d}", ms, 2.0 * batch * capacity * hkv * d * 2));
        }
        CublasHandle? cublas = null;
        string cublasNote = "cuBLAS";
        if (device is CudaDevice cuda)
        {
            try { cublas = new CublasHandle(cuda); }
            catch (Exception e) when (e is DllNotFoundException or Interop.CublasException) { cublasNote = $"cuBLAS unavailable ({e.Message.Split('\n')[0]})"; }
        }
        try
        {
            foreach (var dtype in new[] { DType.BF16, DType.F32 })
            {
                int m = gpu ? 4096 : 512;
                using var a = Tensor.Uniform(device, dtype, 9, -1, 1, m, m);
                using var b = Tensor.Uniform(device, dtype, 10, -1, 1, m, m);
                using var c = Tensor.Empty(device, dtype, m, m);
                double flops = 2.0 * m * m * m;
                double ms = timer.Median(() => k.Matmul(a, b, c));
                double tflops = flops / (ms * 1e9);
                string name = device.Kind == DeviceKind.Cpu ? $"matmul {dtype.Name()} (blocked, Vector256)"
                    : dtype == DType.BF16 ? "matmul bf16 (mma.sync tensor cores)" : "matmul f32 (SIMT tiles)";
                if (cublas is null)
                {
                    Add(new(name, $"{m}^3", ms, tflops, "TFLOP/s", gpu ? cublasNote : "none on cpu", null, ""));
                    continue;
                }
                using var reference = Tensor.Empty(device, dtype, m, m);
                double cublasMs = timer.Median(() => cublas.Matmul(a, b, reference));
                double error = ErrorBounds.RelativeError(c.ToFloats(), Array.ConvertAll(reference.ToFloats(), v => (double)v));
                Add(new($"cublasGemmEx {dtype.Name()}", $"{m}^3", cublasMs, flops / (cublasMs * 1e9), "TFLOP/s", "itself", flops / (cublasMs * 1e9), ""));
                Add(new(name, $"{m}^3", ms, tflops, "TFLOP/s", "cuBLAS", flops / (cublasMs * 1e9), $"rel err vs cuBLAS {error:E1}"));
            }
        }
        finally
        {
            cublas?.Dispose();
        }
        return results;
    }

    /// <summary>Event timing: warm-up runs, then per run an L2 flush (untimed), start event, the op, stop event.</summary>
    private sealed class Timer(IDevice device, DeviceBuffer flush, int warmup, int repeats)
    {
        public double Median(Action op)
        {
            for (int i = 0; i < warmup; i++) op();
            device.Synchronize();
            using var start = device.CreateEvent();
            using var stop = device.CreateEvent();
            var times = new double[repeats];
            for (int r = 0; r < repeats; r++)
            {
                device.Memset(flush.Pointer, (byte)r, flush.Bytes);
                start.Record();
                op();
                stop.Record();
                stop.Synchronize();
                times[r] = stop.ElapsedMillisecondsSince(start);
            }
            Array.Sort(times);
            return repeats % 2 == 1 ? times[repeats / 2] : 0.5 * (times[repeats / 2 - 1] + times[repeats / 2]);
        }
    }
}
