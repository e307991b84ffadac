using System.Runtime.InteropServices;
using NativeParallel.Diagnostics;
using NativeParallel.Kernels.Check;
using NativeParallel.Kernels.Cpu;
using NativeParallel.Tensors;
using static NativeParallel.Kernels.Check.CaseKit;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

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

    private static void Cpu(Tensor gate, Tensor up, Tensor dOut, Tensor dGate, Tensor dUp, long count)
    {
        // Outputs may alias inputs, so the inputs are widened first and the outputs written from separate views.
        using var gv = F32View.Input(gate);
        using var uv = F32View.Input(up);
        using var dv = F32View.Input(dOut);
        using var dgv = F32View.Output(dGate);
        using var duv = F32View.Output(dUp);
        float* g = gv.Pointer, u = uv.Pointer, dy = dv.Pointer, dg = dgv.Pointer, du = duv.Pointer;
        const int chunk = 2048;
        CpuParallel.For((int)((count + chunk - 1) / chunk), chunk * 12L, (start, end) =>
        {
            Span<float> s = stackalloc float[chunk];
            Span<float> t = stackalloc float[chunk];
            for (int c = start; c < end; c++)
            {
                long offset = (long)c * chunk;
                int n = (int)Math.Min(chunk, count - offset);
                var gs = new ReadOnlySpan<float>(g + offset, n);
                var us = new ReadOnlySpan<float>(u + offset, n);
                var dys = new ReadOnlySpan<float>(dy + offset, n);
                var sig = s[..n];
                var tmp = t[..n];
                TensorPrimitives.Sigmoid(gs, sig);
                // tmp = 1 + g·(1 − s): (1 − s)·g + 1
                TensorPrimitives.Subtract(1f, sig, tmp);
                TensorPrimitives.FusedMultiplyAdd(tmp, gs, 1f, tmp);
                TensorPrimitives.Multiply(tmp, sig, tmp);      // silu′(g)
                TensorPrimitives.Multiply(tmp, us, tmp);
                TensorPrimitives.Multiply(sig, gs, sig);       // silu(g)
                // Read everything before writing: dGate may be gate and dUp may be up.
                TensorPrimitives.Multiply(sig, dys, new Span<float>(du + offset, n));
                TensorPrimitives.Multiply(tmp, dys, new Span<float>(dg + offset, n));
            }
        });
    }

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
