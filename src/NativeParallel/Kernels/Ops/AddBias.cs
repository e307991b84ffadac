using System.Runtime.InteropServices;
using NativeParallel.Diagnostics;
using NativeParallel.Kernels.Check;
using NativeParallel.Kernels.Cpu;
using NativeParallel.Tensors;
using static NativeParallel.Kernels.Check.CaseKit;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace NativeParallel.Kernels.Ops;

/// <summary>x[r, :] += bias in place. x: (rows, n); bias: (n); one dtype (f32 or bf16), computed in f32.</summary>
[KernelOp("add_bias", "bias_add.cu")]
public static unsafe class AddBias
{
    private const string Op = "add_bias";
    private static readonly EntryPoints Entry = new("bias_add");

    /// <summary>kernels/bias_add.cu BiasAddArgs.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct BiasAddArgs
    {
        public ulong X, Bias;
        public long Count;
        public int N;
    }

    /// <summary>Runs on the tensors' device.</summary>
    public static void Run(Tensor x, Tensor bias)
    {
        using var traced = Tracer.Kernel(Op, x, bias);
        OpShapes.Common(Op, ("x", x), ("bias", bias));
        OpShapes.FloatType(Op, "x", x, DType.F32, DType.BF16);
        var (rows, n) = OpShapes.RowsOf(x);
        OpShapes.Require(bias.DType == x.DType && bias.Count == n, Op, $"bias must be {x.DType.Name()} with {n} elements, got {bias}");
        if (OpLaunch.LauncherOf(x) is { } launcher)
        {
            long count = (long)rows * n;
            if (count == 0) return;
            var args = new BiasAddArgs { X = x.Pointer, Bias = bias.Pointer, Count = count, N = n };
            launcher.Launch("bias_add.cu", Entry[x.DType], new Gpu.Dim3(OpLaunch.GridFor(launcher, count)), new Gpu.Dim3(OpLaunch.Block), 0, args);
            return;
        }
        Cpu(x, bias, rows, n);
    }

    private static void Cpu(Tensor x, Tensor bias, int rows, int n)
    {
        using var xv = F32View.InOut(x);
        using var bv = F32View.Input(bias);
        float* xp = xv.Pointer, bp = bv.Pointer;
        CpuParallel.For(rows, n, (start, end) =>
        {
            var b = new ReadOnlySpan<float>(bp, n);
            for (int r = start; r < end; r++)
            {
                var row = new Span<float>(xp + (long)r * n, n);
                TensorPrimitives.Add(row, b, row);
            }
        });
    }

    /// <summary>The float64 reference: x[r, :] + bias.</summary>
    public static double[] Reference(float[] x, float[] bias, int rows, int n)
    {
        var y = new double[x.Length];
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < n; j++) y[r * n + j] = (double)x[r * n + j] + bias[j];
        return y;
    }

    internal static IEnumerable<KernelCase> Cases()
    {
        foreach (var dt in new[] { DType.F32, DType.BF16 })
            foreach (var (rows, n) in new[] { (0, 3), (1, 1), (31, 33), (7, 1000) })
                yield return Case(dt, rows, n);
    }

    private static KernelCase Case(DType dt, int rows, int n) =>
        new(Op, dt, $"rows={rows} n={n}", (device, seed) =>
        {
            using var s = new Scope(device);
            var x = Random(seed, 1, (long)rows * n, dt);
            var bias = Random(seed, 2, n, dt);
            var tx = s.Floats(x, dt, rows, n);
            Run(tx, s.Floats(bias, dt, n));
            return Compare(tx, Reference(x, bias, rows, n), dt);
        });
}
