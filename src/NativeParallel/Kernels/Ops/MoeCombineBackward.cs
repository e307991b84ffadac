using System.Runtime.InteropServices;
using NativeParallel.Diagnostics;
using NativeParallel.Kernels.Check;
using NativeParallel.Kernels.Cpu;
using NativeParallel.Tensors;
using static NativeParallel.Kernels.Check.CaseKit;

namespace NativeParallel.Kernels.Ops;

/// <summary>
/// Backward of <see cref="MoeCombine"/>: for each token t and slot j whose row = position[t·k + j] is kept,
/// dY[row, :] = weights[t, j] · dOut[t, :] and dWeights[t, j] = dot(dOut[t, :], y[row, :]) (f32); a dropped slot
/// (position below 0 or past y's rows) gets dWeights 0. Rows of dY that no position names are left as they were.
/// dOut: (tokens, cols); y, dY: (yRows, cols), one dtype (f32 or bf16); position: (tokens · k) i32, each row named at
/// most once (a plan's permutation); weights, dWeights: (tokens, k) f32. dY must not alias y or dOut.
/// The gather's backward is <see cref="MoeCombine"/> itself with unit weights (the transpose of a row gather by a
/// plan sums each token's kept slots, in top-k order).
/// </summary>
[KernelOp("moe_combine_bwd", "moe.cu")]
public static unsafe class MoeCombineBackward
{
    private const string Op = "moe_combine_bwd";
    private static readonly EntryPoints Entry = new(Op);

    /// <summary>kernels/moe.cu MoeCombineBwdArgs.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct MoeCombineBwdArgs
    {
        public ulong DOut, Y, Position, Weights, DY, DWeights;
        public int Tokens, K, Cols, YRows;
    }

    /// <summary>Runs on the tensors' device.</summary>
    public static void Run(Tensor dOut, Tensor y, Tensor position, Tensor weights, Tensor dY, Tensor dWeights)
    {
        using var traced = Tracer.Kernel(Op, dOut, y, position, weights, dY, dWeights);
        OpShapes.Require(dOut.Rank == 2 && y.Rank == 2 && dY.Rank == 2 && weights.Rank == 2 && dWeights.Rank == 2, Op,
            $"dOut, y, dY, weights and dWeights must be 2-D, got {dOut}, {y}, {dY}, {weights} and {dWeights}");
        OpShapes.Require(dOut.IsContiguous && y.IsContiguous && dY.IsContiguous && weights.IsContiguous && dWeights.IsContiguous && position.IsContiguous, Op,
            "every tensor must be contiguous");
        OpShapes.Require(dOut.DType == y.DType && y.DType == dY.DType && y.DType is DType.F32 or DType.BF16, Op,
            $"dOut, y and dY need one dtype, f32 or bf16; got {dOut.DType.Name()}, {y.DType.Name()} and {dY.DType.Name()}");
        OpShapes.Require(weights.DType == DType.F32 && dWeights.DType == DType.F32 && position.DType == DType.I32, Op,
            $"weights and dWeights must be f32 and position i32, got {weights}, {dWeights} and {position}");
        int tokens = weights.Dim(0), k = weights.Dim(1), cols = y.Dim(1), yRows = y.Dim(0);
        OpShapes.Require(position.Count == (long)tokens * k, Op, $"position needs tokens × k = {(long)tokens * k} elements, got {position.Count}");
        OpShapes.Require(dWeights.Dim(0) == tokens && dWeights.Dim(1) == k, Op, $"dWeights must be ({tokens}, {k}) like weights, got {dWeights}");
        OpShapes.Require(dOut.Dim(0) == tokens && dOut.Dim(1) == cols, Op, $"dOut must be ({tokens}, {cols}), got {dOut}");
        OpShapes.Require(dY.Dim(0) == yRows && dY.Dim(1) == cols, Op, $"dY must be ({yRows}, {cols}) like y, got {dY}");
        OpShapes.Require(dY.Pointer != y.Pointer && dY.Pointer != dOut.Pointer || dY.Count == 0, Op, "dY must not alias y or dOut");
        OpShapes.Require(dOut.Device == dY.Device && y.Device == dY.Device && position.Device == dY.Device && weights.Device == dY.Device && dWeights.Device == dY.Device,
            Op, "every tensor must be on one device");
        if (tokens == 0 || k == 0) return;
        if (OpLaunch.LauncherOf(dY) is { } launcher)
        {
            var args = new MoeCombineBwdArgs
            {
                DOut = dOut.Pointer, Y = y.Pointer, Position = position.Pointer, Weights = weights.Pointer, DY = dY.Pointer, DWeights = dWeights.Pointer,
                Tokens = tokens, K = k, Cols = cols, YRows = yRows,
            };
            launcher.Launch("moe.cu", Entry[y.DType], new Gpu.Dim3(OpLaunch.RowGrid(launcher, tokens)), new Gpu.Dim3(OpLaunch.Block), 0, args);
            return;
        }
        Cpu(dOut, y, (int*)position.Pointer, (float*)weights.Pointer, dY, (float*)dWeights.Pointer, tokens, k, cols);
    }

    // The CPU path: Kernels/Cpu/CpuRowKernels.Moe.cs (bf16 in registers, one pass over each row pair).
    private static void Cpu(Tensor dOut, Tensor y, int* position, float* weights, Tensor dY, float* dWeights, int tokens, int k, int cols) =>
        CpuRowKernels.MoeCombineBackward(dOut, y, position, weights, dY, dWeights, tokens, k, cols);

    /// <summary>The float64 reference: (dY, starting from <paramref name="dY0"/> for rows no position names, and dWeights).</summary>
    public static (double[] DY, double[] DWeights) Reference(float[] dOut, float[] y, int yRows, int cols, int[] position, float[] weights, int tokens, int k, float[] dY0)
    {
        var dY = Array.ConvertAll(dY0, v => (double)v);
        var dWeights = new double[(long)tokens * k];
        for (int t = 0; t < tokens; t++)
            for (int j = 0; j < k; j++)
            {
                int row = position[t * k + j];
                if (row < 0 || row >= yRows) continue;
                double dot = 0;
                for (int c = 0; c < cols; c++)
                {
                    dot += (double)dOut[(long)t * cols + c] * y[(long)row * cols + c];
                    dY[(long)row * cols + c] = (double)weights[t * k + j] * dOut[(long)t * cols + c];
                }
                dWeights[t * k + j] = dot;
            }
        return (dY, dWeights);
    }

    internal static IEnumerable<KernelCase> Cases()
    {
        foreach (var dt in new[] { DType.F32, DType.BF16 })
            foreach (var (tokens, k, cols) in new[] { (1, 1, 1), (7, 2, 33), (64, 2, 260), (40, 4, 64), (3, 3, 1025), (0, 2, 8) })
                yield return new KernelCase(Op, dt, $"tokens={tokens} k={k} cols={cols}", (device, seed) =>
                {
                    using var s = new Scope(device);
                    int yRows = Math.Max(1, tokens * k);
                    var dOut = Random(seed, 1, (long)tokens * cols, dt);
                    var y = Random(seed, 2, (long)yRows * cols, dt);
                    var weights = Random(seed, 3, (long)tokens * k, DType.F32, 0f, 1f);
                    // dY starts random, not poisoned: the rows of dropped slots must come back as they were.
                    var dY0 = Random(seed, 4, (long)yRows * cols, dt);
                    // A permutation of the slots with a few dropped (−1), as the experts' capacity leaves it.
                    var position = Enumerable.Range(0, tokens * k).ToArray();
                    var shuffle = RandomInts(seed, 5, position.Length, Math.Max(1, position.Length));
                    for (int i = 0; i < position.Length; i++) (position[i], position[shuffle[i]]) = (position[shuffle[i]], position[i]);
                    for (int i = 0; i < position.Length; i += 5) position[i] = -1;
                    var dY = s.Floats(dY0, dt, yRows, cols);
                    var dWeights = s.Poisoned(DType.F32, tokens, k);
                    Run(s.Floats(dOut, dt, tokens, cols), s.Floats(y, dt, yRows, cols), s.Ints(position, tokens * k), s.Floats(weights, DType.F32, tokens, k), dY, dWeights);
                    var expected = Reference(dOut, y, yRows, cols, position, weights, tokens, k, dY0);
                    return Worst(Compare(dY, expected.DY, dt), Compare(dWeights, expected.DWeights, dt));
                });
    }
}
