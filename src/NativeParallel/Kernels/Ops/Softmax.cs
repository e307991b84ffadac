using System.Runtime.InteropServices;
using NativeParallel.Diagnostics;
using NativeParallel.Kernels.Check;
using NativeParallel.Kernels.Cpu;
using NativeParallel.Kernels.Gpu;
using NativeParallel.Tensors;
using static NativeParallel.Kernels.Check.CaseKit;

namespace NativeParallel.Kernels.Ops;

/// <summary>
/// y = softmax(scale · x) over the last dimension. x, y: (rows, n); one dtype (f32 or bf16), computed in f32;
/// y may be x.
/// </summary>
[KernelOp("softmax", "softmax.cu")]
public static unsafe class Softmax
{
    private const string Op = "softmax";
    // v2 keeps the row in registers (v1, the three-pass row kernel, stays in the .cu).
    private static readonly EntryPoints Entry = new("softmax_fwd_v2");

    /// <summary>kernels/softmax.cu SoftmaxArgs.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct SoftmaxArgs
    {
        public ulong X, Y;
        public int Rows, N;
        public float Scale;
    }

    /// <summary>Runs on the tensors' device.</summary>
    public static void Run(Tensor x, Tensor y, float scale)
    {
        using var traced = Tracer.Kernel(Op, x, y);
        OpShapes.Common(Op, ("x", x), ("y", y));
        OpShapes.FloatType(Op, "x", x, DType.F32, DType.BF16);
        OpShapes.Require(y.DType == x.DType && y.Count == x.Count, Op, $"y must match x {x}, got {y}");
        var (rows, n) = OpShapes.RowsOf(x);
        if (OpLaunch.LauncherOf(x) is { } launcher)
        {
            if (rows == 0) return;
            var args = new SoftmaxArgs { X = x.Pointer, Y = y.Pointer, Rows = rows, N = n, Scale = scale };
            launcher.Launch("softmax.cu", Entry[x.DType], new Dim3(OpLaunch.RowGrid(launcher, rows)), new Dim3(OpLaunch.RowCacheBlock(n, x.DType, OpLaunch.RowVecs)), 0, args);
            return;
        }
        // The CPU path keeps bf16 in registers (Kernels/Cpu/CpuRowKernels.cs).
        CpuRowKernels.Softmax(x, y, rows, n, scale);
    }

    /// <summary>The float64 reference over rows of length n.</summary>
    public static double[] Reference(float[] x, int rows, int n, float scale)
    {
        var y = new double[x.Length];
        for (int r = 0; r < rows; r++)
        {
            double max = double.NegativeInfinity;
            for (int j = 0; j < n; j++) max = Math.Max(max, (double)scale * x[r * n + j]);
            double sum = 0;
            for (int j = 0; j < n; j++) sum += y[r * n + j] = Math.Exp((double)scale * x[r * n + j] - max);
            for (int j = 0; j < n; j++) y[r * n + j] /= sum;
        }
        return y;
    }

    internal static IEnumerable<KernelCase> Cases()
    {
        foreach (var dt in new[] { DType.F32, DType.BF16 })
            foreach (var (rows, n) in new[] { (0, 4), (1, 1), (3, 31), (5, 33), (4, 1000), (2, 32000), (2, 70001) })
                yield return Case(dt, rows, n);
    }

    private static KernelCase Case(DType dt, int rows, int n) =>
        new(Op, dt, $"rows={rows} n={n}", (device, seed) =>
        {
            using var s = new Scope(device);
            var x = Random(seed, 1, (long)rows * n, dt, -8f, 8f);
            var y = s.Poisoned(dt, rows, n);
            Run(s.Floats(x, dt, rows, n), y, 0.7f);
            return Compare(y, Reference(x, rows, n, 0.7f), dt);
        });
}
