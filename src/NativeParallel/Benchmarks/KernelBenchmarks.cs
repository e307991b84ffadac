using NativeParallel.Devices;
using NativeParallel.Kernels;
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
/// and, on CUDA, cuBLAS. On the CPU a memory-bound kernel's row also gives its rate warm in L3 against the copy: its
/// ceiling on this machine when memory is not the limit. (Pairing each run with a copy run, for a ratio steadier under
/// drifting load, was tried and dropped: a short kernel timed right after a 256 MB copy on every core ran up to a
/// third slower, decode 0.89-1.14 ms against 0.69-0.94 unpaired.)
/// </summary>
public static class KernelBenchmarks
{
    /// <summary>The op names <c>bench kernels --op</c> takes (the first word of each result's name).</summary>
    public static readonly IReadOnlyList<string> Ops =
        ["residual_add", "rmsnorm", "layernorm", "swiglu", "embedding", "softmax", "attention_decode", "attention_prefill", "cross_entropy", "adamw", "moe_combine", "matmul_bwd", "attention_train", "matmul"];

    /// <summary>
    /// Runs the benchmarks on <paramref name="device"/> (only <paramref name="op"/>'s when given; the device copy, the
    /// roof of the others, always); <paramref name="allVersions"/> times every version of an op side by side (llm.c's
    /// kernel versions: the CPU's matmul, v1 dot products, v2 packed on Vector256 and, with AVX-512, v2 and v3 on Vector512; on a
    /// device, the bf16 matmul's and matmul_bwd's versions of <see cref="KernelVersions"/>). <paramref name="progress"/> gets one line per result.
    /// </summary>
    public static IReadOnlyList<KernelBenchmarkResult> Run(IDevice device, int warmup, int repeats, Action<KernelBenchmarkResult> progress,
        string? op = null, bool allVersions = false)
    {
        if (op is not null && !Ops.Contains(op)) throw new ArgumentException($"no kernel benchmark named '{op}'; there are {string.Join(", ", Ops)}", nameof(op));
        bool Wants(string stem) => op is null || op == stem;
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
            // On the CPU the roof is a copy on every core, as the kernels run: one memcpy thread reaches less than the
            // multi-threaded element-wise kernels do.
            double copyMs = device.Kind == DeviceKind.Cpu
                ? timer.Median(() => CopyOnEveryCore(src.Pointer, dst.Pointer, copyBytes))
                : timer.Median(() => device.CopyDeviceToDevice(src.Pointer, dst.Pointer, copyBytes));
            copyGBs = 2.0 * copyBytes / (copyMs * 1e6);
            Add(new(device.Kind == DeviceKind.Cpu ? "device copy (every core)" : "device copy (D2D)", $"{copyBytes >> 20} MiB", copyMs, copyGBs, "GB/s", "itself (read + write)", copyGBs, ""));
        }
        var k = device.Kernels;
        // A memory-bound kernel moving `bytes` per run, against the copy. On the CPU, `resident` is the same kernel on
        // the first rows only (~10 MB, inside this CPU's L3), run warm: its rate against the copy is the kernel's own
        // ceiling here, what its arithmetic allows when memory is not the limit.
        KernelBenchmarkResult Bandwidth(string name, string shape, Action op, double bytes, Action? resident = null, double residentBytes = 0)
        {
            double ms = timer.Median(op);
            string ceiling = resident is null || gpu ? "" : $"warm in L3: {residentBytes / (timer.Warm(resident) * 1e6) / copyGBs:P0} of the copy";
            return new(name, shape, ms, bytes / (ms * 1e6), "GB/s", "device copy", copyGBs, ceiling);
        }

        if (Wants("residual_add"))
        {
            int count = gpu ? 64 << 20 : 16 << 20;
            using var a = Tensor.Uniform(device, DType.F32, 1, -1, 1, count);
            using var b = Tensor.Uniform(device, DType.F32, 2, -1, 1, count);
            using var o = Tensor.Empty(device, DType.F32, count);
            const int resident = 1 << 20;
            Add(Bandwidth("residual_add f32", $"{count >> 20} M elements", () => k.Add(a, b, o), 3.0 * count * 4,
                () => k.Add(a.Narrow(0, 0, resident), b.Narrow(0, 0, resident), o.Narrow(0, 0, resident)), 3.0 * resident * 4));
        }
        if (Wants("rmsnorm"))
        {
            int rows = gpu ? 16384 : 2048, d = 4096;
            using var x = Tensor.Uniform(device, DType.BF16, 3, -1, 1, rows, d);
            using var w = Tensor.Uniform(device, DType.BF16, 4, 0.5f, 1.5f, d);
            using var y = Tensor.Empty(device, DType.BF16, rows, d);
            const int resident = 600;
            Add(Bandwidth("rmsnorm bf16", $"{rows} x {d}", () => k.RmsNorm(x, w, y, 1e-5f), 2.0 * rows * d * 2 + d * 2,
                () => k.RmsNorm(x.Narrow(0, 0, resident), w, y.Narrow(0, 0, resident), 1e-5f), 2.0 * resident * d * 2 + d * 2));
        }
        if (Wants("layernorm"))
        {
            int rows = gpu ? 16384 : 2048, d = 4096;
            using var x = Tensor.Uniform(device, DType.BF16, 35, -1, 1, rows, d);
            using var w = Tensor.Uniform(device, DType.BF16, 36, 0.5f, 1.5f, d);
            using var bias = Tensor.Uniform(device, DType.BF16, 37, -0.5f, 0.5f, d);
            using var y = Tensor.Empty(device, DType.BF16, rows, d);
            const int resident = 600;
            Add(Bandwidth("layernorm bf16", $"{rows} x {d}", () => k.LayerNorm(x, w, bias, y, 1e-5f), 2.0 * rows * d * 2 + 2.0 * d * 2,
                () => k.LayerNorm(x.Narrow(0, 0, resident), w, bias, y.Narrow(0, 0, resident), 1e-5f), 2.0 * resident * d * 2 + 2.0 * d * 2));
        }
        if (Wants("swiglu"))
        {
            int rows = gpu ? 16384 : 2048, hidden = 4096;
            using var gate = Tensor.Uniform(device, DType.BF16, 38, -4, 4, rows, hidden);
            using var up = Tensor.Uniform(device, DType.BF16, 39, -4, 4, rows, hidden);
            using var o = Tensor.Empty(device, DType.BF16, rows, hidden);
            const int resident = 400;
            Add(Bandwidth("swiglu bf16", $"{rows} x {hidden}", () => k.SwiGlu(gate, up, o), 3.0 * rows * hidden * 2,
                () => k.SwiGlu(gate.Narrow(0, 0, resident), up.Narrow(0, 0, resident), o.Narrow(0, 0, resident)), 3.0 * resident * hidden * 2));
        }
        if (Wants("embedding"))
        {
            // A GPT-2-sized table, each token's row read once and written to the output.
            int tokens = gpu ? 32768 : 4096, vocab = 50257, d = 2048;
            using var ids = Tensor.FromInts(device, Enumerable.Range(0, tokens).Select(i => (int)((i * 7919L) % vocab)).ToArray(), tokens);
            using var table = Tensor.Uniform(device, DType.BF16, 40, -1, 1, vocab, d);
            using var o = Tensor.Empty(device, DType.BF16, tokens, d);
            Add(Bandwidth("embedding bf16", $"{tokens} tokens x {d}", () => k.Embedding(ids, table, o), 2.0 * tokens * d * 2 + tokens * 4.0));
        }
        if (Wants("softmax"))
        {
            int rows = gpu ? 4096 : 256, n = 32000;
            using var x = Tensor.Uniform(device, DType.F32, 5, -8, 8, rows, n);
            using var y = Tensor.Empty(device, DType.F32, rows, n);
            const int resident = 40;
            Add(Bandwidth("softmax f32", $"{rows} x {n}", () => k.Softmax(x, y, 1f), 2.0 * rows * n * 4,
                () => k.Softmax(x.Narrow(0, 0, resident), y.Narrow(0, 0, resident), 1f), 2.0 * resident * n * 4));
        }
        if (Wants("attention_decode"))
        {
            int batch = gpu ? 32 : 4, capacity = gpu ? 4096 : 1024, hq = 32, hkv = 8, d = 128;
            using var q = Tensor.Uniform(device, DType.BF16, 6, -1, 1, batch, hq, d);
            using var kc = Tensor.Uniform(device, DType.BF16, 7, -1, 1, batch, capacity, hkv, d);
            using var vc = Tensor.Uniform(device, DType.BF16, 8, -1, 1, batch, capacity, hkv, d);
            using var lengths = Tensor.FromInts(device, Enumerable.Repeat(capacity, batch).ToArray(), batch);
            using var o = Tensor.Empty(device, DType.BF16, batch, hq, d);
            // Resident: the first two sequences (8 MB of cache), both cores' worth of heads.
            const int resident = 2;
            Add(Bandwidth("attention_decode bf16", $"b{batch} cache {capacity} hq{hq} hkv{hkv} d{d}",
                () => k.AttentionDecode(q, kc, vc, lengths, o, 1f / MathF.Sqrt(d)), 2.0 * batch * capacity * hkv * d * 2,
                () => k.AttentionDecode(q.Narrow(0, 0, resident), kc.Narrow(0, 0, resident), vc.Narrow(0, 0, resident), lengths.Narrow(0, 0, resident),
                    o.Narrow(0, 0, resident), 1f / MathF.Sqrt(d)), 2.0 * resident * capacity * hkv * d * 2));
        }
        if (Wants("attention_prefill"))
        {
            int batch = gpu ? 8 : 1, t = gpu ? 2048 : 512, hq = 32, hkv = 8, d = 128;
            using var q = Tensor.Uniform(device, DType.BF16, 32, -1, 1, batch, t, hq, d);
            using var kk = Tensor.Uniform(device, DType.BF16, 33, -1, 1, batch, t, hkv, d);
            using var vv = Tensor.Uniform(device, DType.BF16, 34, -1, 1, batch, t, hkv, d);
            using var o = Tensor.Empty(device, DType.BF16, batch, t, hq, d);
            double ms = timer.Median(() => k.AttentionPrefill(q, kk, vv, o, 0, 1f / MathF.Sqrt(d)));
            // Causal: t(t + 1)/2 scores per head, two products (QKᵀ, PV) of 2 flops per multiply-add.
            double flops = 2.0 * 2 * batch * hq * (t * (t + 1.0) / 2) * d;
            Add(new("attention_prefill bf16", $"b{batch} t{t} hq{hq} hkv{hkv} d{d}", ms, flops / (ms * 1e9), "TFLOP/s",
                gpu ? "none yet" : "none on cpu", null, ""));
        }
        TrainingKernels(device, gpu, timer, Bandwidth, Add, Wants, allVersions);
        CublasHandle? cublas = null;
        string cublasNote = "cuBLAS";
        if (device is CudaDevice cuda)
        {
            try { cublas = new CublasHandle(cuda); }
            catch (Exception e) when (e is DllNotFoundException or Interop.CublasException) { cublasNote = $"cuBLAS unavailable ({e.Message.Split('\n')[0]})"; }
        }
        try
        {
            foreach (var dtype in Wants("matmul") ? new[] { DType.BF16, DType.F32 } : [])
            {
                int m = gpu ? 4096 : 1024; // the CPU at 1024^3, the size docs/benchmarks.md compares with OpenBLAS
                using var a = Tensor.Uniform(device, dtype, 9, -1, 1, m, m);
                using var b = Tensor.Uniform(device, dtype, 10, -1, 1, m, m);
                using var c = Tensor.Empty(device, dtype, m, m);
                double flops = 2.0 * m * m * m;
                if (device.Kind == DeviceKind.Cpu)
                {
                    foreach (var (version, run) in CpuMatmulVersions(allVersions))
                    {
                        double cpuMs = timer.Median(() => run(() => k.Matmul(a, b, c)));
                        Add(new($"matmul {dtype.Name()} ({version})", $"{m}^3", cpuMs, flops / (cpuMs * 1e9), "TFLOP/s", "none on cpu", null, ""));
                    }
                    continue;
                }
                // bf16 runs each tensor-core version asked for (the default, or all side by side); f32 has v1 only.
                string[] versions = dtype != DType.BF16 ? ["v1"] : allVersions ? KernelVersions.Ops["matmul"].Versions : [KernelVersions.Selected("matmul")];
                using var reference = cublas is null ? null : Tensor.Empty(device, dtype, m, m);
                double? cublasRate = null;
                if (cublas is not null)
                {
                    double cublasMs = timer.Median(() => cublas.Matmul(a, b, reference!));
                    cublasRate = flops / (cublasMs * 1e9);
                    Add(new($"cublasGemmEx {dtype.Name()}", $"{m}^3", cublasMs, cublasRate.Value, "TFLOP/s", "itself", cublasRate, ""));
                }
                foreach (string version in versions)
                {
                    using var chosen = dtype == DType.BF16 ? KernelVersions.Use("matmul", version) : null;
                    double ms = timer.Median(() => k.Matmul(a, b, c));
                    string name = $"matmul {dtype.Name()} ({version} {KernelVersions.Describe("matmul", version)})";
                    if (reference is null)
                    {
                        Add(new(name, $"{m}^3", ms, flops / (ms * 1e9), "TFLOP/s", gpu ? cublasNote : "none on cpu", null, ""));
                        continue;
                    }
                    double error = ErrorBounds.RelativeError(c.ToFloats(), Array.ConvertAll(reference.ToFloats(), v => (double)v));
                    Add(new(name, $"{m}^3", ms, flops / (ms * 1e9), "TFLOP/s", "cuBLAS", cublasRate, $"rel err vs cuBLAS {error:E1}"));
                }
            }
        }
        finally
        {
            cublas?.Dispose();
        }
        return results;
    }

    // The training step's kernels (Kernels/Ops/), at the shapes of a GPT-2-vocabulary training step: memory-bound ones
    // against the copy bandwidth, matmul and attention in TFLOP/s.
    private static void TrainingKernels(IDevice device, bool gpu, Timer timer, Func<string, string, Action, double, Action?, double, KernelBenchmarkResult> bandwidth,
        Action<KernelBenchmarkResult> add, Func<string, bool> wants, bool allVersions)
    {
        KernelBenchmarkResult Flops(string name, string shape, double ms, double flops) =>
            new(name, shape, ms, flops / (ms * 1e9), "TFLOP/s", gpu ? "none yet" : "none on cpu", null, "");
        if (wants("cross_entropy"))
        {
            int rows = gpu ? 8192 : 256, vocab = 50257;
            using var logits = Tensor.Uniform(device, DType.BF16, 20, -4, 4, rows, vocab);
            using var targets = Tensor.FromInts(device, Enumerable.Range(0, rows).Select(i => i * 7 % vocab).ToArray(), rows);
            using var losses = Tensor.Empty(device, DType.F32, rows);
            using var dLogits = Tensor.Empty(device, DType.BF16, rows, vocab);
            const int resident = 48;
            add(bandwidth("cross_entropy bf16 (loss + dlogits)", $"{rows} x {vocab}",
                () => Kernels.Ops.CrossEntropy.Run(logits, targets, losses, dLogits, 1f / rows), 2.0 * rows * vocab * 2,
                () => Kernels.Ops.CrossEntropy.Run(logits.Narrow(0, 0, resident), targets.Narrow(0, 0, resident), losses.Narrow(0, 0, resident),
                    dLogits.Narrow(0, 0, resident), 1f / rows), 2.0 * resident * vocab * 2));
        }
        if (wants("adamw"))
        {
            int count = gpu ? 64 << 20 : 8 << 20;
            using var p = Tensor.Uniform(device, DType.F32, 21, -1, 1, count);
            using var g = Tensor.Uniform(device, DType.BF16, 22, -1, 1, count);
            using var m = Tensor.Uniform(device, DType.F32, 23, -1, 1, count);
            using var v = Tensor.Uniform(device, DType.F32, 24, 0, 1, count);
            using var copy = Tensor.Empty(device, DType.BF16, count);
            var settings = new Kernels.Ops.AdamWSettings(1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f);
            // Reads p, g, m, v; writes p, m, v and the bf16 copy.
            const int resident = 1 << 19;
            add(bandwidth("adamw (f32 master, bf16 grad and copy)", $"{count >> 20} M parameters",
                () => Kernels.Ops.AdamW.Step(p, g, m, v, settings, 10, 1f, copy), count * (4.0 * 6 + 2 * 2),
                () => Kernels.Ops.AdamW.Step(p.Narrow(0, 0, resident), g.Narrow(0, 0, resident), m.Narrow(0, 0, resident), v.Narrow(0, 0, resident),
                    settings, 10, 1f, copy.Narrow(0, 0, resident)), resident * (4.0 * 6 + 2 * 2)));
        }
        if (wants("moe_combine"))
        {
            // Each token's two experts' rows (a plan's permutation, scattered) weighted and summed; backward: the rows'
            // gradients and the weights' dot products.
            int tokens = gpu ? 16384 : 4096, k = 2, cols = gpu ? 4096 : 2048, slots = tokens * k;
            using var y = Tensor.Uniform(device, DType.BF16, 41, -1, 1, slots, cols);
            using var position = Tensor.FromInts(device, Enumerable.Range(0, slots).Select(i => (int)(i * 7919L % slots)).ToArray(), slots);
            using var weights = Tensor.Uniform(device, DType.F32, 42, 0, 1, tokens, k);
            using var output = Tensor.Empty(device, DType.BF16, tokens, cols);
            using var dY = Tensor.Empty(device, DType.BF16, slots, cols);
            using var dWeights = Tensor.Empty(device, DType.F32, tokens, k);
            double rows = 2.0 * slots * cols, outputs = 2.0 * tokens * cols;
            add(bandwidth("moe_combine bf16", $"{tokens} tokens x top-{k} x {cols}", () => Kernels.Ops.MoeCombine.Run(y, position, weights, output),
                rows + outputs, null, 0));
            add(bandwidth("moe_combine_bwd bf16", $"{tokens} tokens x top-{k} x {cols}",
                () => Kernels.Ops.MoeCombineBackward.Run(output, y, position, weights, dY, dWeights), 2 * rows + outputs, null, 0));
        }
        if (wants("matmul_bwd"))
        {
            int m = gpu ? 8192 : 512, n = gpu ? 4096 : 512, k = gpu ? 4096 : 512;
            using var dY = Tensor.Uniform(device, DType.BF16, 25, -1, 1, m, n);
            using var w = Tensor.Uniform(device, DType.BF16, 26, -1, 1, n, k);
            using var x = Tensor.Uniform(device, DType.BF16, 27, -1, 1, m, k);
            using var dX = Tensor.Empty(device, DType.BF16, m, k);
            using var dW = Tensor.Empty(device, DType.BF16, n, k);
            double flops = 2.0 * m * n * k;
            // The CPU has one path; a device runs each version asked for (the default, or all side by side).
            string[] versions = device.Kind == DeviceKind.Cpu ? ["cpu"] : allVersions ? KernelVersions.Ops["matmul_bwd"].Versions : [KernelVersions.Selected("matmul_bwd")];
            foreach (string version in versions)
            {
                using var chosen = version == "cpu" ? null : KernelVersions.Use("matmul_bwd", version);
                string how = version == "cpu" ? "packed GEMM" : $"{version} {KernelVersions.Describe("matmul_bwd", version)}";
                add(Flops($"matmul_bwd dX = dY·W bf16 ({how})", $"{m}x{n}x{k}", timer.Median(() => Kernels.Ops.MatmulBackward.InputGrad(dY, w, dX)), flops));
                add(Flops($"matmul_bwd dW = dYᵀ·X bf16 ({how})", $"{m}x{n}x{k}", timer.Median(() => Kernels.Ops.MatmulBackward.WeightGrad(dY, x, dW, accumulate: false)), flops));
            }
        }
        if (wants("attention_train"))
        {
            int b = gpu ? 8 : 2, t = gpu ? 1024 : 128, hq = 8, hkv = 2, d = 64;
            using var q = Tensor.Uniform(device, DType.BF16, 28, -1, 1, b, t, hq, d);
            using var kk = Tensor.Uniform(device, DType.BF16, 29, -1, 1, b, t, hkv, d);
            using var vv = Tensor.Uniform(device, DType.BF16, 30, -1, 1, b, t, hkv, d);
            using var o = Tensor.Empty(device, DType.BF16, b, t, hq, d);
            using var lse = Tensor.Empty(device, DType.F32, b, hq, t);
            using var dO = Tensor.Uniform(device, DType.BF16, 31, -1, 1, b, t, hq, d);
            using var dq = Tensor.Empty(device, DType.BF16, b, t, hq, d);
            using var dk = Tensor.Empty(device, DType.BF16, b, t, hkv, d);
            using var dv = Tensor.Empty(device, DType.BF16, b, t, hkv, d);
            float scale = 1f / MathF.Sqrt(d);
            // Causal: half of the T² scores; 2 matmuls forward (QKᵀ, PV), 5 backward.
            double forward = 2.0 * 2 * b * hq * t * (double)t / 2 * d;
            add(Flops("attention_train forward bf16", $"b{b} t{t} hq{hq} hkv{hkv} d{d}", timer.Median(() => Kernels.Ops.AttentionTraining.Forward(q, kk, vv, o, lse, scale)), forward));
            add(Flops("attention_train backward bf16", $"b{b} t{t} hq{hq} hkv{hkv} d{d}",
                timer.Median(() => Kernels.Ops.AttentionTraining.Backward(q, kk, vv, o, lse, dO, dq, dk, dv, scale)), forward * 2.5));
        }
    }

    // The CPU matmul's versions, each a way to run the op: the default only, or all of them side by side.
    private static IEnumerable<(string Name, Action<Action> Run)> CpuMatmulVersions(bool all)
    {
        if (!all)
        {
            yield return (CpuMatmulDefault(), op => op());
            yield break;
        }
        yield return ("v1 dot products, Vector256", op => WithCpuGemm(int.MaxValue, Kernels.Cpu.CpuPackedGemm.PreferVector512, 2, op));
        yield return ("v2 packed 6x16, Vector256", op => WithCpuGemm(Kernels.Cpu.CpuGemm.PackedFromRows, false, 2, op));
        if (System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated)
        {
            yield return ("v2 packed 6x32, Vector512", op => WithCpuGemm(Kernels.Cpu.CpuGemm.PackedFromRows, true, 2, op));
            yield return ("v3 packed 12x32, Vector512", op => WithCpuGemm(Kernels.Cpu.CpuGemm.PackedFromRows, true, 3, op));
        }
    }

    private static string CpuMatmulDefault() => !Kernels.Cpu.CpuPackedGemm.UsesVector512 ? "v2 packed 6x16, Vector256"
        : Kernels.Cpu.CpuPackedGemm.Version >= 3 ? "v3 packed 12x32, Vector512" : "v2 packed 6x32, Vector512";

    private static void WithCpuGemm(int packedFromRows, bool wide, int version, Action op)
    {
        var gemm = (Kernels.Cpu.CpuGemm.PackedFromRows, Kernels.Cpu.CpuPackedGemm.PreferVector512, Kernels.Cpu.CpuPackedGemm.Version);
        try
        {
            (Kernels.Cpu.CpuGemm.PackedFromRows, Kernels.Cpu.CpuPackedGemm.PreferVector512, Kernels.Cpu.CpuPackedGemm.Version) = (packedFromRows, wide, version);
            op();
        }
        finally
        {
            (Kernels.Cpu.CpuGemm.PackedFromRows, Kernels.Cpu.CpuPackedGemm.PreferVector512, Kernels.Cpu.CpuPackedGemm.Version) = gemm;
        }
    }

    // Host memory copied in 1 MiB pieces spread over the cores.
    private static unsafe void CopyOnEveryCore(ulong source, ulong destination, long bytes)
    {
        const long piece = 1 << 20;
        Kernels.Cpu.CpuParallel.For((int)((bytes + piece - 1) / piece), piece, (start, end) =>
        {
            for (int i = start; i < end; i++)
            {
                long offset = i * piece, length = Math.Min(piece, bytes - offset);
                Buffer.MemoryCopy((void*)(source + (ulong)offset), (void*)(destination + (ulong)offset), length, length);
            }
        });
    }

    /// <summary>Event timing: warm-up runs, then per run an L2 flush (untimed), start event, the op, stop event.</summary>
    private sealed class Timer(IDevice device, DeviceBuffer flush, int warmup, int repeats)
    {
        /// <summary>The median of <paramref name="op"/>'s runs without the flush: what it reaches on data left in the caches by the run before.</summary>
        public double Warm(Action op)
        {
            for (int i = 0; i < warmup; i++) op();
            device.Synchronize();
            using var start = device.CreateEvent();
            using var stop = device.CreateEvent();
            var times = new double[repeats];
            for (int r = 0; r < repeats; r++)
            {
                start.Record();
                op();
                stop.Record();
                stop.Synchronize();
                times[r] = stop.ElapsedMillisecondsSince(start);
            }
            return MedianOf(times);
        }

        public double Median(Action op)
        {
            for (int i = 0; i < warmup; i++) op();
            device.Synchronize();
            var times = new double[repeats];
            for (int r = 0; r < repeats; r++) times[r] = Time(op, r);
            return MedianOf(times);
        }

        private double Time(Action op, int run)
        {
            using var start = device.CreateEvent();
            using var stop = device.CreateEvent();
            device.Memset(flush.Pointer, (byte)run, flush.Bytes);
            start.Record();
            op();
            stop.Record();
            stop.Synchronize();
            return stop.ElapsedMillisecondsSince(start);
        }

        private static double MedianOf(double[] values)
        {
            Array.Sort(values);
            int n = values.Length;
            return n % 2 == 1 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
        }
    }
}
