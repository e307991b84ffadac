using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using NativeParallel.Tensors;

namespace NativeParallel.Kernels.Cpu;

internal static unsafe partial class CpuAttention
{
    // ---- Training backward
    //
    // One task per (batch entry, kv head): it owns that head's dk and dv rows and the dq rows of the query heads that
    // share it, so no two tasks write the same output and the sums run in one fixed order whatever the schedule. The
    // task widens its K once into rows (for dq) and K and V into columns (Kᵀ, Vᵀ: d rows of T), so that a query row's
    // scores and dP = dO·Vᵀ come out a vector of keys at a time with no horizontal sums; dKᵀ and dVᵀ gather in columns
    // too, and are written back as rows at the end. Per query row i (keys j ≤ i):
    //   p_j = e^(scale·q_i·k_j − lse_i),  ds_j = p_j·(dO_i·v_j − dO_i·o_i),
    //   dq_i = scale·Σ_j ds_j·k_j,  dk_j += scale·ds_j·q_i,  dv_j += p_j·dO_i.

    /// <summary>dq, dk and dv of causal attention over T positions from the forward's output and row log-sum-exp (B, Hq, T) f32.</summary>
    public static void Backward(Tensor q, Tensor k, Tensor v, Tensor output, Tensor lse, Tensor dOutput, Tensor dq, Tensor dk, Tensor dv,
        OpShapes.AttentionSizes s, float scale)
    {
        var x = new BackwardTensors((nint)q.Pointer, (nint)k.Pointer, (nint)v.Pointer, (nint)output.Pointer, (nint)lse.Pointer,
            (nint)dOutput.Pointer, (nint)dq.Pointer, (nint)dk.Pointer, (nint)dv.Pointer);
        if (q.DType == DType.BF16)
        {
            if (Wide) Backward<V512, Bf16Element>(x, s, scale);
            else Backward<V256, Bf16Element>(x, s, scale);
        }
        else if (Wide) Backward<V512, F32Element>(x, s, scale);
        else Backward<V256, F32Element>(x, s, scale);
    }

    private readonly record struct BackwardTensors(nint Q, nint K, nint V, nint O, nint Lse, nint DO, nint Dq, nint Dk, nint Dv);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Backward<TV, TE>(BackwardTensors x, OpShapes.AttentionSizes s, float scale)
        where TV : struct, IVec<TV> where TE : struct, IElement
    {
        int t = s.Tq, d = s.D, group = s.Hq / s.Hkv;
        CpuParallel.For(s.Batch * s.Hkv, 4L * group * t * t * d, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (start, end) =>
        {
            var w = BackwardBuffers.Get(t, d);
            for (int task = start; task < end; task++) BackwardKvHead<TV, TE>(x, s, task / s.Hkv, task % s.Hkv, scale, w);
        });
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void BackwardKvHead<TV, TE>(BackwardTensors x, OpShapes.AttentionSizes s, int b, int g, float scale, BackwardBuffers w)
        where TV : struct, IVec<TV> where TE : struct, IElement
    {
        int t = s.Tq, d = s.D, hq = s.Hq, hkv = s.Hkv, group = hq / hkv, width = TV.Count;
        int columns = w.Columns; // t rounded up to a whole vector of keys; the columns past t stay zero
        float* kRows = w.KRows, kt = w.KT, vt = w.VT, dkt = w.DKT, dvt = w.DVT, p = w.P, ds = w.DS, qi = w.Qi, gi = w.Gi;
        void* q = (void*)x.Q, k = (void*)x.K, v = (void*)x.V, o = (void*)x.O, dO = (void*)x.DO, dq = (void*)x.Dq, dk = (void*)x.Dk, dv = (void*)x.Dv;
        float* lse = (float*)x.Lse;
        long keyRow(int j) => (((long)b * t + j) * hkv + g) * d;
        for (int j = 0; j < t; j++)
            for (int e = 0; e < d; e++)
            {
                float kv = TE.LoadScalar(k, keyRow(j) + e);
                kRows[(long)j * d + e] = kv;
                kt[(long)e * columns + j] = kv;
                vt[(long)e * columns + j] = TE.LoadScalar(v, keyRow(j) + e);
            }
        for (int e = 0; e < d; e++)
            for (int j = t; j < columns; j++) kt[(long)e * columns + j] = vt[(long)e * columns + j] = 0f;
        new Span<float>(dkt, d * columns).Clear();
        new Span<float>(dvt, d * columns).Clear();

        for (int hh = g * group; hh < (g + 1) * group; hh++)
            for (int i = 0; i < t; i++)
            {
                long row = (((long)b * t + i) * hq + hh) * d;
                float delta = 0f;
                for (int e = 0; e < d; e++)
                {
                    qi[e] = TE.LoadScalar(q, row + e) * scale;
                    gi[e] = TE.LoadScalar(dO, row + e);
                    delta += gi[e] * TE.LoadScalar(o, row + e);
                }
                int n = i + 1, keys = (n + width - 1) / width * width;
                ScoreRow<TV>(qi, gi, kt, vt, columns, d, keys, lse[((long)b * hq + hh) * t + i], delta, p, ds);
                for (int j = n; j < keys; j++) p[j] = ds[j] = 0f; // keys past i: masked
                // dkᵀ[e] += (scale·q_i)[e]·ds, dvᵀ[e] += dO_i[e]·p over the row's keys.
                for (int e = 0; e < d; e++)
                {
                    TV qe = TV.Splat(qi[e]), ge = TV.Splat(gi[e]);
                    float* dkRow = dkt + (long)e * columns, dvRow = dvt + (long)e * columns;
                    for (int j = 0; j < keys; j += width)
                    {
                        TV.StoreF32(TV.Fma(qe, TV.LoadF32(ds + j), TV.LoadF32(dkRow + j)), dkRow + j);
                        TV.StoreF32(TV.Fma(ge, TV.LoadF32(p + j), TV.LoadF32(dvRow + j)), dvRow + j);
                    }
                }
                QueryGradient<TV, TE>(ds, n, kRows, d, scale, dq, row);
            }
        for (int j = 0; j < t; j++)
            for (int e = 0; e < d; e++)
            {
                TE.StoreScalar(dkt[(long)e * columns + j], dk, keyRow(j) + e);
                TE.StoreScalar(dvt[(long)e * columns + j], dv, keyRow(j) + e);
            }
    }

    /// <summary>
    /// p[j] = e^(q·k_j − lse) and ds[j] = p[j]·(g·v_j − delta) for keys [0, keys) from the columns Kᵀ and Vᵀ: two
    /// vectors of keys at a time, each dot product in two halves (even and odd e), eight independent sums.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ScoreRow<TV>(float* q, float* g, float* kt, float* vt, int columns, int d, int keys, float lse, float delta, float* p, float* ds)
        where TV : struct, IVec<TV>
    {
        int width = TV.Count, j = 0;
        TV minusLse = TV.Splat(-lse), minusDelta = TV.Splat(-delta);
        for (; j + 2 * width <= keys; j += 2 * width)
        {
            TV s0 = TV.Splat(0f), s1 = s0, s2 = s0, s3 = s0, u0 = s0, u1 = s0, u2 = s0, u3 = s0;
            int e = 0;
            for (; e + 2 <= d; e += 2)
            {
                float* k0 = kt + (long)e * columns + j, k1 = k0 + columns, v0 = vt + (long)e * columns + j, v1 = v0 + columns;
                TV qa = TV.Splat(q[e]), qb = TV.Splat(q[e + 1]), ga = TV.Splat(g[e]), gb = TV.Splat(g[e + 1]);
                s0 = TV.Fma(qa, TV.LoadF32(k0), s0);
                s1 = TV.Fma(qa, TV.LoadF32(k0 + width), s1);
                s2 = TV.Fma(qb, TV.LoadF32(k1), s2);
                s3 = TV.Fma(qb, TV.LoadF32(k1 + width), s3);
                u0 = TV.Fma(ga, TV.LoadF32(v0), u0);
                u1 = TV.Fma(ga, TV.LoadF32(v0 + width), u1);
                u2 = TV.Fma(gb, TV.LoadF32(v1), u2);
                u3 = TV.Fma(gb, TV.LoadF32(v1 + width), u3);
            }
            if (e < d)
            {
                float* k0 = kt + (long)e * columns + j, v0 = vt + (long)e * columns + j;
                TV qa = TV.Splat(q[e]), ga = TV.Splat(g[e]);
                s0 = TV.Fma(qa, TV.LoadF32(k0), s0);
                s1 = TV.Fma(qa, TV.LoadF32(k0 + width), s1);
                u0 = TV.Fma(ga, TV.LoadF32(v0), u0);
                u1 = TV.Fma(ga, TV.LoadF32(v0 + width), u1);
            }
            StoreProbabilities<TV>(TV.Add(s0, s2), TV.Add(u0, u2), minusLse, minusDelta, p + j, ds + j);
            StoreProbabilities<TV>(TV.Add(s1, s3), TV.Add(u1, u3), minusLse, minusDelta, p + j + width, ds + j + width);
        }
        for (; j < keys; j += width)
        {
            TV s0 = TV.Splat(0f), s1 = s0, u0 = s0, u1 = s0;
            int e = 0;
            for (; e + 2 <= d; e += 2)
            {
                float* k0 = kt + (long)e * columns + j, v0 = vt + (long)e * columns + j;
                s0 = TV.Fma(TV.Splat(q[e]), TV.LoadF32(k0), s0);
                s1 = TV.Fma(TV.Splat(q[e + 1]), TV.LoadF32(k0 + columns), s1);
                u0 = TV.Fma(TV.Splat(g[e]), TV.LoadF32(v0), u0);
                u1 = TV.Fma(TV.Splat(g[e + 1]), TV.LoadF32(v0 + columns), u1);
            }
            if (e < d)
            {
                s0 = TV.Fma(TV.Splat(q[e]), TV.LoadF32(kt + (long)e * columns + j), s0);
                u0 = TV.Fma(TV.Splat(g[e]), TV.LoadF32(vt + (long)e * columns + j), u0);
            }
            StoreProbabilities<TV>(TV.Add(s0, s1), TV.Add(u0, u1), minusLse, minusDelta, p + j, ds + j);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreProbabilities<TV>(TV scores, TV dp, TV minusLse, TV minusDelta, float* p, float* ds) where TV : struct, IVec<TV>
    {
        TV prob = TV.Exp(TV.Add(scores, minusLse));
        TV.StoreF32(prob, p);
        TV.StoreF32(TV.Multiply(prob, TV.Add(dp, minusDelta)), ds);
    }

    /// <summary>dq row = scale·Σ_{j &lt; n} ds[j]·k_j from the K rows: vectors along d, the keys split even and odd into two sums.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void QueryGradient<TV, TE>(float* ds, int n, float* kRows, int d, float scale, void* dq, long row)
        where TV : struct, IVec<TV> where TE : struct, IElement
    {
        int width = TV.Count, e = 0;
        TV sv = TV.Splat(scale);
        for (; e + width <= d; e += width)
        {
            TV a = TV.Splat(0f), c = a;
            int j = 0;
            for (; j + 2 <= n; j += 2)
            {
                a = TV.Fma(TV.Splat(ds[j]), TV.LoadF32(kRows + (long)j * d + e), a);
                c = TV.Fma(TV.Splat(ds[j + 1]), TV.LoadF32(kRows + (long)(j + 1) * d + e), c);
            }
            if (j < n) a = TV.Fma(TV.Splat(ds[j]), TV.LoadF32(kRows + (long)j * d + e), a);
            TE.Store(TV.Multiply(TV.Add(a, c), sv), dq, row + e);
        }
        for (; e < d; e++)
        {
            float a = 0f;
            for (int j = 0; j < n; j++) a += ds[j] * kRows[(long)j * d + e];
            TE.StoreScalar(a * scale, dq, row + e);
        }
    }

    /// <summary>
    /// One thread's f32 work space for the backward, kept between calls: K as rows (T × d); Kᵀ, Vᵀ, dKᵀ, dVᵀ as d rows
    /// of <see cref="Columns"/> (T rounded up to 16 keys); a query row's p and ds; its scaled q and dO.
    /// </summary>
    private sealed class BackwardBuffers
    {
        [ThreadStatic] private static BackwardBuffers? t_buffers;
        private float* _block;
        private long _floats;

        public int Columns;
        public float* KRows, KT, VT, DKT, DVT, P, DS, Qi, Gi;

        public static BackwardBuffers Get(int t, int d)
        {
            var buffers = t_buffers ??= new BackwardBuffers();
            buffers.Resize(t, d);
            return buffers;
        }

        private void Resize(int t, int d)
        {
            int columns = (t + 15) / 16 * 16, dPadded = (d + 15) / 16 * 16;
            long kRows = (long)t * d + 16, column = (long)d * columns;
            long floats = kRows + 4 * column + 2L * columns + 2L * dPadded;
            if (floats > _floats)
            {
                if (_block != null) NativeMemory.AlignedFree(_block);
                _block = (float*)NativeMemory.AlignedAlloc((nuint)(floats * sizeof(float)), 64);
                _floats = floats;
            }
            Columns = columns;
            // Every part starts on a 64-byte line: kRows is padded to 16 floats, the rest are multiples of 16.
            KRows = _block;
            KT = KRows + (kRows + 15) / 16 * 16;
            VT = KT + column;
            DKT = VT + column;
            DVT = DKT + column;
            P = DVT + column;
            DS = P + columns;
            Qi = DS + columns;
            Gi = Qi + dPadded;
        }

        ~BackwardBuffers()
        {
            if (_block != null) NativeMemory.AlignedFree(_block);
        }
    }
}
