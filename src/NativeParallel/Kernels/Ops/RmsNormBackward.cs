using System.Runtime.InteropServices;
using NativeParallel.Diagnostics;
using NativeParallel.Kernels.Check;
using NativeParallel.Kernels.Cpu;
using NativeParallel.Tensors;
using static NativeParallel.Kernels.Check.CaseKit;

namespace NativeParallel.Kernels.Ops;

/// <summary>
/// Backward of RMSNorm y = x · inv · w, inv = 1/sqrt(mean(x²) + eps) over the last dimension d:
/// dX = inv · g − x · inv³ · Σⱼ(g·x)/d with g = dY · w (overwritten), dWeight += Σ over rows of dY · x · inv.
/// x, dY, dX: (rows, d); weight, dWeight: (d); one dtype (f32 or bf16), computed in f32. dX must not alias x or dY.
/// The dWeight sum over rows runs in a fixed order (bitwise deterministic run to run).
/// </summary>
[KernelOp("rmsnorm_bwd", "rmsnorm.cu")]
public static unsafe class RmsNormBackward
{
    private const string Op = "rmsnorm_bwd";
    private static readonly EntryPoints RowEntry = new("rmsnorm_bwd"), WeightEntry = new("rmsnorm_bwd_weight");

    /// <summary>kernels/rmsnorm.cu RmsNormBwdArgs.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct RmsNormBwdArgs
    {
        public ulong X, Weight, DY, DX, DWeight, Inv;
        public int Rows, D;
        public float Eps;
    }

    /// <summary>kernels/rmsnorm.cu RmsNormBwdV2Args.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct RmsNormBwdV2Args
    {
        public ulong X, Weight, DY, DX, DWeight, Partials;
        public int Rows, D, RowsPerBlock, Blocks;
        public float Eps;
    }

    private static readonly EntryPoints V2RowEntry = new("rmsnorm_bwd_v2"), V2WeightEntry = new("rmsnorm_bwd_v2_weight");
    private const int V2Vecs = 4, V2MaxThreads = 256, V2BlocksPerSm = 4;  // RMSNORM_VECS, __launch_bounds__ in rmsnorm.cu

    /// <summary>Runs on the tensors' device: dX overwritten, dWeight accumulated.</summary>
    public static void Run(Tensor x, Tensor weight, Tensor dY, Tensor dX, Tensor dWeight, float eps)
    {
        using var traced = Tracer.Kernel("rmsnorm_bwd", x, weight, dY, dX, dWeight);
        var (rows, d) = OpShapes.Norm(Op, x, weight, null, dY);
        OpShapes.Norm(Op, x, weight, null, dX);
        OpShapes.Norm(Op, x, dWeight, null, dX);
        if (rows == 0 || d == 0) return;
        if (OpLaunch.LauncherOf(x) is { } launcher)
        {
            if (V2Fits(x, weight, dY, dX, d) is var threads && threads > 0)
            {
                // v2: rows in registers; blocks take consecutive rows so d_weight's partials sum in a fixed order.
                long blocks = Math.Min(rows, Math.Max(1, launcher.MultiprocessorCount) * (long)V2BlocksPerSm);
                int rowsPerBlock = (int)((rows + blocks - 1) / blocks);
                int grid = (rows + rowsPerBlock - 1) / rowsPerBlock;
                using var partials = Tensor.Empty(x.Device, DType.F32, checked(grid * d));
                var v2Args = new RmsNormBwdV2Args
                {
                    X = x.Pointer, Weight = weight.Pointer, DY = dY.Pointer, DX = dX.Pointer, DWeight = dWeight.Pointer, Partials = partials.Pointer,
                    Rows = rows, D = d, RowsPerBlock = rowsPerBlock, Blocks = grid, Eps = eps,
                };
                launcher.Launch("rmsnorm.cu", V2RowEntry[x.DType], new Gpu.Dim3((uint)grid), new Gpu.Dim3(threads), 0, v2Args);
                launcher.Launch("rmsnorm.cu", V2WeightEntry[x.DType], new Gpu.Dim3(OpLaunch.Tiles(d, 32)), new Gpu.Dim3(256), 0, v2Args);
                return;
            }
            using var inv = Tensor.Empty(x.Device, DType.F32, rows);
            var args = new RmsNormBwdArgs
            {
                X = x.Pointer, Weight = weight.Pointer, DY = dY.Pointer, DX = dX.Pointer, DWeight = dWeight.Pointer, Inv = inv.Pointer,
                Rows = rows, D = d, Eps = eps,
            };
            launcher.Launch("rmsnorm.cu", RowEntry[x.DType], new Gpu.Dim3(OpLaunch.RowGrid(launcher, rows)), new Gpu.Dim3(OpLaunch.Block), 0, args);
            launcher.Launch("rmsnorm.cu", WeightEntry[x.DType], new Gpu.Dim3(OpLaunch.GridFor(launcher, d)), new Gpu.Dim3(OpLaunch.Block), 0, args);
            return;
        }
        Cpu(x, weight, dY, dX, dWeight, eps, rows, d);
    }

    // v2's block size, or 0 where v1 runs: rows of whole 16-byte vectors, 16-byte aligned tensors, at most
    // V2Vecs vectors per thread in blocks of up to 256 threads.
    private static uint V2Fits(Tensor x, Tensor weight, Tensor dY, Tensor dX, int d)
    {
        int size = x.DType.SizeOf(), perVector = 16 / size;
        if (d * size % 16 != 0 || ((x.Pointer | weight.Pointer | dY.Pointer | dX.Pointer) & 15) != 0) return 0;
        long threads = ((d / perVector + V2Vecs - 1) / V2Vecs + 31) / 32 * 32;
        return threads <= V2MaxThreads ? (uint)threads : 0;
    }

    // Apart from Run: a lambda's captured locals would be allocated at Run's entry, on the device path too. Fixed
    // groups of rows sum their dWeight partials in row order, then the partials are added in group order
    // (CpuRowKernels.RmsNormBackward), so the result does not depend on the number of threads.
    private static void Cpu(Tensor x, Tensor weight, Tensor dY, Tensor dX, Tensor dWeight, float eps, int rows, int d) =>
        CpuRowKernels.RmsNormBackward(x, weight, dY, dX, dWeight, rows, d, eps);

    /// <summary>The float64 reference: (dX, dWeight0 + Σ rows).</summary>
    public static (double[] DX, double[] DWeight) Reference(float[] x, float[] weight, float[] dY, float[] dWeight0, int rows, int d, float eps)
    {
        var dX = new double[(long)rows * d];
        var dW = new double[d];
        for (int j = 0; j < d; j++) dW[j] = dWeight0[j];
        for (int r = 0; r < rows; r++)
        {
            long b = (long)r * d;
            double sumSquares = 0, dot = 0;
            for (int j = 0; j < d; j++)
            {
                sumSquares += (double)x[b + j] * x[b + j];
                dot += (double)dY[b + j] * weight[j] * x[b + j];
            }
            double inv = 1.0 / Math.Sqrt(sumSquares / d + eps);
            double coef = inv * inv * inv * dot / d;
            for (int j = 0; j < d; j++)
            {
                dX[b + j] = inv * dY[b + j] * weight[j] - x[b + j] * coef;
                dW[j] += (double)dY[b + j] * x[b + j] * inv;
            }
        }
        return (dX, dW);
    }

    // No d = 1: there y = x/sqrt(x² + eps) is nearly flat, and dX is a cancellation of two nearly equal terms whose
    // f32 relative error exceeds the bound however it is computed.
    internal static IEnumerable<KernelCase> Cases()
    {
        foreach (var dt in new[] { DType.F32, DType.BF16 })
            foreach (var (rows, d) in new[] { (0, 8), (1, 7), (3, 33), (5, 256), (17, 300), (70, 64), (9, 4096) })
                yield return Case(dt, rows, d);
    }

    private static KernelCase Case(DType dt, int rows, int d) =>
        new(Op, dt, $"rows={rows} d={d}", (device, seed) =>
        {
            const float eps = 1e-5f;
            using var s = new Scope(device);
            var x = Random(seed, 1, (long)rows * d, dt);
            var w = Random(seed, 2, d, dt, 0.5f, 1.5f);
            var dY = Random(seed, 3, (long)rows * d, dt);
            var dW0 = Random(seed, 4, d, dt);
            var dX = s.Poisoned(dt, rows, d);
            var dW = s.Floats(dW0, dt, d);
            Run(s.Floats(x, dt, rows, d), s.Floats(w, dt, d), s.Floats(dY, dt, rows, d), dX, dW, eps);
            var (refX, refW) = Reference(x, w, dY, dW0, rows, d, eps);
            return Worst(Compare(dX, refX, dt), Compare(dW, refW, dt));
        });
}
