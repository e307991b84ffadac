using System.Runtime.CompilerServices;
using NativeParallel.Tensors;

namespace NativeParallel.Kernels.Cpu;

internal static unsafe partial class CpuRowKernels
{
    // ---- SwiGLU backward: dGate = dOut·up·silu′(g), dUp = dOut·silu(g), element-wise in chunks, one pass over the
    // five tensors (bf16 widened and narrowed in registers). The F32View path it replaces widened gate, up and dOut
    // into f32 copies and narrowed dGate and dUp back: five more passes over memory per bf16 step.

    public static void SwiGluBackward(Tensor gate, Tensor up, Tensor dOut, Tensor dGate, Tensor dUp, long count)
    {
        nint gp = (nint)gate.Pointer, upp = (nint)up.Pointer, dp = (nint)dOut.Pointer, dgp = (nint)dGate.Pointer, dup = (nint)dUp.Pointer;
        if (gate.DType == DType.BF16)
        {
            if (Wide) SwiGluBackward<V512, Bf16Element>(gp, upp, dp, dgp, dup, count);
            else SwiGluBackward<V256, Bf16Element>(gp, upp, dp, dgp, dup, count);
        }
        else if (Wide) SwiGluBackward<V512, F32Element>(gp, upp, dp, dgp, dup, count);
        else SwiGluBackward<V256, F32Element>(gp, upp, dp, dgp, dup, count);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void SwiGluBackward<TV, TE>(nint gate, nint up, nint dOut, nint dGate, nint dUp, long count)
        where TV : struct, IVec<TV> where TE : struct, IElement
    {
        const int chunk = 16 * 1024;
        int chunks = checked((int)((count + chunk - 1) / chunk));
        CpuParallel.For(chunks, chunk * 12L, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (start, end) =>
        {
            void* g = (void*)gate, u = (void*)up, dy = (void*)dOut, dg = (void*)dGate, du = (void*)dUp;
            TV one = TV.Splat(1f), minusOne = TV.Splat(-1f);
            long i = (long)start * chunk, stop = Math.Min(count, (long)end * chunk);
            // The order of operations of the TensorPrimitives path before it: s = σ(g); t = ((1 − s)·g + 1) fused,
            // then ·s, then ·up; silu = s·g; dUp = silu·dOut, dGate = t·dOut. 1 − s is s·(−1) + 1 fused: the same
            // single rounding. Every operand of a step is read before its results are written (dGate may be gate,
            // dUp may be up).
            for (; i + 2 * TV.Count <= stop; i += 2 * TV.Count)
            {
                var g0 = TE.LoadFirst<TV>(g, i);
                var g1 = TE.LoadSecond<TV>(g, i);
                var u0 = TE.LoadFirst<TV>(u, i);
                var u1 = TE.LoadSecond<TV>(u, i);
                var d0 = TE.LoadFirst<TV>(dy, i);
                var d1 = TE.LoadSecond<TV>(dy, i);
                var s0 = TV.Sigmoid(g0);
                var s1 = TV.Sigmoid(g1);
                var t0 = TV.Multiply(TV.Multiply(TV.Fma(TV.Fma(s0, minusOne, one), g0, one), s0), u0);
                var t1 = TV.Multiply(TV.Multiply(TV.Fma(TV.Fma(s1, minusOne, one), g1, one), s1), u1);
                TE.StorePair(TV.Multiply(TV.Multiply(s0, g0), d0), TV.Multiply(TV.Multiply(s1, g1), d1), du, i);
                TE.StorePair(TV.Multiply(t0, d0), TV.Multiply(t1, d1), dg, i);
            }
            for (; i + TV.Count <= stop; i += TV.Count)
            {
                var g0 = TE.Load<TV>(g, i);
                var u0 = TE.Load<TV>(u, i);
                var d0 = TE.Load<TV>(dy, i);
                var s0 = TV.Sigmoid(g0);
                var t0 = TV.Multiply(TV.Multiply(TV.Fma(TV.Fma(s0, minusOne, one), g0, one), s0), u0);
                TE.Store(TV.Multiply(TV.Multiply(s0, g0), d0), du, i);
                TE.Store(TV.Multiply(t0, d0), dg, i);
            }
            for (; i < stop; i++)
            {
                float g0 = TE.LoadScalar(g, i), u0 = TE.LoadScalar(u, i), d0 = TE.LoadScalar(dy, i);
                float s0 = VectorExp.Sigmoid(g0);
                float t0 = MathF.FusedMultiplyAdd(1f - s0, g0, 1f) * s0 * u0;
                TE.StoreScalar(s0 * g0 * d0, du, i);
                TE.StoreScalar(t0 * d0, dg, i);
            }
        });
    }
}
