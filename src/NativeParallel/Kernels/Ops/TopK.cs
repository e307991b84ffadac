using System.Runtime.InteropServices;
using NativeParallel.Diagnostics;
using NativeParallel.Kernels.Check;
using NativeParallel.Kernels.Cpu;
using NativeParallel.Tensors;
using static NativeParallel.Kernels.Check.CaseKit;

namespace NativeParallel.Kernels.Ops;

/// <summary>
/// The k largest of each row, in descending order (the lower index first on ties). x: (rows, n) f32 or bf16;
/// values: (rows, k) f32; indices: (rows, k) i32; 1 ≤ k ≤ min(n, <see cref="KernelLimits.MaxTopK"/>). Exact.
/// </summary>
[KernelOp("topk", "topk.cu")]
public static unsafe class TopK
{
    private const string Op = "topk";
    private static readonly EntryPoints Entry = new("topk");

    /// <summary>kernels/topk.cu TopKArgs.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct TopKArgs
    {
        public ulong X, Values, Indices;
        public int Rows, N, K;
    }

    /// <summary>Runs on the tensors' device.</summary>
    public static void Run(Tensor x, int k, Tensor values, Tensor indices)
    {
        using var traced = Tracer.Kernel(Op, x, values, indices);
        OpShapes.Common(Op, ("x", x), ("values", values), ("indices", indices));
        OpShapes.FloatType(Op, "x", x, DType.F32, DType.BF16);
        var (rows, n) = OpShapes.RowsOf(x);
        OpShapes.Require(k >= 1 && k <= n && k <= KernelLimits.MaxTopK, Op, $"k must be in 1..min(n = {n}, {KernelLimits.MaxTopK}), got {k}");
        OpShapes.Require(values.DType == DType.F32 && values.Count == (long)rows * k, Op, $"values must be f32 ({rows}, {k}), got {values}");
        OpShapes.Require(indices.DType == DType.I32 && indices.Count == (long)rows * k, Op, $"indices must be i32 ({rows}, {k}), got {indices}");
        if (OpLaunch.LauncherOf(x) is { } launcher)
        {
            if (rows == 0) return;
            var args = new TopKArgs { X = x.Pointer, Values = values.Pointer, Indices = indices.Pointer, Rows = rows, N = n, K = k };
            launcher.Launch("topk.cu", Entry[x.DType], new Gpu.Dim3(OpLaunch.RowGrid(launcher, rows)), new Gpu.Dim3(OpLaunch.Block), 0, args);
            return;
        }
        Cpu(x, k, values, indices, rows, n);
    }

    private static void Cpu(Tensor x, int k, Tensor values, Tensor indices, int rows, int n)
    {
        using var xv = F32View.Input(x);
        float* xp = xv.Pointer, vp = (float*)values.Pointer;
        int* ip = (int*)indices.Pointer;
        CpuParallel.For(rows, (long)n * 2, (start, end) =>
        {
            for (int r = start; r < end; r++)
            {
                // Insertion into a sorted list of k: strictly greater wins, so the earlier index stays first on ties.
                var bestValues = new Span<float>(vp + (long)r * k, k);
                var bestIndices = new Span<int>(ip + (long)r * k, k);
                int filled = 0;
                float* row = xp + (long)r * n;
                for (int j = 0; j < n; j++)
                {
                    float value = row[j];
                    if (filled == k && !(value > bestValues[k - 1])) continue;
                    int slot = filled < k ? filled++ : k - 1;
                    while (slot > 0 && value > bestValues[slot - 1])
                    {
                        bestValues[slot] = bestValues[slot - 1];
                        bestIndices[slot] = bestIndices[slot - 1];
                        slot--;
                    }
                    bestValues[slot] = value;
                    bestIndices[slot] = j;
                }
            }
        });
    }

    /// <summary>The reference: the k largest per row, descending, lower index first on ties.</summary>
    public static (double[] Values, int[] Indices) Reference(float[] x, int rows, int n, int k)
    {
        var values = new double[rows * k];
        var indices = new int[rows * k];
        for (int r = 0; r < rows; r++)
        {
            var order = Enumerable.Range(0, n).OrderByDescending(j => x[r * n + j]).ThenBy(j => j).Take(k).ToArray();
            for (int i = 0; i < k; i++)
            {
                indices[r * k + i] = order[i];
                values[r * k + i] = x[r * n + order[i]];
            }
        }
        return (values, indices);
    }

    internal static IEnumerable<KernelCase> Cases()
    {
        foreach (var dt in new[] { DType.F32, DType.BF16 })
            foreach (var (rows, n, k) in new[] { (1, 1, 1), (3, 31, 5), (2, 1000, 64), (4, 33, 33) })
                yield return Case(dt, rows, n, k);
    }

    private static KernelCase Case(DType dt, int rows, int n, int k) =>
        new(Op, dt, $"rows={rows} n={n} k={k}", (device, seed) =>
        {
            using var s = new Scope(device);
            var x = Random(seed, 1, (long)rows * n, dt);
            var values = s.Poisoned(DType.F32, rows, k);
            var indices = s.Poisoned(DType.I32, rows, k);
            Run(s.Floats(x, dt, rows, n), k, values, indices);
            var (refValues, refIndices) = Reference(x, rows, n, k);
            string mismatch = ExactMismatch(indices.ToInts(), refIndices, "indices");
            double error = ErrorBounds.RelativeError(values.ToFloats(), refValues);
            return (error, 0, mismatch);
        });
}
