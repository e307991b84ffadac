using System.Runtime.InteropServices;
using NativeParallel.Diagnostics;
using NativeParallel.Kernels.Check;
using NativeParallel.Kernels.Cpu;
using NativeParallel.Tensors;
using static NativeParallel.Kernels.Check.CaseKit;

namespace NativeParallel.Kernels.Ops;

/// <summary>
/// LayerNorm over the last dimension: y = (x − mean) / sqrt(var + eps) · weight + bias, var biased (as PyTorch).
/// x, y: (rows, d); weight, bias: (d); one dtype (f32 or bf16), computed in f32. y may be x.
/// </summary>
[KernelOp("layernorm", "layernorm.cu")]
public static unsafe class LayerNorm
{
    private const string Op = "layernorm";
    private static readonly EntryPoints Entry = new("layernorm_fwd");

    /// <summary>kernels/layernorm.cu LayerNormArgs.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct LayerNormArgs
    {
        public ulong X, Weight, Bias, Y;
        public int Rows, D;
        public float Eps;
    }

    /// <summary>Runs on the tensors' device.</summary>
    public static void Run(Tensor x, Tensor weight, Tensor bias, Tensor y, float eps)
    {
        using var traced = Tracer.Kernel(Op, x, weight, bias, y);
        var (rows, d) = OpShapes.Norm(Op, x, weight, bias, y);
        if (OpLaunch.LauncherOf(x) is { } launcher)
        {
            if (rows == 0) return;
            var args = new LayerNormArgs { X = x.Pointer, Weight = weight.Pointer, Bias = bias.Pointer, Y = y.Pointer, Rows = rows, D = d, Eps = eps };
            launcher.Launch("layernorm.cu", Entry[x.DType], new Gpu.Dim3(OpLaunch.RowGrid(launcher, rows)), new Gpu.Dim3(OpLaunch.Block), 0, args);
            return;
        }
        CpuRowKernels.LayerNorm(x, weight, bias, y, rows, d, eps);
    }

    /// <summary>The float64 reference over rows of length d.</summary>
    public static double[] Reference(float[] x, float[] weight, float[] bias, int rows, int d, float eps)
    {
        var y = new double[rows * d];
        for (int r = 0; r < rows; r++)
        {
            double mean = 0;
            for (int j = 0; j < d; j++) mean += x[r * d + j];
            mean /= d;
            double variance = 0;
            for (int j = 0; j < d; j++) variance += (x[r * d + j] - mean) * (x[r * d + j] - mean);
            variance /= d;
            double inv = 1.0 / Math.Sqrt(variance + eps);
            for (int j = 0; j < d; j++) y[r * d + j] = (x[r * d + j] - mean) * inv * weight[j] + bias[j];
        }
        return y;
    }

    internal static IEnumerable<KernelCase> Cases()
    {
        foreach (var dt in new[] { DType.F32, DType.BF16 })
            foreach (var (rows, d) in RmsNorm.Shapes)
                yield return Case(dt, rows, d);
    }

    private static KernelCase Case(DType dt, int rows, int d) =>
        new(Op, dt, $"rows={rows} d={d}", (device, seed) =>
        {
            using var s = new Scope(device);
            var x = Random(seed, 1, (long)rows * d, dt, -2f, 3f);
            var w = Random(seed, 2, d, dt, 0.5f, 1.5f);
            var b = Random(seed, 3, d, dt);
            var y = s.Poisoned(dt, rows, d);
            Run(s.Floats(x, dt, rows, d), s.Floats(w, dt, d), s.Floats(b, dt, d), y, 1e-5f);
            return Compare(y, Reference(x, w, b, rows, d, 1e-5f), dt);
        });
}
