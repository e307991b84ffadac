using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using NativeParallel.Tensors;

namespace NativeParallel.Kernels.Cpu;

internal static unsafe partial class CpuRowKernels
{
    // ---- Σ x² in double over fixed chunks, the partials added in chunk order (deterministic whatever the schedule), a
    // bf16 x widened in registers (the F32View path it replaces widened the whole tensor into an f32 copy first). The
    // same arithmetic as before on both widths: eight f32 lanes widened to two four-lane double vectors a step.

    /// <summary>Elements per partial sum: fixed, so the order of the sum does not depend on the thread count.</summary>
    private const int SumOfSquaresChunk = 1 << 16;

    /// <summary>Σ x² over <paramref name="count"/> elements, summed in a fixed order.</summary>
    public static double SumOfSquares(Tensor x, long count)
    {
        int chunks = checked((int)((count + SumOfSquaresChunk - 1) / SumOfSquaresChunk));
        long bytes = (long)chunks * sizeof(double);
        double* partials = (double*)ScratchPool.Rent(bytes);
        try
        {
            if (x.DType == DType.BF16) SumOfSquares<Bf16Element>((nint)x.Pointer, (nint)partials, count, chunks);
            else SumOfSquares<F32Element>((nint)x.Pointer, (nint)partials, count, chunks);
            double sum = 0;
            for (int c = 0; c < chunks; c++) sum += partials[c];
            return sum;
        }
        finally
        {
            ScratchPool.Return(partials, bytes);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void SumOfSquares<TE>(nint x, nint partials, long count, int chunks) where TE : struct, IElement
    {
        CpuParallel.For(chunks, SumOfSquaresChunk * 2L, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (start, end) =>
        {
            for (int c = start; c < end; c++)
            {
                long offset = (long)c * SumOfSquaresChunk;
                ((double*)partials)[c] = SumOfSquaresChunkOf<TE>((void*)x, offset, (int)Math.Min(SumOfSquaresChunk, count - offset));
            }
        });
    }

    /// <summary>Σ x² of [offset, offset + n) in double: two vectors of four lanes, each of four widened elements.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static double SumOfSquaresChunkOf<TE>(void* x, long offset, int n) where TE : struct, IElement
    {
        var a0 = Vector256<double>.Zero;
        var a1 = Vector256<double>.Zero;
        int i = 0;
        for (; i + 8 <= n; i += 8)
        {
            var (lo, hi) = Vector256.Widen(TE.Load<V256>(x, offset + i).V);
            a0 += lo * lo;
            a1 += hi * hi;
        }
        double sum = Vector256.Sum(a0 + a1);
        for (; i < n; i++)
        {
            double v = TE.LoadScalar(x, offset + i);
            sum += v * v;
        }
        return sum;
    }
}
