using System.Runtime.InteropServices;
using NativeParallel.Diagnostics;
using NativeParallel.Kernels.Check;
using NativeParallel.Kernels.Cpu;
using NativeParallel.Tensors;
using static NativeParallel.Kernels.Check.CaseKit;

namespace NativeParallel.Kernels.Ops;

/// <summary>
/// SwiGLU: output = silu(gate) · up with silu(g) = g / (1 + e^−g). gate, up, output: (count) of one dtype (f32 or
/// bf16), computed in f32; output may be gate or up (in place).
/// </summary>
[KernelOp("swiglu", "swiglu.cu")]
public static unsafe class SwiGlu
{
    private const string Op = "swiglu";
    private static readonly EntryPoints Entry = new("swiglu_fwd");

    /// <summary>kernels/swiglu.cu SwiGluArgs.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct SwiGluArgs
    {
        public ulong Gate, Up, Out;
        public long Count;
    }

    /// <summary>Runs on the tensors' device.</summary>
    public static void Run(Tensor gate, Tensor up, Tensor output)
    {
        using var traced = Tracer.Kernel(Op, gate, up, output);
        long count = OpShapes.Elementwise(Op, gate, up, output);
        if (OpLaunch.LauncherOf(gate) is { } launcher)
        {
            if (count == 0) return;
            var args = new SwiGluArgs { Gate = gate.Pointer, Up = up.Pointer, Out = output.Pointer, Count = count };
            launcher.Launch("swiglu.cu", Entry[gate.DType], new Gpu.Dim3(OpLaunch.GridFor(launcher, count)), new Gpu.Dim3(OpLaunch.Block), 0, args);
            return;
        }
        // The CPU path keeps bf16 in registers (Kernels/Cpu/CpuRowKernels.cs).
        CpuRowKernels.SwiGlu(gate, up, output, count);
    }

    /// <summary>The float64 reference: silu(gate) · up.</summary>
    public static double[] Reference(float[] gate, float[] up)
    {
        var y = new double[gate.Length];
        for (int i = 0; i < y.Length; i++) y[i] = gate[i] / (1.0 + Math.Exp(-gate[i])) * up[i];
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
            var gate = Random(seed, 1, count, dt, -6f, 6f);
            var up = Random(seed, 2, count, dt);
            var gateTensor = s.Floats(gate, dt, count);
            var output = inPlace ? gateTensor : s.Poisoned(dt, count);
            Run(gateTensor, s.Floats(up, dt, count), output);
            return Compare(output, Reference(gate, up), dt);
        });
}
