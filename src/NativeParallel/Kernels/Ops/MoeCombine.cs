using System.Runtime.InteropServices;
using NativeParallel.Diagnostics;
using NativeParallel.Kernels.Check;
using NativeParallel.Kernels.Cpu;
using NativeParallel.Tensors;
using static NativeParallel.Kernels.Check.CaseKit;

namespace NativeParallel.Kernels.Ops;

/// <summary>
/// The MoE combine, the inverse of the token permutation: out[t, :] = Σ_j weights[t, j] · y[position[t·k + j], :]
/// over j = 0..k−1 in that order (each token's experts in top-k order, as every layout sums them), in f32; a
/// position below 0 (a routing dropped for capacity) contributes nothing. y: (yRows, cols) f32 or bf16;
/// position: (tokens · k) i32; weights: (tokens, k) f32; out: (tokens, cols), y's dtype.
/// </summary>
[KernelOp("moe_combine", "moe.cu")]
public static unsafe class MoeCombine
{
    private const string Op = "moe_combine";
    private static readonly EntryPoints Entry = new(Op);

    /// <summary>kernels/moe.cu MoeCombineArgs.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct MoeCombineArgs
    {
        public ulong Y, Position, Weights, Out;
        public int Tokens, K, Cols, YRows;
    }

    /// <summary>Runs on the tensors' device.</summary>
    public static void Run(Tensor y, Tensor position, Tensor weights, Tensor output)
    {
        using var traced = Tracer.Kernel(Op, y, position, weights, output);
        OpShapes.Require(y.Rank == 2 && output.Rank == 2 && weights.Rank == 2 && y.IsContiguous && output.IsContiguous && weights.IsContiguous, Op,
            $"y, weights and out must be contiguous 2-D tensors, got {y}, {weights} and {output}");
        OpShapes.Require(y.DType == output.DType && y.DType is DType.F32 or DType.BF16, Op, $"y and out need one dtype, f32 or bf16; got {y.DType.Name()} and {output.DType.Name()}");
        OpShapes.Require(weights.DType == DType.F32 && position.DType == DType.I32 && position.IsContiguous, Op, $"weights must be f32 and position i32, got {weights} and {position}");
        int tokens = weights.Dim(0), k = weights.Dim(1), cols = y.Dim(1);
        OpShapes.Require(position.Count == (long)tokens * k, Op, $"position needs tokens × k = {(long)tokens * k} elements, got {position.Count}");
        OpShapes.Require(output.Dim(0) == tokens && output.Dim(1) == cols, Op, $"out must be ({tokens}, {cols}), got {output}");
        OpShapes.Require(y.Device == output.Device && position.Device == output.Device && weights.Device == output.Device, Op, "every tensor must be on one device");
        if (tokens == 0 || cols == 0) return;
        if (OpLaunch.LauncherOf(output) is { } launcher)
        {
            var args = new MoeCombineArgs { Y = y.Pointer, Position = position.Pointer, Weights = weights.Pointer, Out = output.Pointer, Tokens = tokens, K = k, Cols = cols, YRows = y.Dim(0) };
            launcher.Launch("moe.cu", Entry[y.DType], new Gpu.Dim3(OpLaunch.RowGrid(launcher, tokens)), new Gpu.Dim3(OpLaunch.Block), 0, args);
            return;
        }
        Cpu(y, (int*)position.Pointer, (float*)weights.Pointer, output, tokens, k, cols);
    }

    // The CPU path: Kernels/Cpu/CpuRowKernels.Moe.cs (bf16 in registers).
    private static void Cpu(Tensor y, int* position, float* weights, Tensor output, int tokens, int k, int cols) =>
        CpuRowKernels.MoeCombine(y, position, weights, output, tokens, k, cols);

    /// <summary>The float64 reference.</summary>
    public static double[] Reference(float[] y, int yRows, int cols, int[] position, float[] weights, int tokens, int k)
    {
        var result = new double[(long)tokens * cols];
        for (int t = 0; t < tokens; t++)
            for (int j = 0; j < k; j++)
            {
                int source = position[t * k + j];
                if (source < 0 || source >= yRows) continue;
                for (int c = 0; c < cols; c++) result[(long)t * cols + c] += (double)weights[t * k + j] * y[(long)source * cols + c];
            }
        return result;
    }

    internal static IEnumerable<KernelCase> Cases()
    {
        foreach (var dt in new[] { DType.F32, DType.BF16 })
            foreach (var (tokens, k, cols) in new[] { (1, 1, 1), (7, 2, 33), (64, 2, 260), (40, 4, 64), (0, 2, 8) })
                yield return new KernelCase(Op, dt, $"tokens={tokens} k={k} cols={cols}", (device, seed) =>
                {
                    using var s = new Scope(device);
                    int yRows = Math.Max(1, tokens * k);
                    var y = Random(seed, 1, (long)yRows * cols, dt);
                    var weights = Random(seed, 2, (long)tokens * k, DType.F32, 0f, 1f);
                    // A permutation of the slots with a few dropped (−1), as the experts' capacity leaves it.
                    var position = Enumerable.Range(0, tokens * k).ToArray();
                    var shuffle = RandomInts(seed, 3, position.Length, Math.Max(1, position.Length));
                    for (int i = 0; i < position.Length; i++) (position[i], position[shuffle[i]]) = (position[shuffle[i]], position[i]);
                    for (int i = 0; i < position.Length; i += 5) position[i] = -1;
                    var output = s.Poisoned(dt, tokens, cols);
                    Run(s.Floats(y, dt, yRows, cols), s.Ints(position, tokens * k), s.Floats(weights, DType.F32, tokens, k), output);
                    return Compare(output, Reference(y, yRows, cols, position, weights, tokens, k), dt);
                });
    }
}
