using System.Runtime.CompilerServices;
using NativeParallel.Kernels.Ops;

namespace NativeParallel.Kernels.Cpu;

internal static unsafe partial class CpuRowKernels
{
    // ---- AdamW: one pass over param, grad, m and v, a bf16 gradient widened in registers and the bf16 copy of the
    // updated param stored in the same pass. The f32 copy of a bf16 gradient this replaces (F32View) moved 2.5 times
    // the gradient's bytes again before the step started.

    /// <summary>One AdamW step over <see cref="AdamW.AdamWArgs"/>' tensors, in <see cref="AdamW"/>'s order of operations.</summary>
    public static void AdamW(in AdamW.AdamWArgs args, bool bf16Grad)
    {
        if (bf16Grad)
        {
            if (Wide) AdamW<V512, Bf16Element>(args);
            else AdamW<V256, Bf16Element>(args);
        }
        else if (Wide) AdamW<V512, F32Element>(args);
        else AdamW<V256, F32Element>(args);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AdamW<TV, TG>(AdamW.AdamWArgs a) where TV : struct, IVec<TV> where TG : struct, IElement
    {
        const int chunk = 16 * 1024;
        long count = a.Count;
        CpuParallel.For(checked((int)((count + chunk - 1) / chunk)), chunk * 12L, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (start, end) =>
        {
            float* p = (float*)a.Param, m = (float*)a.M, v = (float*)a.V;
            void* g = (void*)a.Grad, copy = (void*)a.ParamCopy;
            TV gradScale = TV.Splat(a.GradScale), decay = TV.Splat(a.Decay), beta1 = TV.Splat(a.Beta1), oneMinusBeta1 = TV.Splat(a.OneMinusBeta1);
            TV beta2 = TV.Splat(a.Beta2), oneMinusBeta2 = TV.Splat(a.OneMinusBeta2), sqrtBias2 = TV.Splat(a.SqrtBias2), eps = TV.Splat(a.Eps);
            // p − s·q is p + (−s)·q bit for bit (negation is exact): the same rounding as the scalar tail's.
            TV minusStep = TV.Splat(-a.StepSize);
            long i = (long)start * chunk, stop = Math.Min(count, (long)end * chunk);
            // Each product and sum rounded on its own (no FMA), as the scalar tail, the float64 reference's f32 twin
            // and the GPU kernel compute them.
            for (; i + TV.Count <= stop; i += TV.Count)
            {
                TV gi = TV.Multiply(TG.Load<TV>(g, i), gradScale);
                TV pi = TV.Multiply(TV.LoadF32(p + i), decay);
                TV mi = TV.Add(TV.Multiply(beta1, TV.LoadF32(m + i)), TV.Multiply(oneMinusBeta1, gi));
                TV vi = TV.Add(TV.Multiply(beta2, TV.LoadF32(v + i)), TV.Multiply(oneMinusBeta2, TV.Multiply(gi, gi)));
                TV denom = TV.Add(TV.Divide(TV.Sqrt(vi), sqrtBias2), eps);
                pi = TV.Add(pi, TV.Multiply(minusStep, TV.Divide(mi, denom)));
                TV.StoreF32(mi, m + i);
                TV.StoreF32(vi, v + i);
                TV.StoreF32(pi, p + i);
                if (copy != null) Bf16Element.Store(pi, copy, i);
            }
            for (; i < stop; i++)
            {
                float gi = TG.LoadScalar(g, i) * a.GradScale;
                float pi = p[i] * a.Decay;
                float mi = a.Beta1 * m[i] + a.OneMinusBeta1 * gi;
                float vi = a.Beta2 * v[i] + a.OneMinusBeta2 * (gi * gi);
                float denom = MathF.Sqrt(vi) / a.SqrtBias2 + a.Eps;
                pi -= a.StepSize * (mi / denom);
                m[i] = mi;
                v[i] = vi;
                p[i] = pi;
                if (copy != null) Bf16Element.StoreScalar(pi, copy, i);
            }
        });
    }
}
