using System.Runtime.InteropServices;
using NativeParallel.Diagnostics;
using NativeParallel.Kernels.Check;
using NativeParallel.Kernels.Cpu;
using NativeParallel.Tensors;
using static NativeParallel.Kernels.Check.CaseKit;

namespace NativeParallel.Kernels.Ops;

/// <summary>
/// Backward of SwiGLU (out = silu(gate) · up): dGate = dOut · up · silu′(gate), dUp = dOut · silu(gate), with
/// silu′(g) = s·(1 + g·(1 − s)) and s = sigmoid(g). gate, up, dOut, dGate, dUp: (count) of one dtype (f32 or bf16),
/// computed in f32; dGate may be gate and dUp may be up (in place).
/// </summary>
[KernelOp("swiglu_bwd", "swiglu.cu")]
public static unsafe class SwiGluBackward
{
    private static readonly EntryPoints Entry = new("swiglu_bwd");

    /// <summary>kernels/swiglu.cu SwiGluBwdArgs.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct SwiGluBwdArgs
    {
        public ulong Gate, Up, DOut, DGate, DUp;
        public long Count;
    }

    /// <summary>Runs on the tensors' device.</summary>
    public static void Run(Tensor gate, Tensor up, Tensor dOut, Tensor dGate, Tensor dUp)
    {
        using var traced = Tracer.Kernel("swiglu_bwd", gate, up, dOut, dGate, dUp);
        long count = OpShapes.Elementwise("swiglu_bwd", gate, up, dOut);
        OpShapes.Elementwise("swiglu_bwd", gate, dGate, dUp);
        if (count == 0) return;
        if (OpLaunch.LauncherOf(gate) is { } launcher)
        {
            var args = new SwiGluBwdArgs { Gate = gate.Pointer, Up = up.Pointer, DOut = dOut.Pointer, DGate = dGate.Pointer, DUp = dUp.Pointer, Count = count };
            launcher.Launch("swiglu.cu", Entry[gate.DType], new Gpu.Dim3(OpLaunch.GridFor(launcher, count)), new Gpu.Dim3(OpLaunch.Block), 0, args);
            return;
        }
        Cpu(gate, up, dOut, dGate, dUp, count);
    }

    // Apart from Run: a lambda's captured locals would be allocated at Run's entry, on the device path too.
    private static void Cpu(Tensor gate, Tensor up, Tensor dOut, Tensor dGate, Tensor dUp, long count) =>
        CpuRowKernels.SwiGluBackward(gate, up, dOut, dGate, dUp, count);

    /// <summary>The float64 reference: (dGate, dUp).</summary>
    public static (double[] DGate, double[] DUp) Reference(float[] gate, float[] up, float[] dOut)
    {
        var dGate = new double[gate.Length];
        var dUp = new double[gate.Length];
        for (int i = 0; i < gate.Length; i++)
        {
            double g = gate[i], s = 1.0 / (1.0 + Math.Exp(-g));
            dGate[i] = dOut[i] * (double)up[i] * s * (1 + g * (1 - s));
            dUp[i] = dOut[i] * g * s;
        }
        return (dGate, dUp);
    }

    internal static IEnumerable<KernelCase> Cases()
    {
        foreach (var dt in new[] { DType.F32, DType.BF16 })
        {
            foreach (int count in new[] { 0, 1, 31, 33, 1000, 65537 }) yield return Case(dt, count, inPlace: false);
            yield return Case(dt, 5000, inPlace: true);
        }
    }

    private static KernelCase Case(DType dt, int count, bool inPlace) =>
        new("swiglu_bwd", dt, $"count={count}{(inPlace ? " in-place" : "")}", (device, seed) =>
        {
            using var s = new Scope(device);
            var gate = Random(seed, 1, count, dt, -6f, 6f);
            var up = Random(seed, 2, count, dt);
            var dOut = Random(seed, 3, count, dt);
            var gateTensor = s.Floats(gate, dt, count);
            var upTensor = s.Floats(up, dt, count);
            var dGate = inPlace ? gateTensor : s.Poisoned(dt, count);
            var dUp = inPlace ? upTensor : s.Poisoned(dt, count);
            Run(gateTensor, upTensor, s.Floats(dOut, dt, count), dGate, dUp);
            var (refGate, refUp) = Reference(gate, up, dOut);
            return Worst(Compare(dGate, refGate, dt), Compare(dUp, refUp, dt));
        });
}
