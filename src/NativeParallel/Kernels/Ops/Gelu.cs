using System.Runtime.InteropServices;
using NativeParallel.Diagnostics;
using NativeParallel.Kernels.Check;
using NativeParallel.Kernels.Cpu;
using NativeParallel.Tensors;
using static NativeParallel.Kernels.Check.CaseKit;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace NativeParallel.Kernels.Ops;

/// <summary>
/// GELU, tanh approximation (GPT-2's): output = 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))). x, output: (count) of
/// one dtype (f32 or bf16), computed in f32; output may be x (in place).
/// </summary>
[KernelOp("gelu", "gelu.cu")]
public static unsafe class Gelu
{
    private const string Op = "gelu";
    private static readonly EntryPoints Entry = new("gelu_fwd");

    /// <summary>kernels/gelu.cu GeluArgs.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct GeluArgs
    {
        public ulong X, Out;
        public long Count;
    }

    /// <summary>Runs on the tensors' device.</summary>
    public static void Run(Tensor x, Tensor output)
    {
        using var traced = Tracer.Kernel(Op, x, output);
        long count = OpShapes.Elementwise(Op, x, null, output);
        if (OpLaunch.LauncherOf(x) is { } launcher)
        {
            if (count == 0) return;
            var args = new GeluArgs { X = x.Pointer, Out = output.Pointer, Count = count };
            launcher.Launch("gelu.cu", Entry[x.DType], new Gpu.Dim3(OpLaunch.GridFor(launcher, count)), new Gpu.Dim3(OpLaunch.Block), 0, args);
            return;
        }
        Cpu(x, output, count);
    }

    private static void Cpu(Tensor x, Tensor output, long count)
    {
        using var xv = F32View.Input(x);
        using var ov = F32View.Output(output);
        float* xp = xv.Pointer, op = ov.Pointer;
        CpuParallel.Chunks(count, 12, (offset, length) =>
        {
            var src = new ReadOnlySpan<float>(xp + offset, length);
            var dst = new Span<float>(op + offset, length);
            const float c = 0.7978845608028654f; // √(2/π)
            // 0.5·x·(1 + tanh(u)) = x·sigmoid(2u) with u = c·(x + 0.044715·x³): the sigmoid form has no
            // 1 + tanh cancellation for negative x. Built in scratch since dst may alias src.
            Span<float> t = stackalloc float[length];
            TensorPrimitives.Multiply(src, src, t);
            TensorPrimitives.Multiply(t, 0.044715f, t);
            TensorPrimitives.Add(t, 1f, t);
            TensorPrimitives.Multiply(t, src, t);
            TensorPrimitives.Multiply(t, 2f * c, t);
            TensorPrimitives.Sigmoid(t, t);
            TensorPrimitives.Multiply(t, src, dst);
        });
    }

    /// <summary>The float64 reference, tanh form.</summary>
    public static double[] Reference(float[] x)
    {
        var y = new double[x.Length];
        double c = Math.Sqrt(2.0 / Math.PI);
        for (int i = 0; i < y.Length; i++)
        {
            double v = x[i];
            y[i] = 0.5 * v * (1.0 + Math.Tanh(c * (v + 0.044715 * v * v * v)));
        }
        return y;
    }

    internal static IEnumerable<KernelCase> Cases()
    {
        foreach (var dt in new[] { DType.F32, DType.BF16 })
        {
            foreach (int count in Add.Counts) yield return Case(dt, count, inPlace: false);
            yield return Case(dt, 10000, inPlace: true);
        }
    }

    private static KernelCase Case(DType dt, int count, bool inPlace) =>
        new(Op, dt, $"count={count}{(inPlace ? " in-place" : "")}", (device, seed) =>
        {
            using var s = new Scope(device);
            var x = Random(seed, 1, count, dt, -6f, 6f);
            var input = s.Floats(x, dt, count);
            var output = inPlace ? input : s.Poisoned(dt, count);
            Run(input, output);
            return Compare(output, Reference(x), dt);
        });
}
