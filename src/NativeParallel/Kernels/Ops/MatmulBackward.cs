using System.Runtime.InteropServices;
using NativeParallel.Diagnostics;
using NativeParallel.Kernels.Check;
using NativeParallel.Kernels.Cpu;
using NativeParallel.Tensors;
using static NativeParallel.Kernels.Check.CaseKit;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using Operand = NativeParallel.Kernels.Cpu.CpuPackedGemm.Operand;

namespace NativeParallel.Kernels.Ops;

/// <summary>
/// Backward of the linear layer y = x · Wᵀ with x: (m, k), W: (n, k), y: (m, n).
/// <see cref="InputGrad"/>: dX (m, k) = dY (m, n) · W, overwritten.
/// <see cref="WeightGrad"/>: dW (n, k) = (accumulate ? dW : 0) + dYᵀ · x, the sum over the m rows.
/// Operands are all f32 or all bf16 (2-D, contiguous, on one device), computed with f32 accumulation; results are
/// bitwise deterministic run to run. m, n or k may be 0.
/// </summary>
[KernelOp("matmul_bwd", "matmul.cu")]
public static unsafe class MatmulBackward
{
    private const string Op = "matmul_bwd";
    private const uint Tile = 64, Threads = 256, TensorCoreTile = 128;
    private static readonly EntryPoints InputEntry = new("matmul_bwd_input"), WeightEntry = new("matmul_bwd_weight");

    // bf16 operands run the tensor cores (v2: 128 x 128 tiles, two stages of BK 32; v3: four of BK 16) unless v1 is
    // chosen; f32 operands have v1 only.
    private static (string Input, string Weight)? TensorCoreEntries(Tensor dY) => dY.DType != DType.BF16 ? null : KernelVersions.Selected(Op) switch
    {
        "v2" => ("matmul_bwd_input_v2_bf16", "matmul_bwd_weight_v2_bf16"),
        "v3" => ("matmul_bwd_input_v3_bf16", "matmul_bwd_weight_v3_bf16"),
        _ => null,
    };

    /// <summary>kernels/matmul.cu MatmulBwdArgs.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct MatmulBwdArgs
    {
        public ulong DY, Other, Out;
        public int M, N, K;
        public int Accumulate;
    }

    /// <summary>dX (m, k) = dY (m, n) · W (n, k), on the tensors' device; dX is overwritten.</summary>
    public static void InputGrad(Tensor dY, Tensor w, Tensor dX)
    {
        using var traced = Tracer.Kernel("matmul_bwd_input", w.Rank == 2 ? 2 * dY.Count * w.Dim(1) : 0, dY, w, dX);
        Check(("dY", dY), ("w", w), ("dX", dX));
        int m = dY.Dim(0), n = dY.Dim(1), k = w.Dim(1);
        OpShapes.Require(w.Dim(0) == n, Op, $"w must be ({n}, k) to match dY {dY}, got {w}");
        OpShapes.Require(dX.Dim(0) == m && dX.Dim(1) == k, Op, $"dX must be ({m}, {k}), got {dX}");
        OpShapes.Require(m <= 65535L * Tile, Op, $"m = {m} exceeds {65535 * Tile} rows; split the batch");
        if (m == 0 || k == 0) return;
        if (OpLaunch.LauncherOf(dY) is { } launcher)
        {
            var args = new MatmulBwdArgs { DY = dY.Pointer, Other = w.Pointer, Out = dX.Pointer, M = m, N = n, K = k };
            if (TensorCoreEntries(dY) is { } tensorCores)
            {
                launcher.Launch("matmul.cu", tensorCores.Input, new Gpu.Dim3(OpLaunch.Tiles(k, TensorCoreTile), OpLaunch.Tiles(m, TensorCoreTile)), new Gpu.Dim3(Threads), 0, args);
                return;
            }
            launcher.Launch("matmul.cu", InputEntry[dY.DType], new Gpu.Dim3(OpLaunch.Tiles(k, Tile), OpLaunch.Tiles(m, Tile)), new Gpu.Dim3(Threads), 0, args);
            return;
        }
        CpuInputGrad(dY, w, dX, m, n, k);
    }

    /// <summary>dW (n, k) = (accumulate ? dW : 0) + dYᵀ · x with dY (m, n), x (m, k), on the tensors' device.</summary>
    public static void WeightGrad(Tensor dY, Tensor x, Tensor dW, bool accumulate)
    {
        using var traced = Tracer.Kernel("matmul_bwd_weight", x.Rank == 2 ? 2 * dY.Count * x.Dim(1) : 0, dY, x, dW);
        Check(("dY", dY), ("x", x), ("dW", dW));
        int m = dY.Dim(0), n = dY.Dim(1), k = x.Dim(1);
        OpShapes.Require(x.Dim(0) == m, Op, $"x must be ({m}, k) to match dY {dY}, got {x}");
        OpShapes.Require(dW.Dim(0) == n && dW.Dim(1) == k, Op, $"dW must be ({n}, {k}), got {dW}");
        OpShapes.Require(n <= 65535L * Tile, Op, $"n = {n} exceeds {65535 * Tile} rows");
        if (n == 0 || k == 0) return;
        if (OpLaunch.LauncherOf(dY) is { } launcher)
        {
            var args = new MatmulBwdArgs { DY = dY.Pointer, Other = x.Pointer, Out = dW.Pointer, M = m, N = n, K = k, Accumulate = accumulate ? 1 : 0 };
            if (TensorCoreEntries(dY) is { } tensorCores)
            {
                launcher.Launch("matmul.cu", tensorCores.Weight, new Gpu.Dim3(OpLaunch.Tiles(k, TensorCoreTile), OpLaunch.Tiles(n, TensorCoreTile)), new Gpu.Dim3(Threads), 0, args);
                return;
            }
            launcher.Launch("matmul.cu", WeightEntry[dY.DType], new Gpu.Dim3(OpLaunch.Tiles(k, Tile), OpLaunch.Tiles(n, Tile)), new Gpu.Dim3(Threads), 0, args);
            return;
        }
        CpuWeightGrad(dY, x, dW, accumulate, m, n, k);
    }

    private static void Check(params (string Name, Tensor T)[] tensors)
    {
        var first = tensors[0].T;
        OpShapes.Require(first.DType is DType.F32 or DType.BF16, Op, $"{tensors[0].Name} has dtype {first.DType.Name()}; supported: f32, bf16");
        foreach (var (name, t) in tensors)
        {
            OpShapes.Require(t.Rank == 2, Op, $"{name} must be 2-D, got {t}");
            OpShapes.Require(t.IsContiguous, Op, $"{name} must be contiguous, got a strided view {t}");
            OpShapes.Require(ReferenceEquals(t.Device, first.Device), Op, $"{name} is on {t.Device.Name}, {tensors[0].Name} on {first.Device.Name}");
            OpShapes.Require(t.DType == first.DType, Op, $"{name} has dtype {t.DType.Name()}, {tensors[0].Name} {first.DType.Name()}: operands must share one dtype");
        }
    }

    // dX (m, k) = dY (m, n) · W (n, k): the packed GEMM with A = dY read by rows and B(j, p) = W[p, j] read down
    // W's columns (the packing step does the transposition, so no transposed copy of W is made).
    private static void CpuInputGrad(Tensor dY, Tensor w, Tensor dX, int m, int n, int k)
    {
        if (dX.DType == DType.BF16)
        {
            CpuPackedGemm.MultiplyToBf16(m, k, n, Operand.Of(dY, n, 1), Operand.Of(w, 1, k), (ushort*)dX.Pointer, k);
            return;
        }
        CpuPackedGemm.Multiply(m, k, n, Operand.Of(dY, n, 1), Operand.Of(w, 1, k), (float*)dX.Pointer, k, accumulate: false);
    }

    // dW (n, k) (+)= dYᵀ (n, m) · X (m, k): the packed GEMM with A(i, p) = dY[p, i] and B(j, p) = X[p, j], the sum
    // over the m rows in k-panel order by one task per tile of dW, so the result does not depend on the thread count.
    private static void CpuWeightGrad(Tensor dY, Tensor x, Tensor dW, bool accumulate, int m, int n, int k)
    {
        if (dW.DType == DType.BF16 && !accumulate)
        {
            CpuPackedGemm.MultiplyToBf16(n, k, m, Operand.Of(dY, 1, n), Operand.Of(x, 1, k), (ushort*)dW.Pointer, k);
            return;
        }
        using var dwv = accumulate ? F32View.InOut(dW) : F32View.Output(dW);
        CpuPackedGemm.Multiply(n, k, m, Operand.Of(dY, 1, n), Operand.Of(x, 1, k), dwv.Pointer, k, accumulate);
    }

    /// <summary>The float64 reference of <see cref="InputGrad"/>: dX (m, k) = dY (m, n) · W (n, k).</summary>
    public static double[] ReferenceInputGrad(float[] dY, float[] w, int m, int n, int k)
    {
        var dX = new double[(long)m * k];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < k; j++)
            {
                double sum = 0;
                for (int p = 0; p < n; p++) sum += (double)dY[(long)i * n + p] * w[(long)p * k + j];
                dX[(long)i * k + j] = sum;
            }
        return dX;
    }

    /// <summary>The float64 reference of <see cref="WeightGrad"/>: dW (n, k) = dW0 + dYᵀ · x (dW0 null: zeros).</summary>
    public static double[] ReferenceWeightGrad(float[] dY, float[] x, float[]? dW0, int m, int n, int k)
    {
        var dW = new double[(long)n * k];
        for (int i = 0; i < n; i++)
            for (int j = 0; j < k; j++)
            {
                double sum = dW0 is null ? 0 : dW0[(long)i * k + j];
                for (int r = 0; r < m; r++) sum += (double)dY[(long)r * n + i] * x[(long)r * k + j];
                dW[(long)i * k + j] = sum;
            }
        return dW;
    }

    internal static IEnumerable<KernelCase> Cases()
    {
        var shapes = new (int M, int N, int K)[] { (0, 4, 4), (1, 1, 1), (33, 31, 65), (64, 64, 64), (100, 130, 57), (300, 20, 24), (160, 136, 88), (5, 7, 0), (6, 0, 5) };
        foreach (var dt in new[] { DType.F32, DType.BF16 })
            foreach (var (m, n, k) in shapes)
            {
                yield return InputCase(dt, m, n, k);
                yield return WeightCase(dt, m, n, k, accumulate: false);
                yield return WeightCase(dt, m, n, k, accumulate: true);
            }
    }

    private static KernelCase InputCase(DType dt, int m, int n, int k) =>
        new(Op, dt, $"dX m={m} n={n} k={k}", (device, seed) =>
        {
            using var s = new Scope(device);
            var dY = Random(seed, 1, (long)m * n, dt);
            var w = Random(seed, 2, (long)n * k, dt);
            var dX = s.Poisoned(dt, m, k);
            InputGrad(s.Floats(dY, dt, m, n), s.Floats(w, dt, n, k), dX);
            return Compare(dX, ReferenceInputGrad(dY, w, m, n, k), dt);
        });

    private static KernelCase WeightCase(DType dt, int m, int n, int k, bool accumulate) =>
        new(Op, dt, $"dW m={m} n={n} k={k}{(accumulate ? " accumulate" : "")}", (device, seed) =>
        {
            using var s = new Scope(device);
            var dY = Random(seed, 1, (long)m * n, dt);
            var x = Random(seed, 2, (long)m * k, dt);
            var dW0 = accumulate ? Random(seed, 3, (long)n * k, dt) : null;
            var dW = dW0 is null ? s.Poisoned(dt, n, k) : s.Floats(dW0, dt, n, k);
            WeightGrad(s.Floats(dY, dt, m, n), s.Floats(x, dt, m, k), dW, accumulate);
            return Compare(dW, ReferenceWeightGrad(dY, x, dW0, m, n, k), dt);
        });
}
