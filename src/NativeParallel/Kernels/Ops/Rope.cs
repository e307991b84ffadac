using System.Runtime.InteropServices;
using NativeParallel.Diagnostics;
using NativeParallel.Kernels.Check;
using NativeParallel.Kernels.Cpu;
using NativeParallel.Tensors;
using static NativeParallel.Kernels.Check.CaseKit;

namespace NativeParallel.Kernels.Ops;

/// <summary>
/// Rotary position embedding in place, Hugging Face Llama convention (rotate_half: element i pairs with i + d/2):
/// x: (tokens, heads, d), d even, f32 or bf16 (computed in f32, angles in f64 on the CPU); positions: (tokens) i32;
/// each pair is rotated by pos · theta^(−2i/d).
/// </summary>
[KernelOp("rope", "rope.cu")]
public static unsafe class Rope
{
    private const string Op = "rope";
    private static readonly EntryPoints Entry = new("rope_fwd");

    /// <summary>kernels/rope.cu RopeArgs (also the backward's: x is dY in, dX out).</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct RopeArgs
    {
        public ulong X, Positions;
        public int Tokens, Heads, D;
        public float Theta;
    }

    /// <summary>Runs on the tensors' device.</summary>
    public static void Run(Tensor x, Tensor positions, float theta)
    {
        using var traced = Tracer.Kernel(Op, x, positions);
        var (tokens, heads, d) = Shapes(x, positions);
        if (OpLaunch.LauncherOf(x) is { } launcher)
        {
            long pairs = (long)tokens * heads * (d / 2);
            if (pairs == 0) return;
            var args = new RopeArgs { X = x.Pointer, Positions = positions.Pointer, Tokens = tokens, Heads = heads, D = d, Theta = theta };
            launcher.Launch("rope.cu", Entry[x.DType], new Gpu.Dim3(OpLaunch.GridFor(launcher, pairs)), new Gpu.Dim3(OpLaunch.Block), 0, args);
            return;
        }
        Rotate(x, positions, theta, tokens, heads, d, sign: 1f);
    }

    /// <summary>The checks of the rotation (forward and backward): (tokens, heads, d).</summary>
    internal static (int Tokens, int Heads, int D) Shapes(Tensor x, Tensor positions)
    {
        OpShapes.Common(Op, ("x", x), ("positions", positions));
        OpShapes.FloatType(Op, "x", x, DType.F32, DType.BF16);
        OpShapes.Require(x.Rank == 3, Op, $"x must be (tokens, heads, d), got {x}");
        OpShapes.Require(x.Dim(2) % 2 == 0, Op, $"head dimension must be even, got {x.Dim(2)}");
        OpShapes.Require(positions.DType == DType.I32 && positions.Count == x.Dim(0), Op, $"positions must be i32 with {x.Dim(0)} elements, got {positions}");
        return (x.Dim(0), x.Dim(1), x.Dim(2));
    }

    /// <summary>
    /// The CPU rotation in place: sign +1 by +angle (forward), −1 by −angle (backward, the transpose). Apart from Run:
    /// a lambda's captured locals would be allocated at Run's entry, on the device path too.
    /// </summary>
    internal static void Rotate(Tensor x, Tensor positions, float theta, int tokens, int heads, int d, float sign) =>
        CpuRowKernels.Rope(x, positions, theta, tokens, heads, d, sign);

    /// <summary>The float64 reference: (x_i, x_{i+d/2}) rotated by pos · theta^(−2i/d).</summary>
    public static double[] Reference(float[] x, int[] positions, int tokens, int heads, int d, float theta)
    {
        var y = new double[x.Length];
        int half = d / 2;
        for (int t = 0; t < tokens; t++)
            for (int h = 0; h < heads; h++)
            {
                long row = ((long)t * heads + h) * d;
                for (int i = 0; i < half; i++)
                {
                    double frequency = Math.Pow(theta, -2.0 * i / d);
                    double angle = positions[t] * frequency;
                    double cos = Math.Cos(angle), sin = Math.Sin(angle);
                    double x1 = x[row + i], x2 = x[row + i + half];
                    y[row + i] = x1 * cos - x2 * sin;
                    y[row + i + half] = x2 * cos + x1 * sin;
                }
            }
        return y;
    }

    internal static IEnumerable<KernelCase> Cases()
    {
        foreach (var dt in new[] { DType.F32, DType.BF16 })
            foreach (var (tokens, heads, d) in new[] { (0, 2, 4), (1, 1, 2), (7, 3, 64), (33, 4, 128), (5, 2, 34) })
                yield return Case(dt, tokens, heads, d);
    }

    private static KernelCase Case(DType dt, int tokens, int heads, int d) =>
        new(Op, dt, $"tokens={tokens} heads={heads} d={d}", (device, seed) =>
        {
            using var s = new Scope(device);
            var x = Random(seed, 1, (long)tokens * heads * d, dt);
            var positions = RandomInts(seed, 2, tokens, 4096);
            var tx = s.Floats(x, dt, tokens, heads, d);
            Run(tx, s.Ints(positions, tokens), 10000f);
            return Compare(tx, Reference(x, positions, tokens, heads, d, 10000f), dt);
        });
}
