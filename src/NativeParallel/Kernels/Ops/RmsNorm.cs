using System.Runtime.InteropServices;
using NativeParallel.Diagnostics;
using NativeParallel.Kernels.Check;
using NativeParallel.Kernels.Cpu;
using NativeParallel.Kernels.Gpu;
using NativeParallel.Tensors;
using static NativeParallel.Kernels.Check.CaseKit;

namespace NativeParallel.Kernels.Ops;

/// <summary>
/// RMSNorm over the last dimension: y = x / sqrt(mean(x²) + eps) · weight. x, y: (rows, d); weight: (d); one dtype
/// (f32 or bf16), computed in f32. y may be x.
/// </summary>
[KernelOp("rmsnorm", "rmsnorm.cu")]
public static unsafe class RmsNorm
{
    private const string Op = "rmsnorm";
    private const int NormVecs = 4;  // RMSNORM_VECS in rmsnorm.cu
    // v2 keeps the row in registers (v1, the two-pass row kernel, stays in the .cu).
    private static readonly EntryPoints Entry = new("rmsnorm_fwd_v2");

    /// <summary>kernels/rmsnorm.cu RmsNormArgs.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct RmsNormArgs
    {
        public ulong X, Weight, Y;
        public int Rows, D;
        public float Eps;
    }

    /// <summary>Runs on the tensors' device.</summary>
    public static void Run(Tensor x, Tensor weight, Tensor y, float eps)
    {
        using var traced = Tracer.Kernel(Op, x, weight, y);
        var (rows, d) = OpShapes.Norm(Op, x, weight, null, y);
        if (OpLaunch.LauncherOf(x) is { } launcher)
        {
            if (rows == 0) return;
            var args = new RmsNormArgs { X = x.Pointer, Weight = weight.Pointer, Y = y.Pointer, Rows = rows, D = d, Eps = eps };
            launcher.Launch("rmsnorm.cu", Entry[x.DType], new Dim3(OpLaunch.RowGrid(launcher, rows)), new Dim3(OpLaunch.RowCacheBlock(d, x.DType, NormVecs)), 0, args);
            return;
        }
        // The CPU path keeps bf16 in registers (Kernels/Cpu/CpuRowKernels.cs).
        CpuRowKernels.RmsNorm(x, weight, y, rows, d, eps);
    }

    /// <summary>The float64 reference over rows of length d.</summary>
    public static double[] Reference(float[] x, float[] weight, int rows, int d, float eps)
    {
        var y = new double[rows * d];
        for (int r = 0; r < rows; r++)
        {
            double sumSquares = 0;
            for (int j = 0; j < d; j++) sumSquares += (double)x[r * d + j] * x[r * d + j];
            double inv = 1.0 / Math.Sqrt(sumSquares / d + eps);
            for (int j = 0; j < d; j++) y[r * d + j] = x[r * d + j] * inv * weight[j];
        }
        return y;
    }

    /// <summary>The row shapes the norms (rmsnorm, layernorm) are checked at.</summary>
    internal static readonly (int Rows, int D)[] Shapes = [(0, 8), (1, 1), (3, 31), (5, 33), (17, 1000), (2, 4096), (2, 40001)];

    internal static IEnumerable<KernelCase> Cases()
    {
        foreach (var dt in new[] { DType.F32, DType.BF16 })
            foreach (var (rows, d) in Shapes)
                yield return Case(dt, rows, d);
    }

    private static KernelCase Case(DType dt, int rows, int d) =>
        new(Op, dt, $"rows={rows} d={d}", (device, seed) =>
        {
            using var s = new Scope(device);
            var x = Random(seed, 1, (long)rows * d, dt);
            var w = Random(seed, 2, d, dt, 0.5f, 1.5f);
            var y = s.Poisoned(dt, rows, d);
            Run(s.Floats(x, dt, rows, d), s.Floats(w, dt, d), y, 1e-5f);
            return Compare(y, Reference(x, w, rows, d, 1e-5f), dt);
        });
}
