using System.Runtime.CompilerServices;
using NativeParallel.Tensors;

namespace NativeParallel.Kernels.Cpu;

internal static unsafe partial class CpuRowKernels
{
    // ---- RMSNorm backward: per row Σx² and Σ(dY·w)·x in one pass, then dX = (dY·w)·inv − x·coef and the group's
    // dWeight partial += (dY·x)·inv in a second pass over the same (cached) row; then the partials added into dWeight
    // in group order. bf16 widened and narrowed in registers: the F32View path it replaces widened x, w, dY and
    // dWeight into f32 copies and narrowed dX and dWeight back.

    /// <summary>Rows per dWeight partial: fixed, so the sum's order does not depend on the thread count.</summary>
    private const int RmsNormBackwardGroup = 64;

    public static void RmsNormBackward(Tensor x, Tensor weight, Tensor dY, Tensor dX, Tensor dWeight, int rows, int d, float eps)
    {
        nint xp = (nint)x.Pointer, wp = (nint)weight.Pointer, dyp = (nint)dY.Pointer, dxp = (nint)dX.Pointer, dwp = (nint)dWeight.Pointer;
        int groups = (rows + RmsNormBackwardGroup - 1) / RmsNormBackwardGroup;
        long partialBytes = (long)groups * d * sizeof(float);
        float* partials = (float*)ScratchPool.Rent(partialBytes);
        try
        {
            if (x.DType == DType.BF16)
            {
                if (Wide) RmsNormBackward<V512, Bf16Element>(xp, wp, dyp, dxp, dwp, (nint)partials, rows, d, eps);
                else RmsNormBackward<V256, Bf16Element>(xp, wp, dyp, dxp, dwp, (nint)partials, rows, d, eps);
            }
            else if (Wide) RmsNormBackward<V512, F32Element>(xp, wp, dyp, dxp, dwp, (nint)partials, rows, d, eps);
            else RmsNormBackward<V256, F32Element>(xp, wp, dyp, dxp, dwp, (nint)partials, rows, d, eps);
        }
        finally
        {
            ScratchPool.Return(partials, partialBytes);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void RmsNormBackward<TV, TE>(nint x, nint w, nint dY, nint dX, nint dW, nint partials, int rows, int d, float eps)
        where TV : struct, IVec<TV> where TE : struct, IElement
    {
        int size = typeof(TE) == typeof(F32Element) ? 4 : 2;
        int groups = (rows + RmsNormBackwardGroup - 1) / RmsNormBackwardGroup;
        // Fixed groups of rows, each summing its dWeight partial (f32, laid out in the element type's pair order, as the
        // row pass reads the rows) in row order.
        CpuParallel.For(groups, 6L * RmsNormBackwardGroup * d, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (start, end) =>
        {
            for (int grp = start; grp < end; grp++)
            {
                float* partial = (float*)partials + (long)grp * d;
                new Span<float>(partial, d).Clear();
                int r1 = Math.Min(rows, (grp + 1) * RmsNormBackwardGroup);
                for (int r = grp * RmsNormBackwardGroup; r < r1; r++)
                {
                    long offset = (long)r * d * size;
                    RmsNormBackwardRow<TV, TE>((byte*)x + offset, (byte*)w, (byte*)dY + offset, (byte*)dX + offset, partial, d, eps);
                }
            }
        });
        // dWeight += the partials in group order, columns spread across cores (each column's sum in the same order).
        const int columns = 1024; // a multiple of 2·Count on both widths: the blocks keep the pair layout's steps
        CpuParallel.For((d + columns - 1) / columns, (long)groups * columns, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (start, end) =>
        {
            int width = TV.Count;
            int i = start * columns, stop = Math.Min(d, end * columns);
            void* dw = (void*)dW;
            float* p = (float*)partials;
            for (; i + 2 * width <= stop; i += 2 * width)
            {
                var a0 = TE.LoadFirst<TV>(dw, i);
                var a1 = TE.LoadSecond<TV>(dw, i);
                for (int grp = 0; grp < groups; grp++)
                {
                    float* q = p + (long)grp * d + i;
                    a0 = TV.Add(a0, TV.LoadF32(q));
                    a1 = TV.Add(a1, TV.LoadF32(q + width));
                }
                TE.StorePair(a0, a1, dw, i);
            }
            for (; i + width <= stop; i += width)
            {
                var a0 = TE.Load<TV>(dw, i);
                for (int grp = 0; grp < groups; grp++) a0 = TV.Add(a0, TV.LoadF32(p + (long)grp * d + i));
                TE.Store(a0, dw, i);
            }
            for (; i < stop; i++)
            {
                float a0 = TE.LoadScalar(dw, i);
                for (int grp = 0; grp < groups; grp++) a0 += p[(long)grp * d + i];
                TE.StoreScalar(a0, dw, i);
            }
        });
    }

    /// <summary>
    /// One row: inv = 1/√(Σx²/d + eps), coef = inv³·Σ(dY·w)·x/d, dX = (dY·w)·inv − x·coef (fused: the product x·(−coef)
    /// rounded, then (dY·w)·inv added to it in one rounding, as the TensorPrimitives path before it), partial +=
    /// (dY·x)·inv (fused). Both passes take the same steps (pairs of vectors, single vectors, scalars), so the
    /// partial's pair layout is the same for every row.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void RmsNormBackwardRow<TV, TE>(byte* x, byte* w, byte* dy, byte* dx, float* partial, int d, float eps)
        where TV : struct, IVec<TV> where TE : struct, IElement
    {
        int width = TV.Count, i = 0;
        TV s0 = TV.Splat(0f), s1 = s0, t0 = s0, t1 = s0;
        for (; i + 2 * width <= d; i += 2 * width)
        {
            var x0 = TE.LoadFirst<TV>(x, i);
            var x1 = TE.LoadSecond<TV>(x, i);
            var g0 = TV.Multiply(TE.LoadFirst<TV>(dy, i), TE.LoadFirst<TV>(w, i));
            var g1 = TV.Multiply(TE.LoadSecond<TV>(dy, i), TE.LoadSecond<TV>(w, i));
            s0 = TV.Fma(x0, x0, s0);
            s1 = TV.Fma(x1, x1, s1);
            t0 = TV.Fma(g0, x0, t0);
            t1 = TV.Fma(g1, x1, t1);
        }
        for (; i + width <= d; i += width)
        {
            var x0 = TE.Load<TV>(x, i);
            var g0 = TV.Multiply(TE.Load<TV>(dy, i), TE.Load<TV>(w, i));
            s0 = TV.Fma(x0, x0, s0);
            t0 = TV.Fma(g0, x0, t0);
        }
        float sumSquares = TV.Sum(TV.Add(s0, s1)), dot = TV.Sum(TV.Add(t0, t1));
        for (; i < d; i++)
        {
            float xi = TE.LoadScalar(x, i), gi = TE.LoadScalar(dy, i) * TE.LoadScalar(w, i);
            sumSquares += xi * xi;
            dot += gi * xi;
        }
        float inv = 1f / MathF.Sqrt(sumSquares / d + eps);
        float coef = inv * inv * inv * dot / d;
        TV vInv = TV.Splat(inv), minusCoef = TV.Splat(-coef);
        for (i = 0; i + 2 * width <= d; i += 2 * width)
        {
            var x0 = TE.LoadFirst<TV>(x, i);
            var x1 = TE.LoadSecond<TV>(x, i);
            var dy0 = TE.LoadFirst<TV>(dy, i);
            var dy1 = TE.LoadSecond<TV>(dy, i);
            var g0 = TV.Multiply(dy0, TE.LoadFirst<TV>(w, i));
            var g1 = TV.Multiply(dy1, TE.LoadSecond<TV>(w, i));
            TE.StorePair(TV.Fma(g0, vInv, TV.Multiply(x0, minusCoef)), TV.Fma(g1, vInv, TV.Multiply(x1, minusCoef)), dx, i);
            TV.StoreF32(TV.Fma(TV.Multiply(dy0, x0), vInv, TV.LoadF32(partial + i)), partial + i);
            TV.StoreF32(TV.Fma(TV.Multiply(dy1, x1), vInv, TV.LoadF32(partial + i + width)), partial + i + width);
        }
        for (; i + width <= d; i += width)
        {
            var x0 = TE.Load<TV>(x, i);
            var dy0 = TE.Load<TV>(dy, i);
            var g0 = TV.Multiply(dy0, TE.Load<TV>(w, i));
            TE.Store(TV.Fma(g0, vInv, TV.Multiply(x0, minusCoef)), dx, i);
            TV.StoreF32(TV.Fma(TV.Multiply(dy0, x0), vInv, TV.LoadF32(partial + i)), partial + i);
        }
        for (; i < d; i++)
        {
            float x0 = TE.LoadScalar(x, i), dy0 = TE.LoadScalar(dy, i);
            float g0 = dy0 * TE.LoadScalar(w, i);
            TE.StoreScalar(MathF.FusedMultiplyAdd(g0, inv, x0 * -coef), dx, i);
            partial[i] = MathF.FusedMultiplyAdd(dy0 * x0, inv, partial[i]);
        }
    }
}
