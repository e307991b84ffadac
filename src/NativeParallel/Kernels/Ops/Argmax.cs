using System.Runtime.InteropServices;
using NativeParallel.Diagnostics;
using NativeParallel.Kernels.Check;
using NativeParallel.Kernels.Cpu;
using NativeParallel.Tensors;
using static NativeParallel.Kernels.Check.CaseKit;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace NativeParallel.Kernels.Ops;

/// <summary>
/// indices[r] = index of the largest x[r, :], the lowest index on ties. x: (rows, n) f32 or bf16, n ≥ 1 (unless
/// rows = 0); indices: (rows) i32. Exact.
/// </summary>
[KernelOp("argmax", "argmax.cu")]
public static unsafe class Argmax
{
    private const string Op = "argmax";
    private static readonly EntryPoints Entry = new("argmax");

    /// <summary>kernels/argmax.cu ArgmaxArgs.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct ArgmaxArgs
    {
        public ulong X, Indices;
        public int Rows, N;
    }

    /// <summary>Runs on the tensors' device.</summary>
    public static void Run(Tensor x, Tensor indices)
    {
        using var traced = Tracer.Kernel(Op, x, indices);
        OpShapes.Common(Op, ("x", x), ("indices", indices));
        OpShapes.FloatType(Op, "x", x, DType.F32, DType.BF16);
        var (rows, n) = OpShapes.RowsOf(x);
        OpShapes.Require(n >= 1 || rows == 0, Op, "rows must have at least one element");
        OpShapes.Require(indices.DType == DType.I32 && indices.Count == rows, Op, $"indices must be i32 with {rows} elements, got {indices}");
        if (OpLaunch.LauncherOf(x) is { } launcher)
        {
            if (rows == 0) return;
            var args = new ArgmaxArgs { X = x.Pointer, Indices = indices.Pointer, Rows = rows, N = n };
            launcher.Launch("argmax.cu", Entry[x.DType], new Gpu.Dim3(OpLaunch.RowGrid(launcher, rows)), new Gpu.Dim3(OpLaunch.Block), 0, args);
            return;
        }
        Cpu(x, indices, rows, n);
    }

    // Apart from Run: a lambda's captured locals would be allocated at Run's entry, on the device path too.
    private static void Cpu(Tensor x, Tensor indices, int rows, int n)
    {
        using var xv = F32View.Input(x);
        float* xp = xv.Pointer;
        int* ip = (int*)indices.Pointer;
        // TensorPrimitives.IndexOfMax returns the first maximum, which is the lowest index on ties.
        CpuParallel.For(rows, n, (start, end) =>
        {
            for (int r = start; r < end; r++) ip[r] = TensorPrimitives.IndexOfMax(new ReadOnlySpan<float>(xp + (long)r * n, n));
        });
    }

    /// <summary>The reference: the index of each row's maximum, lowest index on ties.</summary>
    public static int[] Reference(float[] x, int rows, int n)
    {
        var indices = new int[rows];
        for (int r = 0; r < rows; r++)
        {
            int best = 0;
            for (int j = 1; j < n; j++) if (x[r * n + j] > x[r * n + best]) best = j;
            indices[r] = best;
        }
        return indices;
    }

    internal static IEnumerable<KernelCase> Cases()
    {
        foreach (var dt in new[] { DType.F32, DType.BF16 })
            foreach (var (rows, n) in new[] { (0, 3), (1, 1), (3, 31), (2, 33), (5, 1000), (2, 32001) })
                yield return Case(dt, rows, n);
    }

    private static KernelCase Case(DType dt, int rows, int n) =>
        new(Op, dt, $"rows={rows} n={n}", (device, seed) =>
        {
            using var s = new Scope(device);
            var x = Random(seed, 1, (long)rows * n, dt);
            var indices = s.Poisoned(DType.I32, rows);
            Run(s.Floats(x, dt, rows, n), indices);
            return (0, 0, ExactMismatch(indices.ToInts(), Reference(x, rows, n), "indices"));
        });
}
