using System.Runtime.InteropServices;
using NativeParallel.Diagnostics;
using NativeParallel.Kernels.Check;
using NativeParallel.Kernels.Cpu;
using NativeParallel.Tensors;
using static NativeParallel.Kernels.Check.CaseKit;

namespace NativeParallel.Kernels.Ops;

/// <summary>
/// Cross-entropy of logits against integer targets, forward and backward in one pass over the rows:
/// losses[r] = logsumexp(logits[r]) − logits[r, targets[r]] and
/// dLogits[r] = gradScale · (softmax(logits[r]) − onehot(targets[r])).
/// logits: (rows, V) f32 or bf16; targets: i32 (rows); losses: f32 (rows); dLogits: (rows, V) of logits' dtype, and may
/// be logits itself (in place). A target outside [0, V) ignores its row: loss 0 and a zero dLogits row. gradScale is
/// 1/N for the mean loss over N rows (the losses themselves are never scaled). Computed in f32.
/// </summary>
[KernelOp("cross_entropy", "cross_entropy.cu")]
public static unsafe class CrossEntropy
{
    private const string Op = "cross_entropy";
    private static readonly EntryPoints Entry = new("cross_entropy_v2");  // v2: the row in registers (cross_entropy.cu)

    /// <summary>kernels/cross_entropy.cu CrossEntropyArgs.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct CrossEntropyArgs
    {
        public ulong Logits, Targets, Losses, DLogits;
        public int Rows, V;
        public float GradScale;
    }

    /// <summary>Runs on the tensors' device.</summary>
    public static void Run(Tensor logits, Tensor targets, Tensor losses, Tensor dLogits, float gradScale)
    {
        using var traced = Tracer.Kernel("cross_entropy", logits, targets, losses, dLogits);
        var (rows, v) = Check(logits, targets, losses, dLogits);
        if (rows == 0) return;
        if (OpLaunch.LauncherOf(logits) is { } launcher)
        {
            var args = new CrossEntropyArgs
            {
                Logits = logits.Pointer, Targets = targets.Pointer, Losses = losses.Pointer, DLogits = dLogits.Pointer,
                Rows = rows, V = v, GradScale = gradScale,
            };
            launcher.Launch("cross_entropy.cu", Entry[logits.DType], new Gpu.Dim3(OpLaunch.RowGrid(launcher, rows)),
                new Gpu.Dim3(OpLaunch.RowCacheBlock(v, logits.DType, OpLaunch.RowVecs)), 0, args);
            return;
        }
        Cpu(logits, targets, losses, dLogits, rows, v, gradScale);
    }

    private static (int Rows, int V) Check(Tensor logits, Tensor targets, Tensor losses, Tensor dLogits)
    {
        foreach (var (name, t) in new[] { ("logits", logits), ("targets", targets), ("losses", losses), ("dLogits", dLogits) })
        {
            OpShapes.Require(t.IsContiguous, Op, $"{name} must be contiguous, got a strided view {t}");
            OpShapes.Require(ReferenceEquals(t.Device, logits.Device), Op, $"{name} is on {t.Device.Name}, logits on {logits.Device.Name}");
        }
        OpShapes.Require(logits.DType is DType.F32 or DType.BF16, Op, $"logits has dtype {logits.DType.Name()}; supported: f32, bf16");
        OpShapes.Require(logits.Rank >= 1, Op, $"logits must be (rows, V), got {logits}");
        var (rows, v) = OpShapes.RowsOf(logits);
        if (v == 0) rows = checked((int)Tensor.CountOf(logits.Shape[..^1])); // (rows, 0): every row ignored
        OpShapes.Require(targets.DType == DType.I32 && targets.Count == rows, Op, $"targets must be i32 with {rows} elements (rows of logits {logits}), got {targets}");
        OpShapes.Require(losses.DType == DType.F32 && losses.Count == rows, Op, $"losses must be f32 with {rows} elements, got {losses}");
        OpShapes.Require(dLogits.DType == logits.DType && dLogits.Count == logits.Count, Op, $"dLogits must match logits {logits}, got {dLogits}");
        return (rows, v);
    }

    // One pass over memory, bf16 in registers, exp vectorised (Kernels/Cpu/CpuRowKernels.cs); dLogits may be logits.
    private static void Cpu(Tensor logits, Tensor targets, Tensor losses, Tensor dLogits, int rows, int v, float gradScale) =>
        CpuRowKernels.CrossEntropy(logits, targets, losses, dLogits, rows, v, gradScale);

    /// <summary>The float64 reference: (losses, dLogits) of <paramref name="logits"/> (rows × v).</summary>
    public static (double[] Losses, double[] DLogits) Reference(float[] logits, int[] targets, int rows, int v, double gradScale)
    {
        var losses = new double[rows];
        var dLogits = new double[(long)rows * v];
        for (int r = 0; r < rows; r++)
        {
            int t = targets[r];
            if ((uint)t >= (uint)v) continue;
            long b = (long)r * v;
            double max = double.NegativeInfinity, sum = 0;
            for (int j = 0; j < v; j++) max = Math.Max(max, logits[b + j]);
            for (int j = 0; j < v; j++) sum += Math.Exp(logits[b + j] - max);
            losses[r] = max + Math.Log(sum) - logits[b + t];
            for (int j = 0; j < v; j++) dLogits[b + j] = gradScale * (Math.Exp(logits[b + j] - max) / sum - (j == t ? 1 : 0));
        }
        return (losses, dLogits);
    }

    internal static IEnumerable<KernelCase> Cases()
    {
        foreach (var dt in new[] { DType.F32, DType.BF16 })
        {
            foreach (var (rows, v) in new[] { (0, 5), (1, 1), (3, 31), (5, 1000), (2, 50257) }) yield return Case(dt, rows, v, ignored: false, inPlace: false);
            yield return Case(dt, 4, 257, ignored: true, inPlace: false);
            yield return Case(dt, 3, 1000, ignored: true, inPlace: true);
            yield return Case(dt, 2, 50257, ignored: false, inPlace: true);
        }
    }

    private static KernelCase Case(DType dt, int rows, int v, bool ignored, bool inPlace) =>
        new(Op, dt, $"rows={rows} V={v}{(ignored ? " one ignored" : "")}{(inPlace ? " in-place" : "")}", (device, seed) =>
        {
            using var s = new Scope(device);
            // Logits spread wide enough that the softmax is far from uniform; ignored rows take targets -1 and V.
            var logits = Random(seed, 1, (long)rows * v, dt, -8f, 8f);
            var targets = RandomInts(seed, 2, rows, Math.Max(v, 1));
            if (ignored) targets[rows / 2] = (seed & 1) == 0 ? -1 : v;
            float gradScale = rows == 0 ? 1f : 1f / rows;
            var logitsTensor = s.Floats(logits, dt, rows, v);
            var losses = s.Poisoned(DType.F32, rows);
            var dLogits = inPlace ? logitsTensor : s.Poisoned(dt, rows, v);
            Run(logitsTensor, s.Ints(targets, rows), losses, dLogits, gradScale);
            var (refLosses, refD) = Reference(logits, targets, rows, v, gradScale);
            return Worst(Compare(losses, refLosses, DType.F32), Compare(dLogits, refD, dt));
        });
}
