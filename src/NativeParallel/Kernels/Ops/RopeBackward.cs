using NativeParallel.Diagnostics;
using NativeParallel.Kernels.Check;
using NativeParallel.Kernels.Cpu;
using NativeParallel.Tensors;
using static NativeParallel.Kernels.Check.CaseKit;

namespace NativeParallel.Kernels.Ops;

/// <summary>
/// Backward of rotary position embedding (Hugging Face rotate_half convention, as kernels/rope.cu): the transpose of
/// the forward rotation, i.e. each pair (i, i + d/2) rotated by −pos · theta^(−2i/d):
/// dx₁ = dy₁·cos + dy₂·sin, dx₂ = dy₂·cos − dy₁·sin. In place on dx (tokens, heads, d), d even, f32 or bf16
/// (computed in f32, angles in f64); positions: (tokens) i32.
/// </summary>
[KernelOp("rope_bwd", "rope.cu")]
public static unsafe class RopeBackward
{
    private const string Op = "rope_bwd";
    private static readonly EntryPoints Entry = new("rope_bwd");

    /// <summary>Runs on the tensors' device; dx holds dY on entry and dX on return.</summary>
    public static void Run(Tensor dx, Tensor positions, float theta)
    {
        using var traced = Tracer.Kernel("rope_bwd", dx, positions);
        var (tokens, heads, d) = Rope.Shapes(dx, positions);
        long pairs = (long)tokens * heads * (d / 2);
        if (pairs == 0) return;
        if (OpLaunch.LauncherOf(dx) is { } launcher)
        {
            // The forward's argument struct (kernels/rope.cu RopeArgs, mirrored in Rope.cs): x is dY in, dX out.
            var args = new Rope.RopeArgs { X = dx.Pointer, Positions = positions.Pointer, Tokens = tokens, Heads = heads, D = d, Theta = theta };
            launcher.Launch("rope.cu", Entry[dx.DType], new Gpu.Dim3(OpLaunch.GridFor(launcher, pairs)), new Gpu.Dim3(OpLaunch.Block), 0, args);
            return;
        }
        Rope.Rotate(dx, positions, theta, tokens, heads, d, sign: -1f);
    }

    /// <summary>The float64 reference: dX from dY.</summary>
    public static double[] Reference(float[] dY, int[] positions, int tokens, int heads, int d, float theta)
    {
        var dX = new double[dY.Length];
        int half = d / 2;
        for (int t = 0; t < tokens; t++)
            for (int h = 0; h < heads; h++)
            {
                long row = ((long)t * heads + h) * d;
                for (int i = 0; i < half; i++)
                {
                    double angle = positions[t] * Math.Pow(theta, -2.0 * i / d);
                    double cos = Math.Cos(angle), sin = Math.Sin(angle);
                    double g1 = dY[row + i], g2 = dY[row + i + half];
                    dX[row + i] = g1 * cos + g2 * sin;
                    dX[row + i + half] = g2 * cos - g1 * sin;
                }
            }
        return dX;
    }

    internal static IEnumerable<KernelCase> Cases()
    {
        foreach (var dt in new[] { DType.F32, DType.BF16 })
            foreach (var (tokens, heads, d) in new[] { (0, 2, 8), (1, 1, 2), (3, 2, 6), (7, 4, 64), (33, 3, 128) })
                yield return Case(dt, tokens, heads, d);
    }

    private static KernelCase Case(DType dt, int tokens, int heads, int d) =>
        new(Op, dt, $"tokens={tokens} heads={heads} d={d}", (device, seed) =>
        {
            const float theta = 10000f;
            using var s = new Scope(device);
            var dY = Random(seed, 1, (long)tokens * heads * d, dt);
            var positions = RandomInts(seed, 2, tokens, 8192);
            var dx = s.Floats(dY, dt, tokens, heads, d);
            Run(dx, s.Ints(positions, tokens), theta);
            return Compare(dx, Reference(dY, positions, tokens, heads, d, theta), dt);
        });
}
