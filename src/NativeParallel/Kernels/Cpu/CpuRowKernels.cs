using System.Runtime.CompilerServices;
using NativeParallel.Tensors;

namespace NativeParallel.Kernels.Cpu;

/// <summary>
/// The memory-bound CPU kernels (RMSNorm, softmax, cross-entropy, SwiGLU; attention is in <see cref="CpuAttention"/>)
/// written once over a SIMD width (<see cref="IVec{TV}"/>) and an element type (<see cref="IElement"/>): each reads its tensors once from memory
/// and writes its output once, with bf16 widened and narrowed in registers. The F32View path they replace widened
/// every bf16 tensor into scratch and narrowed the output back, two extra passes over memory, and exp was scalar.
/// A row is re-read only while it is still in L1/L2 (a 4096-wide row is 8 KB, a 50257-wide bf16 row 100 KB).
/// Every loop is compiled fully optimised at once (AggressiveOptimization): under tiered compilation a kernel called
/// a few dozen times ran its tier-0 code, 20× slower here (attention decode 10 ms against 0.45 ms).
/// </summary>
internal static unsafe partial class CpuRowKernels
{
    private static bool Wide => CpuPackedGemm.UsesVector512;

    // ---- RMSNorm: the sum of squares over the row, then y = x·inv·w over the same (now cached) row.

    public static void RmsNorm(Tensor x, Tensor weight, Tensor y, int rows, int d, float eps)
    {
        nint xp = (nint)x.Pointer, wp = (nint)weight.Pointer, yp = (nint)y.Pointer;
        if (x.DType == DType.BF16)
        {
            if (Wide) RmsNorm<V512, Bf16Element>(xp, wp, yp, rows, d, eps);
            else RmsNorm<V256, Bf16Element>(xp, wp, yp, rows, d, eps);
        }
        else if (Wide) RmsNorm<V512, F32Element>(xp, wp, yp, rows, d, eps);
        else RmsNorm<V256, F32Element>(xp, wp, yp, rows, d, eps);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void RmsNorm<TV, TE>(nint x, nint w, nint y, int rows, int d, float eps)
        where TV : struct, IVec<TV> where TE : struct, IElement
    {
        int size = typeof(TE) == typeof(F32Element) ? 4 : 2;
        bool finiteWeight = AllFinite<TE>((byte*)w, d);
        CpuParallel.For(rows, 3L * d, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (start, end) =>
        {
            for (int r = start; r < end; r++)
                RmsNormRow<TV, TE>((byte*)x + (long)r * d * size, (byte*)w, (byte*)y + (long)r * d * size, d, eps,
                    r + 1 < end ? (byte*)x + (long)(r + 1) * d * size : null, finiteWeight);
        });
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void RmsNormRow<TV, TE>(byte* x, byte* w, byte* y, int d, float eps, byte* next, bool finiteWeight)
        where TV : struct, IVec<TV> where TE : struct, IElement
    {
        int size = typeof(TE) == typeof(F32Element) ? 4 : 2;
        bool prefetch = next != null && System.Runtime.Intrinsics.X86.Sse.IsSupported;
        int width = TV.Count, i = 0;
        TV a0 = TV.Splat(0f), a1 = a0, a2 = a0, a3 = a0;
        for (; i + 4 * width <= d; i += 4 * width)
        {
            var v0 = TE.LoadFirst<TV>(x, i);
            var v1 = TE.LoadSecond<TV>(x, i);
            var v2 = TE.LoadFirst<TV>(x, i + 2 * width);
            var v3 = TE.LoadSecond<TV>(x, i + 2 * width);
            a0 = TV.Fma(v0, v0, a0);
            a1 = TV.Fma(v1, v1, a1);
            a2 = TV.Fma(v2, v2, a2);
            a3 = TV.Fma(v3, v3, a3);
        }
        for (; i + width <= d; i += width)
        {
            var v = TE.Load<TV>(x, i);
            a0 = TV.Fma(v, v, a0);
        }
        float sum = TV.Sum(TV.Add(TV.Add(a0, a1), TV.Add(a2, a3)));
        for (; i < d; i++)
        {
            float v = TE.LoadScalar(x, i);
            sum += v * v;
        }
        float inv = 1f / MathF.Sqrt(sum / d + eps);
        var scale = TV.Splat(inv);
        // A finite Σx² and inv with finite weights prove every output finite (|x·inv| ≤ √d), so the store skips its
        // NaN handling.
        bool finite = finiteWeight && float.IsFinite(sum) && float.IsFinite(inv);
        // y may be x (in place): each element is read before it is written. Two vectors a step, in the element
        // type's pair order (bf16: even and odd elements, no lane crossing to widen or narrow).
        for (i = 0; i + 2 * width <= d; i += 2 * width)
        {
            // The next row into L2 while this one is written: the lines of this step's span of it.
            if (prefetch) PrefetchSpan(next + (long)i * size, 2 * width * size);
            var x0 = TE.LoadFirst<TV>(x, i);
            var x1 = TE.LoadSecond<TV>(x, i);
            var w0 = TE.LoadFirst<TV>(w, i);
            var w1 = TE.LoadSecond<TV>(w, i);
            var y0 = TV.Multiply(TV.Multiply(x0, scale), w0);
            var y1 = TV.Multiply(TV.Multiply(x1, scale), w1);
            if (finite) TE.StorePairNoNaN(y0, y1, y, i);
            else TE.StorePair(y0, y1, y, i);
        }
        for (; i + width <= d; i += width)
        {
            var value = TV.Multiply(TV.Multiply(TE.Load<TV>(x, i), scale), TE.Load<TV>(w, i));
            if (finite) TE.StoreNoNaN(value, y, i);
            else TE.Store(value, y, i);
        }
        for (; i < d; i++) TE.StoreScalar(TE.LoadScalar(x, i) * inv * TE.LoadScalar(w, i), y, i);
    }

    /// <summary>Fetches the 64-byte lines of [p, p + bytes) into L2 (bytes a multiple of 64, p 64-aligned or not).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PrefetchSpan(byte* p, int bytes)
    {
        for (int offset = 0; offset < bytes; offset += 64) System.Runtime.Intrinsics.X86.Sse.Prefetch1(p + offset);
    }

    /// <summary>Whether none of a vector's <paramref name="n"/> elements is NaN or infinite (a weight, once per launch).</summary>
    private static bool AllFinite<TE>(byte* p, int n) where TE : struct, IElement
    {
        for (int i = 0; i < n; i++)
            if (!float.IsFinite(TE.LoadScalar(p, i))) return false;
        return true;
    }

    // ---- Softmax: max, then Σ e^(s·x − max) (f32 rows keep the exponentials in y), then the normalisation.

    public static void Softmax(Tensor x, Tensor y, int rows, int n, float scale)
    {
        nint xp = (nint)x.Pointer, yp = (nint)y.Pointer;
        if (x.DType == DType.BF16)
        {
            if (Wide) Softmax<V512, Bf16Element>(xp, yp, rows, n, scale);
            else Softmax<V256, Bf16Element>(xp, yp, rows, n, scale);
        }
        else if (Wide) Softmax<V512, F32Element>(xp, yp, rows, n, scale);
        else Softmax<V256, F32Element>(xp, yp, rows, n, scale);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Softmax<TV, TE>(nint x, nint y, int rows, int n, float scale)
        where TV : struct, IVec<TV> where TE : struct, IElement
    {
        int size = typeof(TE) == typeof(F32Element) ? 4 : 2;
        CpuParallel.For(rows, 8L * n, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (start, end) =>
        {
            for (int r = start; r < end; r++)
                SoftmaxRow<TV, TE>((byte*)x + (long)r * n * size, (byte*)y + (long)r * n * size, n, scale, 1f);
        });
    }

    /// <summary>The largest s·x[i] of a row (−∞ for an empty one).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float ScaledMax<TV, TE>(byte* x, int n, float s) where TV : struct, IVec<TV> where TE : struct, IElement
    {
        // Rounding is monotonic, so for s > 0 the largest s·x is s·(the largest x): no multiply per element.
        if (s > 0) return s * Max<TV, TE>(x, n, 1f, scaled: false);
        return Max<TV, TE>(x, n, s, scaled: true);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Max<TV, TE>(byte* x, int n, float s, bool scaled) where TV : struct, IVec<TV> where TE : struct, IElement
    {
        int width = TV.Count, i = 0;
        var scale = TV.Splat(s);
        float max = float.NegativeInfinity;
        if (n >= 4 * width)
        {
            TV m0 = TV.Splat(float.NegativeInfinity), m1 = m0, m2 = m0, m3 = m0;
            for (; i + 4 * width <= n; i += 4 * width)
            {
                var v0 = TE.LoadFirst<TV>(x, i);
                var v1 = TE.LoadSecond<TV>(x, i);
                var v2 = TE.LoadFirst<TV>(x, i + 2 * width);
                var v3 = TE.LoadSecond<TV>(x, i + 2 * width);
                if (scaled)
                {
                    v0 = TV.Multiply(v0, scale);
                    v1 = TV.Multiply(v1, scale);
                    v2 = TV.Multiply(v2, scale);
                    v3 = TV.Multiply(v3, scale);
                }
                m0 = TV.Max(m0, v0);
                m1 = TV.Max(m1, v1);
                m2 = TV.Max(m2, v2);
                m3 = TV.Max(m3, v3);
            }
            max = TV.MaxAcross(TV.Max(TV.Max(m0, m1), TV.Max(m2, m3)));
        }
        for (; i < n; i++) max = Math.Max(max, s * TE.LoadScalar(x, i));
        return max;
    }

    /// <summary>
    /// Σ e^(s·x[i] − max) over a row; when <paramref name="store"/> is set each exponential is also written to it
    /// (it may be x itself for f32 rows: element i is read before it is written).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float ExpSum<TV, TE>(byte* x, float* store, int n, float s, float max)
        where TV : struct, IVec<TV> where TE : struct, IElement
    {
        int width = TV.Count, i = 0;
        TV scale = TV.Splat(s), shift = TV.Splat(-max), a0 = TV.Splat(0f), a1 = a0;
        // Pairs in the element type's order: the stored exponentials are in it too, and the caller reads them back
        // with the same steps.
        for (; i + 2 * width <= n; i += 2 * width)
        {
            var x0 = TE.LoadFirst<TV>(x, i);
            var x1 = TE.LoadSecond<TV>(x, i);
            var e0 = TV.Exp(TV.Fma(x0, scale, shift));
            var e1 = TV.Exp(TV.Fma(x1, scale, shift));
            if (store != null)
            {
                TV.StoreF32(e0, store + i);
                TV.StoreF32(e1, store + i + width);
            }
            a0 = TV.Add(a0, e0);
            a1 = TV.Add(a1, e1);
        }
        for (; i + width <= n; i += width)
        {
            var e = TV.Exp(TV.Fma(TE.Load<TV>(x, i), scale, shift));
            if (store != null) TV.StoreF32(e, store + i);
            a0 = TV.Add(a0, e);
        }
        float sum = TV.Sum(TV.Add(a0, a1));
        for (; i < n; i++)
        {
            float e = VectorExp.Exp(MathF.FusedMultiplyAdd(TE.LoadScalar(x, i), s, -max));
            if (store != null) store[i] = e;
            sum += e;
        }
        return sum;
    }

    /// <summary>
    /// y = factor · softmax(s·x) over one row; returns (max, Σ) of s·x for callers that need the log-sum-exp.
    /// The summing pass stores each exponential in f32 (into y itself for f32 rows, into a per-thread row buffer that
    /// stays in L2 for bf16 ones), so exp runs once per element: it, not memory, bounds this kernel on a small CPU.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static (float Max, float Sum) SoftmaxRow<TV, TE>(byte* x, byte* y, int n, float s, float factor)
        where TV : struct, IVec<TV> where TE : struct, IElement
    {
        if (n == 0) return (float.NegativeInfinity, 0f);
        bool f32 = typeof(TE) == typeof(F32Element);
        float* e = f32 ? (float*)y : RowBuffer(n);
        float max = ScaledMax<TV, TE>(x, n, s);
        float sum = ExpSum<TV, TE>(x, e, n, s, max);
        float inv = factor / sum;
        int width = TV.Count, i = 0;
        var k = TV.Splat(inv);
        // As in the cross-entropy: a finite factor/Σ proves every output finite. The same steps as ExpSum's (its
        // pairs are in the element type's order).
        StoreScaled<TV, TE>(e, y, n, k, float.IsFinite(inv), ref i);
        for (; i < n; i++) TE.StoreScalar(e[i] * inv, y, i);
        return (max, sum);
    }

    /// <summary>
    /// y[i..] = k·e[i..] over the vector part of a row, in the steps the exponential passes wrote e with (pairs of
    /// vectors in the element type's order, then single vectors); <paramref name="i"/> ends where the scalar tail starts.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreScaled<TV, TE>(float* e, byte* y, int n, TV k, bool finite, ref int i)
        where TV : struct, IVec<TV> where TE : struct, IElement
    {
        int width = TV.Count;
        if (finite)
        {
            for (; i + 2 * width <= n; i += 2 * width) TE.StorePairNoNaN(TV.Multiply(TV.LoadF32(e + i), k), TV.Multiply(TV.LoadF32(e + i + width), k), y, i);
            for (; i + width <= n; i += width) TE.StoreNoNaN(TV.Multiply(TV.LoadF32(e + i), k), y, i);
        }
        else
        {
            for (; i + 2 * width <= n; i += 2 * width) TE.StorePair(TV.Multiply(TV.LoadF32(e + i), k), TV.Multiply(TV.LoadF32(e + i + width), k), y, i);
            for (; i + width <= n; i += width) TE.Store(TV.Multiply(TV.LoadF32(e + i), k), y, i);
        }
    }

    [ThreadStatic] private static float* t_row;
    [ThreadStatic] private static int t_rowLength;

    /// <summary>This thread's f32 row buffer of at least <paramref name="n"/> floats (kept: the pool's threads are few).</summary>
    private static float* RowBuffer(int n)
    {
        if (t_rowLength < n)
        {
            if (t_row != null) System.Runtime.InteropServices.NativeMemory.AlignedFree(t_row);
            t_rowLength = Math.Max(n, 4096);
            t_row = (float*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)t_rowLength * sizeof(float), 64);
        }
        return t_row;
    }

    // ---- Cross-entropy: one softmax row scaled by gradScale, the target's gradient less gradScale, the loss from (max, Σ).

    public static void CrossEntropy(Tensor logits, Tensor targets, Tensor losses, Tensor dLogits, int rows, int v, float gradScale)
    {
        nint xp = (nint)logits.Pointer, dp = (nint)dLogits.Pointer, lp = (nint)losses.Pointer, tp = (nint)targets.Pointer;
        if (logits.DType == DType.BF16)
        {
            if (Wide) CrossEntropy<V512, Bf16Element>(xp, tp, lp, dp, rows, v, gradScale);
            else CrossEntropy<V256, Bf16Element>(xp, tp, lp, dp, rows, v, gradScale);
        }
        else if (Wide) CrossEntropy<V512, F32Element>(xp, tp, lp, dp, rows, v, gradScale);
        else CrossEntropy<V256, F32Element>(xp, tp, lp, dp, rows, v, gradScale);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void CrossEntropy<TV, TE>(nint x, nint targets, nint losses, nint dLogits, int rows, int v, float g)
        where TV : struct, IVec<TV> where TE : struct, IElement
    {
        int size = typeof(TE) == typeof(F32Element) ? 4 : 2;
        CpuParallel.For(rows, v * 8L, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (start, end) =>
        {
            for (int r = start; r < end; r++)
            {
                byte* row = (byte*)x + (long)r * v * size, dRow = (byte*)dLogits + (long)r * v * size;
                int t = ((int*)targets)[r];
                if ((uint)t >= (uint)v)
                {
                    new Span<byte>(dRow, v * size).Clear();
                    ((float*)losses)[r] = 0f;
                    continue;
                }
                // Read before the row is written (dLogits may be logits).
                float targetLogit = TE.LoadScalar(row, t);
                // The next row of this task is fetched into L2 while this one's exponentials are computed.
                byte* next = r + 1 < end ? row + (long)v * size : null;
                var (max, sum, target) = CrossEntropyRow<TV, TE>(row, dRow, v, t, g, next);
                ((float*)losses)[r] = (float)(max + Math.Log(sum) - targetLogit);
                TE.StoreScalar(target - g, dRow, t);
            }
        });
    }

    /// <summary>
    /// y = g · softmax(x) over one row, as <see cref="SoftmaxRow{TV,TE}"/> but with the cheaper exp: every
    /// exponential is 2^(x·log2 e − max·log2 e), one FMA into <see cref="IVec{TV}.Exp2NonPositive"/>. Returns (max, Σ e^(x − max),
    /// the target's g·softmax) for the loss and the target's gradient. Three sweeps of the row: the max (from memory),
    /// the exponentials and their sum into f32 (y itself for f32 rows, else this thread's row buffer: L2), the scale
    /// and narrow to y.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static (float Max, float Sum, float Target) CrossEntropyRow<TV, TE>(byte* x, byte* y, int n, int target, float g, byte* next)
        where TV : struct, IVec<TV> where TE : struct, IElement
    {
        bool f32 = typeof(TE) == typeof(F32Element);
        int size = f32 ? 4 : 2;
        bool prefetch = next != null && System.Runtime.Intrinsics.X86.Sse.IsSupported;
        float* e = f32 ? (float*)y : RowBuffer(n);
        float max = Max<TV, TE>(x, n, 1f, scaled: false);
        int width = TV.Count, i = 0;
        // t = x·log2 e − max·log2 e ≤ 0 (x ≤ max; the rounding of the two products is the same for every element of
        // the row up to |t|·6e-8, so the softmax is as exact as before and the log-sum-exp within ~1e-6 of it).
        float shift = -max * VectorExp.Log2E;
        // The target's exponential, by the same polynomial, before the pass below: it leaves the buffer in the element
        // type's pair order, and an f32 row's buffer is y, which may be x.
        float targetExp = VectorExp.Exp2NonPositive(MathF.FusedMultiplyAdd(TE.LoadScalar(x, target), VectorExp.Log2E, shift));
        TV a = TV.Splat(VectorExp.Log2E), b = TV.Splat(shift), s0 = TV.Splat(0f), s1 = s0;
        for (; i + 2 * width <= n; i += 2 * width)
        {
            if (prefetch)
            {
                // The same span of the next row (64 bytes of bf16 per step on Vector512; f32 takes two lines).
                byte* pf = next + (long)i * size;
                System.Runtime.Intrinsics.X86.Sse.Prefetch1(pf);
                if (2 * width * size > 64) System.Runtime.Intrinsics.X86.Sse.Prefetch1(pf + 64);
            }
            var x0 = TE.LoadFirst<TV>(x, i);
            var x1 = TE.LoadSecond<TV>(x, i);
            var e0 = TV.Exp2NonPositive(TV.Fma(x0, a, b));
            var e1 = TV.Exp2NonPositive(TV.Fma(x1, a, b));
            TV.StoreF32(e0, e + i);
            TV.StoreF32(e1, e + i + width);
            s0 = TV.Add(s0, e0);
            s1 = TV.Add(s1, e1);
        }
        for (; i + width <= n; i += width)
        {
            var e0 = TV.Exp2NonPositive(TV.Fma(TE.Load<TV>(x, i), a, b));
            TV.StoreF32(e0, e + i);
            s0 = TV.Add(s0, e0);
        }
        float sum = TV.Sum(TV.Add(s0, s1));
        for (; i < n; i++) sum += e[i] = VectorExp.Exp2NonPositive(MathF.FusedMultiplyAdd(TE.LoadScalar(x, i), VectorExp.Log2E, shift));
        float inv = g / sum, targetValue = targetExp * inv;
        var k = TV.Splat(inv);
        // A finite g/Σ proves every exponential finite (a NaN or an infinity anywhere makes the sum one), and so
        // every output: the store skips its NaN handling.
        i = 0;
        StoreScaled<TV, TE>(e, y, n, k, float.IsFinite(inv), ref i);
        for (; i < n; i++) TE.StoreScalar(e[i] * inv, y, i);
        return (max, sum, targetValue);
    }

    // ---- SwiGLU: g·u·σ(g), element-wise in chunks (output may be gate or up); σ without a division (VectorExp.Sigmoid).

    public static void SwiGlu(Tensor gate, Tensor up, Tensor output, long count)
    {
        nint gp = (nint)gate.Pointer, upp = (nint)up.Pointer, op = (nint)output.Pointer;
        if (gate.DType == DType.BF16)
        {
            if (Wide) SwiGlu<V512, Bf16Element>(gp, upp, op, count);
            else SwiGlu<V256, Bf16Element>(gp, upp, op, count);
        }
        else if (Wide) SwiGlu<V512, F32Element>(gp, upp, op, count);
        else SwiGlu<V256, F32Element>(gp, upp, op, count);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void SwiGlu<TV, TE>(nint gate, nint up, nint output, long count) where TV : struct, IVec<TV> where TE : struct, IElement
    {
        const int chunk = 16 * 1024;
        int chunks = checked((int)((count + chunk - 1) / chunk));
        CpuParallel.For(chunks, chunk * 8L, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (start, end) =>
        {
            void* g = (void*)gate, u = (void*)up, o = (void*)output;
            long i = (long)start * chunk, stop = Math.Min(count, (long)end * chunk);
            for (; i + 2 * TV.Count <= stop; i += 2 * TV.Count)
            {
                var x0 = TE.LoadFirst<TV>(g, i);
                var x1 = TE.LoadSecond<TV>(g, i);
                var u0 = TE.LoadFirst<TV>(u, i);
                var u1 = TE.LoadSecond<TV>(u, i);
                TE.StorePair(TV.Multiply(TV.Multiply(x0, u0), Gate<TV, TE>(x0)), TV.Multiply(TV.Multiply(x1, u1), Gate<TV, TE>(x1)), o, i);
            }
            for (; i + TV.Count <= stop; i += TV.Count)
            {
                var x = TE.Load<TV>(g, i);
                TE.Store(TV.Multiply(TV.Multiply(x, TE.Load<TV>(u, i)), Gate<TV, TE>(x)), o, i);
            }
            for (; i < stop; i++)
            {
                float x = TE.LoadScalar(g, i);
                TE.StoreScalar(x * TE.LoadScalar(u, i) * VectorExp.Sigmoid(x), o, i);
            }
        });
    }

    /// <summary>SwiGLU's gate σ(x): to bf16's precision for a bf16 output (<see cref="IVec{TV}.SigmoidForBf16"/>), full f32 otherwise.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static TV Gate<TV, TE>(TV x) where TV : struct, IVec<TV> where TE : struct, IElement =>
        typeof(TE) == typeof(Bf16Element) ? TV.SigmoidForBf16(x) : TV.Sigmoid(x);
}
