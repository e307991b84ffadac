using System.Runtime.CompilerServices;
using NativeParallel.Tensors;

namespace NativeParallel.Kernels.Cpu;

internal static unsafe partial class CpuRowKernels
{
    // ---- MoE combine and its backward: rows of y named by a plan's positions, bf16 widened and narrowed in
    // registers. The f32 copies of whole tensors they replace (F32View) cost 8-10 % of the copy bandwidth.

    /// <summary>out[t, :] = Σ_j weights[t, j] · y[position[t·k + j], :] in top-k order (see <see cref="Ops.MoeCombine"/>).</summary>
    public static void MoeCombine(Tensor y, int* position, float* weights, Tensor output, int tokens, int k, int cols)
    {
        nint yp = (nint)y.Pointer, op = (nint)output.Pointer, pp = (nint)position, wp = (nint)weights;
        int yRows = y.Dim(0);
        if (y.DType == DType.BF16)
        {
            if (Wide) MoeCombine<V512, Bf16Element>(yp, pp, wp, op, tokens, k, cols, yRows);
            else MoeCombine<V256, Bf16Element>(yp, pp, wp, op, tokens, k, cols, yRows);
        }
        else if (Wide) MoeCombine<V512, F32Element>(yp, pp, wp, op, tokens, k, cols, yRows);
        else MoeCombine<V256, F32Element>(yp, pp, wp, op, tokens, k, cols, yRows);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MoeCombine<TV, TE>(nint y, nint position, nint weights, nint output, int tokens, int k, int cols, int yRows)
        where TV : struct, IVec<TV> where TE : struct, IElement
    {
        CpuParallel.For(tokens, (long)cols * (k + 1), [MethodImpl(MethodImplOptions.AggressiveOptimization)] (start, end) =>
        {
            int* pos = (int*)position;
            float* w = (float*)weights;
            int width = TV.Count;
            for (int t = start; t < end; t++)
            {
                long outBase = (long)t * cols, slot0 = (long)t * k;
                int c = 0;
                for (; c + width <= cols; c += width)
                {
                    var sum = TV.Splat(0f);
                    for (int j = 0; j < k; j++)
                    {
                        int source = pos[slot0 + j];
                        if (source < 0 || source >= yRows) continue; // dropped for capacity
                        sum = TV.Fma(TV.Splat(w[slot0 + j]), TE.Load<TV>((void*)y, (long)source * cols + c), sum);
                    }
                    TE.Store(sum, (void*)output, outBase + c);
                }
                for (; c < cols; c++)
                {
                    float sum = 0f;
                    for (int j = 0; j < k; j++)
                    {
                        int source = pos[slot0 + j];
                        if (source < 0 || source >= yRows) continue;
                        sum = MathF.FusedMultiplyAdd(w[slot0 + j], TE.LoadScalar((void*)y, (long)source * cols + c), sum);
                    }
                    TE.StoreScalar(sum, (void*)output, outBase + c);
                }
            }
        });
    }

    /// <summary>
    /// dY[row, :] = weights[t, j] · dOut[t, :] and dWeights[t, j] = dOut[t, :] · y[row, :] for each kept slot, one
    /// pass over the row pair (see <see cref="Ops.MoeCombineBackward"/>); a dropped slot's dWeights is 0.
    /// </summary>
    public static void MoeCombineBackward(Tensor dOut, Tensor y, int* position, float* weights, Tensor dY, float* dWeights, int tokens, int k, int cols)
    {
        nint gp = (nint)dOut.Pointer, yp = (nint)y.Pointer, dyp = (nint)dY.Pointer, pp = (nint)position, wp = (nint)weights, dwp = (nint)dWeights;
        int yRows = y.Dim(0);
        if (y.DType == DType.BF16)
        {
            if (Wide) MoeCombineBackward<V512, Bf16Element>(gp, yp, pp, wp, dyp, dwp, tokens, k, cols, yRows);
            else MoeCombineBackward<V256, Bf16Element>(gp, yp, pp, wp, dyp, dwp, tokens, k, cols, yRows);
        }
        else if (Wide) MoeCombineBackward<V512, F32Element>(gp, yp, pp, wp, dyp, dwp, tokens, k, cols, yRows);
        else MoeCombineBackward<V256, F32Element>(gp, yp, pp, wp, dyp, dwp, tokens, k, cols, yRows);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MoeCombineBackward<TV, TE>(nint dOut, nint y, nint position, nint weights, nint dY, nint dWeights, int tokens, int k, int cols, int yRows)
        where TV : struct, IVec<TV> where TE : struct, IElement
    {
        CpuParallel.For(tokens, (long)cols * k * 3, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (start, end) =>
        {
            int* pos = (int*)position;
            float* w = (float*)weights, dw = (float*)dWeights;
            int width = TV.Count;
            for (int t = start; t < end; t++)
            {
                long gBase = (long)t * cols;
                for (int j = 0; j < k; j++)
                {
                    long slot = (long)t * k + j;
                    int row = pos[slot];
                    if (row < 0 || row >= yRows)
                    {
                        dw[slot] = 0f;
                        continue;
                    }
                    long rowBase = (long)row * cols;
                    var scale = TV.Splat(w[slot]);
                    TV a0 = TV.Splat(0f), a1 = a0;
                    int c = 0;
                    for (; c + 2 * width <= cols; c += 2 * width)
                    {
                        TV g0 = TE.Load<TV>((void*)dOut, gBase + c), g1 = TE.Load<TV>((void*)dOut, gBase + c + width);
                        a0 = TV.Fma(g0, TE.Load<TV>((void*)y, rowBase + c), a0);
                        a1 = TV.Fma(g1, TE.Load<TV>((void*)y, rowBase + c + width), a1);
                        TE.Store(TV.Multiply(g0, scale), (void*)dY, rowBase + c);
                        TE.Store(TV.Multiply(g1, scale), (void*)dY, rowBase + c + width);
                    }
                    for (; c + width <= cols; c += width)
                    {
                        var g0 = TE.Load<TV>((void*)dOut, gBase + c);
                        a0 = TV.Fma(g0, TE.Load<TV>((void*)y, rowBase + c), a0);
                        TE.Store(TV.Multiply(g0, scale), (void*)dY, rowBase + c);
                    }
                    float dot = TV.Sum(TV.Add(a0, a1));
                    for (; c < cols; c++)
                    {
                        float g = TE.LoadScalar((void*)dOut, gBase + c);
                        dot += g * TE.LoadScalar((void*)y, rowBase + c);
                        TE.StoreScalar(g * w[slot], (void*)dY, rowBase + c);
                    }
                    dw[slot] = dot;
                }
            }
        });
    }
}
