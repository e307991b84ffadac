using System.Runtime.CompilerServices;
using NativeParallel.Tensors;

namespace NativeParallel.Kernels.Cpu;

internal static unsafe partial class CpuRowKernels
{
    // ---- The residual add: output = a + b element-wise in chunks, one pass over the three tensors (bf16 widened and
    // narrowed in registers; the F32View path it replaces widened a and b into f32 copies and narrowed the output back).

    public static void Add(Tensor a, Tensor b, Tensor output, long count)
    {
        nint ap = (nint)a.Pointer, bp = (nint)b.Pointer, op = (nint)output.Pointer;
        if (a.DType == DType.BF16)
        {
            if (Wide) Add<V512, Bf16Element>(ap, bp, op, count);
            else Add<V256, Bf16Element>(ap, bp, op, count);
        }
        else if (Wide) Add<V512, F32Element>(ap, bp, op, count);
        else Add<V256, F32Element>(ap, bp, op, count);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Add<TV, TE>(nint a, nint b, nint output, long count) where TV : struct, IVec<TV> where TE : struct, IElement
    {
        const int chunk = 16 * 1024;
        int chunks = checked((int)((count + chunk - 1) / chunk));
        CpuParallel.For(chunks, chunk * 4L, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (start, end) =>
        {
            void* x = (void*)a, y = (void*)b, o = (void*)output;
            long i = (long)start * chunk, stop = Math.Min(count, (long)end * chunk);
            // output may be a or b: each step reads its operands before it writes.
            for (; i + 4 * TV.Count <= stop; i += 4 * TV.Count)
            {
                var a0 = TE.LoadFirst<TV>(x, i);
                var a1 = TE.LoadSecond<TV>(x, i);
                var a2 = TE.LoadFirst<TV>(x, i + 2 * TV.Count);
                var a3 = TE.LoadSecond<TV>(x, i + 2 * TV.Count);
                var b0 = TE.LoadFirst<TV>(y, i);
                var b1 = TE.LoadSecond<TV>(y, i);
                var b2 = TE.LoadFirst<TV>(y, i + 2 * TV.Count);
                var b3 = TE.LoadSecond<TV>(y, i + 2 * TV.Count);
                TE.StorePair(TV.Add(a0, b0), TV.Add(a1, b1), o, i);
                TE.StorePair(TV.Add(a2, b2), TV.Add(a3, b3), o, i + 2 * TV.Count);
            }
            for (; i + TV.Count <= stop; i += TV.Count) TE.Store(TV.Add(TE.Load<TV>(x, i), TE.Load<TV>(y, i)), o, i);
            for (; i < stop; i++) TE.StoreScalar(TE.LoadScalar(x, i) + TE.LoadScalar(y, i), o, i);
        });
    }
}
