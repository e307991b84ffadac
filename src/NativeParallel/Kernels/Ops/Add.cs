using System.Runtime.InteropServices;
using NativeParallel.Diagnostics;
using NativeParallel.Kernels.Check;
using NativeParallel.Kernels.Cpu;
using NativeParallel.Tensors;
using static NativeParallel.Kernels.Check.CaseKit;

namespace NativeParallel.Kernels.Ops;

/// <summary>
/// The residual add: output = a + b element-wise. a, b, output: (count) of one dtype (f32 or bf16), computed in
/// f32; output may be a or b (in place).
/// </summary>
[KernelOp("add", "residual_add.cu")]
public static unsafe class Add
{
    private const string Op = "add";
    private static readonly EntryPoints Entry = new("residual_add");

    /// <summary>kernels/residual_add.cu ResidualAddArgs.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct ResidualAddArgs
    {
        public ulong A, B, Out;
        public long Count;
    }

    /// <summary>Runs on the tensors' device.</summary>
    public static void Run(Tensor a, Tensor b, Tensor output)
    {
        using var traced = Tracer.Kernel(Op, a, b, output);
        long count = OpShapes.Elementwise(Op, a, b, output);
        if (OpLaunch.LauncherOf(a) is { } launcher)
        {
            if (count == 0) return;
            var args = new ResidualAddArgs { A = a.Pointer, B = b.Pointer, Out = output.Pointer, Count = count };
            launcher.Launch("residual_add.cu", Entry[a.DType], new Gpu.Dim3(OpLaunch.GridFor(launcher, count)), new Gpu.Dim3(OpLaunch.Block), 0, args);
            return;
        }
        Cpu(a, b, output, count);
    }

    // Apart from Run: a lambda's captured locals would be allocated at Run's entry, on the device path too.
    private static void Cpu(Tensor a, Tensor b, Tensor output, long count) => CpuRowKernels.Add(a, b, output, count);

    /// <summary>The float64 reference: a + b.</summary>
    public static double[] Reference(float[] a, float[] b)
    {
        var y = new double[a.Length];
        for (int i = 0; i < a.Length; i++) y[i] = (double)a[i] + b[i];
        return y;
    }

    /// <summary>The element counts the element-wise forward ops (add, swiglu, gelu) are checked at.</summary>
    internal static readonly int[] Counts = [0, 1, 31, 33, 1000, 65537];

    internal static IEnumerable<KernelCase> Cases()
    {
        foreach (var dt in new[] { DType.F32, DType.BF16 })
        {
            foreach (int count in Counts) yield return Case(dt, count, inPlace: false);
            yield return Case(dt, 1000, inPlace: true);
        }
    }

    private static KernelCase Case(DType dt, int count, bool inPlace) =>
        new(Op, dt, $"count={count}{(inPlace ? " in-place" : "")}", (device, seed) =>
        {
            using var s = new Scope(device);
            var a = Random(seed, 1, count, dt);
            var b = Random(seed, 2, count, dt);
            var ta = s.Floats(a, dt, count);
            var output = inPlace ? ta : s.Poisoned(dt, count);
            Run(ta, s.Floats(b, dt, count), output);
            return Compare(output, Reference(a, b), dt);
        });
}
