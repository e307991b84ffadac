using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;
using NativeParallel.Tensors;

namespace NativeParallel.Kernels.Cpu;

/// <summary>
/// Attention on the CPU, prefill and decode, blocked over keys with an online softmax (flash attention): a set of
/// query rows keeps a running max m, a running sum l and an unnormalised output acc; each block of
/// <see cref="KeyBlock"/> keys is scored (<see cref="Scores{TV,TE}"/>), folded into (m, l, acc)
/// (<see cref="Update{TV}"/>: acc and l rescaled by e^(m − m'), p = e^(s − m')) and its values summed into acc
/// (<see cref="Accumulate{TV,TE}"/>). No score row longer than a block exists, and K and V are read once, bf16 widened
/// in registers.
/// <list type="bullet">
/// <item>Decode splits each sequence's keys into ranges, one task each (flash-decoding, as kernels/attention.cu's
/// attention_decode v2): a task owns (batch entry, key range) and walks whole cache rows (every kv head of a key is
/// contiguous: hkv·d elements), scoring all query heads key by key, so both K and V stream in address order; the
/// value rows of a block are prefetched while its keys are scored. Ranges of one sequence leave partial (m, l, acc)
/// that a combine step merges per query head; a sequence with one range writes its output directly.</item>
/// <item>Prefill gives a task (batch entry, kv head, block of queries): the block's queries times the heads that
/// share the kv head are the rows (GQA: each key row is loaded once for all of them), keys run up to the causal limit
/// of the block's last query, and the keys past a row's own limit (queryStart + i) are masked in the diagonal blocks.</item>
/// </list>
/// Every loop is compiled fully optimised at once (AggressiveOptimization), as <see cref="CpuRowKernels"/>' are.
/// </summary>
internal static unsafe partial class CpuAttention
{
    /// <summary>Keys per block: the block's scores of every row (32 heads × 32 keys = 4 KB) and a block of one kv head's value rows stay in L1.</summary>
    internal const int KeyBlock = 32;

    /// <summary>Fewest keys per decode task: below this the combine step and the task's setup cost more than the split gains.</summary>
    private const int MinKeysPerTask = 256;

    /// <summary>Query rows per prefill task (queries × the heads sharing a kv head): 4-row tiles, a block of keys loaded once for all.</summary>
    private const int PrefillRows = 16;

    private static bool Wide => CpuPackedGemm.UsesVector512;

    // ---- Decode

    public static void Decode(Tensor q, Tensor k, Tensor v, int[] lengths, Tensor output, OpShapes.AttentionSizes s, float scale)
    {
        nint qp = (nint)q.Pointer, kp = (nint)k.Pointer, vp = (nint)v.Pointer, op = (nint)output.Pointer;
        if (q.DType == DType.BF16)
        {
            if (Wide) Decode<V512, Bf16Element>(qp, kp, vp, lengths, op, s, scale);
            else Decode<V256, Bf16Element>(qp, kp, vp, lengths, op, s, scale);
        }
        else if (Wide) Decode<V512, F32Element>(qp, kp, vp, lengths, op, s, scale);
        else Decode<V256, F32Element>(qp, kp, vp, lengths, op, s, scale);
    }

    /// <summary>One decode task: keys [Start, End) of batch entry Batch; Partial is its slot of partial results, or −1 when it is the entry's only task.</summary>
    private readonly record struct KeyRange(int Batch, int Start, int End, int Partial);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Decode<TV, TE>(nint q, nint k, nint v, int[] lengths, nint output, OpShapes.AttentionSizes s, float scale)
        where TV : struct, IVec<TV> where TE : struct, IElement
    {
        int hq = s.Hq, d = s.D, batch = s.Batch, size = typeof(TE) == typeof(F32Element) ? 4 : 2;
        var (ranges, partials) = SplitKeys(lengths, batch);
        // Partial results: acc (hq × d), then m (hq), then l (hq), per range of a split sequence.
        long partialFloats = (long)hq * (d + 2);
        float* scratch = partials > 0 ? (float*)ScratchPool.Rent(partials * partialFloats * sizeof(float)) : null;
        try
        {
            CpuParallel.For(ranges.Length, 4L * hq * d * Math.Max(1, ranges.Length > 0 ? ranges[0].End - ranges[0].Start : 0),
                [MethodImpl(MethodImplOptions.AggressiveOptimization)] (start, end) =>
                {
                    var buffers = TaskBuffers.Get(hq, d);
                    for (int t = start; t < end; t++)
                    {
                        var range = ranges[t];
                        float* acc = range.Partial < 0 ? buffers.Acc : scratch + range.Partial * partialFloats;
                        float* m = range.Partial < 0 ? buffers.M : acc + (long)hq * d, l = range.Partial < 0 ? buffers.L : m + hq;
                        DecodeRange<TV, TE>((byte*)q, (byte*)k, (byte*)v, range, s, scale, buffers.Q, acc, m, l, buffers.P);
                        if (range.Partial < 0) Finish<TV, TE>(acc, l, hq, d, (byte*)output, (long)range.Batch * hq * d);
                    }
                });
            // Sequences split over several ranges are merged per query head, empty ones get zeros: on this thread,
            // as it is a few hundredths of the work (every range has at least MinKeysPerTask keys per hq·d sums) and
            // a second fork-join cost more than that on a busy machine (a woken worker waits for a time slice).
            int first = 0; // the first range of sequence b
            for (int b = 0; b < batch; b++)
            {
                long outBase = (long)b * hq * d;
                int count = 0;
                while (first + count < ranges.Length && ranges[first + count].Batch == b) count++;
                if (count == 0) new Span<byte>((byte*)output + outBase * size, checked(hq * d * size)).Clear();
                else if (ranges[first].Partial >= 0)
                    Combine<TV, TE>(scratch + ranges[first].Partial * partialFloats, count, partialFloats, hq, d, (byte*)output, outBase);
                first += count;
            }
        }
        finally
        {
            if (scratch != null) ScratchPool.Return(scratch, partials * partialFloats * sizeof(float));
        }
    }

    /// <summary>
    /// Each sequence's keys cut into ranges of about equal size (a multiple of <see cref="KeyBlock"/>), enough for four
    /// tasks per core in all, none under <see cref="MinKeysPerTask"/> keys; ranges of one sequence are adjacent.
    /// </summary>
    private static (KeyRange[] Ranges, int Partials) SplitKeys(int[] lengths, int batch)
    {
        long total = 0;
        foreach (int len in lengths) total += len;
        long tasks = Math.Max(1, Environment.ProcessorCount * 4L);
        int size = (int)Math.Max(MinKeysPerTask, (total + tasks - 1) / tasks);
        size = (size + KeyBlock - 1) / KeyBlock * KeyBlock;
        var ranges = new List<KeyRange>();
        int partials = 0;
        for (int b = 0; b < batch; b++)
        {
            int len = lengths[b];
            if (len == 0) continue;
            int pieces = (len + size - 1) / size, each = (len + pieces - 1) / pieces;
            each = (each + KeyBlock - 1) / KeyBlock * KeyBlock;
            for (int j = 0; j < len; j += each)
                ranges.Add(new KeyRange(b, j, Math.Min(len, j + each), pieces == 1 ? -1 : partials++));
        }
        return (ranges.ToArray(), partials);
    }

    /// <summary>
    /// Keys [range.Start, range.End) of one sequence against all its query heads: (m, l, acc) per query head, left
    /// unnormalised. Keys are scored one whole cache row at a time (every kv head), then each kv head's value rows of
    /// the block are summed into its heads' outputs.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void DecodeRange<TV, TE>(byte* q, byte* k, byte* v, KeyRange range, OpShapes.AttentionSizes s, float scale,
        float* qf, float* acc, float* m, float* l, float* p) where TV : struct, IVec<TV> where TE : struct, IElement
    {
        int hq = s.Hq, hkv = s.Hkv, d = s.D, group = hq / hkv;
        int elementSize = typeof(TE) == typeof(F32Element) ? 4 : 2;
        long stride = (long)hkv * d; // elements from one key to the next
        long cacheBase = (long)range.Batch * s.Tk * stride;
        LoadQueries<TV, TE>(q, (long)range.Batch * hq * d, hq, d, scale, qf);
        for (int h = 0; h < hq; h++)
        {
            m[h] = float.NegativeInfinity;
            l[h] = 0f;
        }
        new Span<float>(acc, hq * d).Clear();
        int rowBytes = (int)(stride * elementSize);
        for (int j0 = range.Start; j0 < range.End; j0 += KeyBlock)
        {
            int n = Math.Min(KeyBlock, range.End - j0);
            for (int j = 0; j < n; j += 2)
            {
                // Two keys at a time (each query vector loaded once for both), every kv head: whole cache rows in order.
                long key = cacheBase + (j0 + j) * stride;
                int pair = Math.Min(2, n - j);
                // The value rows of these keys are summed after the block's softmax, kv head by kv head (pieces of
                // d elements hkv·d apart): fetched whole now, in address order, while the keys are scored. The key
                // rows a block ahead are asked for too: the hardware's prefetcher alone left the scoring waiting on
                // memory (one core, cache flushed: 2.0 ms with the values prefetched, 1.3-1.4 ms with keys too).
                Prefetch(v + key * elementSize, pair * rowBytes);
                if (j0 + KeyBlock + j + pair <= range.End) Prefetch(k + (key + KeyBlock * stride) * elementSize, pair * rowBytes);
                for (int h = 0; h < hkv; h++)
                    Scores<TV, TE>(qf + h * group * d, group, d, k, key + h * d, stride, pair, p + h * group * KeyBlock + j, KeyBlock);
            }
            for (int h = 0; h < hq; h++) Update<TV>(p + h * KeyBlock, n, n, ref m[h], ref l[h], acc + h * d, d);
            for (int h = 0; h < hkv; h++)
                Accumulate<TV, TE>(p + h * group * KeyBlock, KeyBlock, group, v, cacheBase + j0 * stride + h * d, stride, n, acc + h * group * d, d);
        }
    }

    /// <summary>Merges the partial (m, l, acc) of <paramref name="count"/> key ranges per query head: Σ acc·e^(m − M) / Σ l·e^(m − M).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Combine<TV, TE>(float* partials, int count, long partialFloats, int hq, int d, byte* output, long outBase)
        where TV : struct, IVec<TV> where TE : struct, IElement
    {
        long accFloats = (long)hq * d;
        Span<float> weights = count <= 64 ? stackalloc float[count] : new float[count];
        for (int h = 0; h < hq; h++)
        {
            float max = float.NegativeInfinity;
            for (int c = 0; c < count; c++) max = Math.Max(max, partials[c * partialFloats + accFloats + h]);
            float sum = 0f;
            for (int c = 0; c < count; c++)
            {
                float* part = partials + c * partialFloats;
                weights[c] = VectorExp.Exp(part[accFloats + h] - max);
                sum += weights[c] * part[accFloats + hq + h];
            }
            float inv = sum > 0f ? 1f / sum : 0f;
            int width = TV.Count, i = 0;
            for (; i + 2 * width <= d; i += 2 * width)
            {
                TV a = TV.Splat(0f), b = a;
                for (int c = 0; c < count; c++)
                {
                    float* part = partials + c * partialFloats + h * d + i;
                    a = TV.Fma(TV.Splat(weights[c]), TV.LoadF32(part), a);
                    b = TV.Fma(TV.Splat(weights[c]), TV.LoadF32(part + width), b);
                }
                TE.StorePair(TV.Multiply(a, TV.Splat(inv)), TV.Multiply(b, TV.Splat(inv)), output, outBase + h * d + i);
            }
            for (; i + width <= d; i += width)
            {
                TV a = TV.Splat(0f);
                for (int c = 0; c < count; c++) a = TV.Fma(TV.Splat(weights[c]), TV.LoadF32(partials + c * partialFloats + h * d + i), a);
                TE.Store(TV.Multiply(a, TV.Splat(inv)), output, outBase + h * d + i);
            }
            for (; i < d; i++)
            {
                float a = 0f;
                for (int c = 0; c < count; c++) a += weights[c] * partials[c * partialFloats + h * d + i];
                TE.StoreScalar(a * inv, output, outBase + h * d + i);
            }
        }
    }

    // ---- Prefill

    /// <summary>
    /// Causal attention of Tq queries (positions queryStart + i) over Tk keys; with <paramref name="lse"/>, each row's
    /// log-sum-exp of its scaled scores too, (batch, hq, Tq) f32, as the training forward keeps for its backward.
    /// </summary>
    public static void Prefill(Tensor q, Tensor k, Tensor v, Tensor output, OpShapes.AttentionSizes s, int queryStart, float scale, float* lse = null)
    {
        nint qp = (nint)q.Pointer, kp = (nint)k.Pointer, vp = (nint)v.Pointer, op = (nint)output.Pointer, lp = (nint)lse;
        if (q.DType == DType.BF16)
        {
            if (Wide) Prefill<V512, Bf16Element>(qp, kp, vp, op, lp, s, queryStart, scale);
            else Prefill<V256, Bf16Element>(qp, kp, vp, op, lp, s, queryStart, scale);
        }
        else if (Wide) Prefill<V512, F32Element>(qp, kp, vp, op, lp, s, queryStart, scale);
        else Prefill<V256, F32Element>(qp, kp, vp, op, lp, s, queryStart, scale);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Prefill<TV, TE>(nint q, nint k, nint v, nint output, nint lse, OpShapes.AttentionSizes s, int queryStart, float scale)
        where TV : struct, IVec<TV> where TE : struct, IElement
    {
        int group = s.Hq / s.Hkv, d = s.D;
        int queriesPerTask = Math.Max(1, PrefillRows / group);
        int queryBlocks = (s.Tq + queriesPerTask - 1) / queriesPerTask;
        int tasks = s.Batch * s.Hkv * queryBlocks;
        long work = 4L * queriesPerTask * group * d * Math.Max(1, Math.Min(s.Tk, queryStart + s.Tq));
        CpuParallel.For(tasks, work, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (start, end) =>
        {
            int rows = queriesPerTask * group;
            var buffers = TaskBuffers.Get(rows, d);
            for (int t = start; t < end; t++)
            {
                int block = t % queryBlocks, kvh = t / queryBlocks % s.Hkv, b = t / (queryBlocks * s.Hkv);
                int i0 = block * queriesPerTask, i1 = Math.Min(s.Tq, i0 + queriesPerTask);
                PrefillBlock<TV, TE>((byte*)q, (byte*)k, (byte*)v, (byte*)output, (float*)lse, s, b, kvh, i0, i1, queryStart, scale, buffers);
            }
        });
    }

    /// <summary>Queries [i0, i1) of batch entry b, the heads of kv head kvh, over the keys each may see.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PrefillBlock<TV, TE>(byte* q, byte* k, byte* v, byte* output, float* lse, OpShapes.AttentionSizes s, int b, int kvh,
        int i0, int i1, int queryStart, float scale, TaskBuffers buffers) where TV : struct, IVec<TV> where TE : struct, IElement
    {
        int group = s.Hq / s.Hkv, d = s.D, rows = (i1 - i0) * group;
        long stride = (long)s.Hkv * d;
        long keyBase = (long)b * s.Tk * stride + (long)kvh * d;
        float* qf = buffers.Q, acc = buffers.Acc, m = buffers.M, l = buffers.L, p = buffers.P;
        // Row r = (i − i0)·group + g: query i, head kvh·group + g (the group's heads are adjacent in q).
        for (int i = i0; i < i1; i++)
            LoadQueries<TV, TE>(q, (((long)b * s.Tq + i) * s.Hq + (long)kvh * group) * d, group, d, scale, qf + (i - i0) * group * d);
        for (int r = 0; r < rows; r++)
        {
            m[r] = float.NegativeInfinity;
            l[r] = 0f;
        }
        new Span<float>(acc, rows * d).Clear();
        int keyEnd = Math.Min(s.Tk, queryStart + i1); // the last query's limit; earlier rows are masked below
        for (int j0 = 0; j0 < keyEnd; j0 += KeyBlock)
        {
            int n = Math.Min(KeyBlock, keyEnd - j0);
            Scores<TV, TE>(qf, rows, d, k, keyBase + j0 * stride, stride, n, p, KeyBlock);
            for (int r = 0; r < rows; r++)
            {
                int visible = Math.Clamp(Math.Min(s.Tk, queryStart + i0 + r / group + 1) - j0, 0, n);
                Update<TV>(p + r * KeyBlock, n, visible, ref m[r], ref l[r], acc + r * d, d);
            }
            Accumulate<TV, TE>(p, KeyBlock, rows, v, keyBase + j0 * stride, stride, n, acc, d);
        }
        for (int i = i0; i < i1; i++)
            Finish<TV, TE>(acc + (i - i0) * group * d, l + (i - i0) * group, group, d, output,
                (((long)b * s.Tq + i) * s.Hq + (long)kvh * group) * d);
        if (lse != null)
            for (int r = 0; r < rows; r++)
            {
                int i = i0 + r / group, head = kvh * group + r % group;
                lse[((long)b * s.Hq + head) * s.Tq + i] = m[r] + MathF.Log(l[r]);
            }
    }

    // ---- The steps both share

    /// <summary>
    /// qf = scale · q for <paramref name="rows"/> rows of d elements from element <paramref name="start"/>, in f32 and
    /// in pair order (see <see cref="PairEnd{TV}"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void LoadQueries<TV, TE>(byte* q, long start, int rows, int d, float scale, float* qf)
        where TV : struct, IVec<TV> where TE : struct, IElement
    {
        int width = TV.Count, pairEnd = PairEnd<TV>(d);
        var sv = TV.Splat(scale);
        for (int r = 0; r < rows; r++, start += d, qf += d)
        {
            int e = 0;
            for (; e < pairEnd; e += 2 * width)
            {
                TV.StoreF32(TV.Multiply(TE.LoadFirst<TV>(q, start + e), sv), qf + e);
                TV.StoreF32(TV.Multiply(TE.LoadSecond<TV>(q, start + e), sv), qf + e + width);
            }
            for (; e + width <= d; e += width) TV.StoreF32(TV.Multiply(TE.Load<TV>(q, start + e), sv), qf + e);
            for (; e < d; e++) qf[e] = TE.LoadScalar(q, start + e) * scale;
        }
    }

    /// <summary>
    /// The end of a row's pair region: its first d / (2·Count) · 2·Count elements are read from K and V and kept in
    /// qf and acc as <see cref="IElement.LoadFirst{TV}"/> and <see cref="IElement.LoadSecond{TV}"/> give them (bf16: the
    /// even elements of 2·Count, then the odd ones; a shift or a mask widens them, where widening in element order takes
    /// a lane-crossing shuffle and a shift). Dot products do not care about the order; <see cref="Finish{TV,TE}"/> and
    /// <see cref="Combine{TV,TE}"/> put the outputs back in element order. The rest of the row is in element order.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int PairEnd<TV>(int d) where TV : struct, IVec<TV> => d / (2 * TV.Count) * (2 * TV.Count);

    /// <summary>
    /// p[r·pStride + j] = q_r · key_j for <paramref name="rows"/> f32 query rows (d apart) and n keys of the tensor at
    /// <paramref name="t"/> (from element <paramref name="start"/>, <paramref name="stride"/> apart): each key row is
    /// loaded once per four query rows.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Scores<TV, TE>(float* q, int rows, int d, byte* t, long start, long stride, int n, float* p, int pStride)
        where TV : struct, IVec<TV> where TE : struct, IElement
    {
        int j = 0;
        for (; j + 2 <= n; j += 2)
        {
            long key = start + j * stride;
            int r = 0;
            for (; r + 4 <= rows; r += 4) Dot4x2<TV, TE>(q + r * d, d, t, key, stride, p + r * pStride + j, pStride);
            for (; r < rows; r++)
            {
                p[r * pStride + j] = Dot<TV, TE>(q + r * d, t, key, d);
                p[r * pStride + j + 1] = Dot<TV, TE>(q + r * d, t, key + stride, d);
            }
        }
        for (; j < n; j++)
        {
            long key = start + j * stride;
            int r = 0;
            for (; r + 4 <= rows; r += 4) Dot4<TV, TE>(q + r * d, d, t, key, p + r * pStride + j, pStride);
            for (; r < rows; r++) p[r * pStride + j] = Dot<TV, TE>(q + r * d, t, key, d);
        }
    }

    /// <summary>
    /// Folds one row's block of scores p[0, n) into its running (m, l, acc): the first <paramref name="visible"/> count,
    /// the rest are masked. Leaves p[j] = e^(s_j − m') (0 where masked), l' = l·e^(m − m') + Σ p, acc scaled by e^(m − m').
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Update<TV>(float* p, int n, int visible, ref float m, ref float l, float* acc, int d) where TV : struct, IVec<TV>
    {
        int width = TV.Count, j = 0;
        for (int z = visible; z < n; z++) p[z] = 0f;
        if (visible == 0) return;
        float max = float.NegativeInfinity;
        for (; j + width <= visible; j += width) max = Math.Max(max, TV.MaxAcross(TV.LoadF32(p + j)));
        for (; j < visible; j++) max = Math.Max(max, p[j]);
        float next = Math.Max(m, max);
        var shift = TV.Splat(-next);
        var sum = TV.Splat(0f);
        for (j = 0; j + width <= visible; j += width)
        {
            var e = TV.Exp(TV.Add(TV.LoadF32(p + j), shift));
            TV.StoreF32(e, p + j);
            sum = TV.Add(sum, e);
        }
        float total = TV.Sum(sum);
        for (; j < visible; j++) total += p[j] = VectorExp.Exp(p[j] - next);
        if (next != m && l != 0f)
        {
            // A larger max: what is summed so far shrinks by e^(m − m'). (l = 0 means nothing is summed yet.)
            float correction = VectorExp.Exp(m - next);
            l *= correction;
            var c = TV.Splat(correction);
            int i = 0;
            for (; i + width <= d; i += width) TV.StoreF32(TV.Multiply(TV.LoadF32(acc + i), c), acc + i);
            for (; i < d; i++) acc[i] *= correction;
        }
        m = next;
        l += total;
    }

    /// <summary>
    /// acc_r += Σ_j p[r·pStride + j] · value_j for <paramref name="rows"/> rows (d apart) and n value rows of the tensor
    /// at <paramref name="t"/> (from <paramref name="start"/>, <paramref name="stride"/> apart): tiles of four rows by
    /// two vectors of columns stay in registers over the block's keys.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Accumulate<TV, TE>(float* p, int pStride, int rows, byte* t, long start, long stride, int n, float* acc, int d)
        where TV : struct, IVec<TV> where TE : struct, IElement
    {
        int width = TV.Count, i = 0;
        // Four rows by four vectors where there are 32 vector registers (AVX-512): each broadcast weight feeds four FMAs.
        if (TV.Count == 16)
            for (; i + 4 * width <= d && rows % 4 == 0; i += 4 * width)
                for (int r = 0; r + 4 <= rows; r += 4)
                    Tile4x4<TV, TE>(p + r * pStride, pStride, t, start + i, stride, n, acc + r * d + i, d);
        for (; i + 2 * width <= d; i += 2 * width)
        {
            int r = 0;
            for (; r + 4 <= rows; r += 4)
            {
                float* a = acc + r * d + i, p0 = p + r * pStride, p1 = p0 + pStride, p2 = p1 + pStride, p3 = p2 + pStride;
                TV a00 = TV.LoadF32(a), a01 = TV.LoadF32(a + width);
                TV a10 = TV.LoadF32(a + d), a11 = TV.LoadF32(a + d + width);
                TV a20 = TV.LoadF32(a + 2 * d), a21 = TV.LoadF32(a + 2 * d + width);
                TV a30 = TV.LoadF32(a + 3 * d), a31 = TV.LoadF32(a + 3 * d + width);
                long offset = start + i;
                for (int j = 0; j < n; j++, offset += stride)
                {
                    TV v0 = TE.LoadFirst<TV>(t, offset), v1 = TE.LoadSecond<TV>(t, offset);
                    TV w = TV.Splat(p0[j]);
                    a00 = TV.Fma(w, v0, a00);
                    a01 = TV.Fma(w, v1, a01);
                    w = TV.Splat(p1[j]);
                    a10 = TV.Fma(w, v0, a10);
                    a11 = TV.Fma(w, v1, a11);
                    w = TV.Splat(p2[j]);
                    a20 = TV.Fma(w, v0, a20);
                    a21 = TV.Fma(w, v1, a21);
                    w = TV.Splat(p3[j]);
                    a30 = TV.Fma(w, v0, a30);
                    a31 = TV.Fma(w, v1, a31);
                }
                TV.StoreF32(a00, a);
                TV.StoreF32(a01, a + width);
                TV.StoreF32(a10, a + d);
                TV.StoreF32(a11, a + d + width);
                TV.StoreF32(a20, a + 2 * d);
                TV.StoreF32(a21, a + 2 * d + width);
                TV.StoreF32(a30, a + 3 * d);
                TV.StoreF32(a31, a + 3 * d + width);
            }
            for (; r < rows; r++)
            {
                float* a = acc + r * d + i, pr = p + r * pStride;
                TV a0 = TV.LoadF32(a), a1 = TV.LoadF32(a + width);
                long offset = start + i;
                for (int j = 0; j < n; j++, offset += stride)
                {
                    TV w = TV.Splat(pr[j]);
                    a0 = TV.Fma(w, TE.LoadFirst<TV>(t, offset), a0);
                    a1 = TV.Fma(w, TE.LoadSecond<TV>(t, offset), a1);
                }
                TV.StoreF32(a0, a);
                TV.StoreF32(a1, a + width);
            }
        }
        for (; i + width <= d; i += width)
            for (int r = 0; r < rows; r++)
            {
                float* a = acc + r * d + i, pr = p + r * pStride;
                TV a0 = TV.LoadF32(a);
                long offset = start + i;
                for (int j = 0; j < n; j++, offset += stride) a0 = TV.Fma(TV.Splat(pr[j]), TE.Load<TV>(t, offset), a0);
                TV.StoreF32(a0, a);
            }
        for (; i < d; i++)
            for (int r = 0; r < rows; r++)
            {
                float sum = acc[r * d + i];
                float* pr = p + r * pStride;
                long offset = start + i;
                for (int j = 0; j < n; j++, offset += stride) sum += pr[j] * TE.LoadScalar(t, offset);
                acc[r * d + i] = sum;
            }
    }

    /// <summary>acc rows r..r+3, columns [0, 4·width) += Σ_j p_r[j] · value_j: sixteen sums in registers over the block.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile4x4<TV, TE>(float* p, int pStride, byte* t, long start, long stride, int n, float* a, int d)
        where TV : struct, IVec<TV> where TE : struct, IElement
    {
        int w = TV.Count;
        float* p0 = p, p1 = p0 + pStride, p2 = p1 + pStride, p3 = p2 + pStride, b1 = a + d, b2 = b1 + d, b3 = b2 + d;
        TV a00 = TV.LoadF32(a), a01 = TV.LoadF32(a + w), a02 = TV.LoadF32(a + 2 * w), a03 = TV.LoadF32(a + 3 * w);
        TV a10 = TV.LoadF32(b1), a11 = TV.LoadF32(b1 + w), a12 = TV.LoadF32(b1 + 2 * w), a13 = TV.LoadF32(b1 + 3 * w);
        TV a20 = TV.LoadF32(b2), a21 = TV.LoadF32(b2 + w), a22 = TV.LoadF32(b2 + 2 * w), a23 = TV.LoadF32(b2 + 3 * w);
        TV a30 = TV.LoadF32(b3), a31 = TV.LoadF32(b3 + w), a32 = TV.LoadF32(b3 + 2 * w), a33 = TV.LoadF32(b3 + 3 * w);
        long offset = start;
        for (int j = 0; j < n; j++, offset += stride)
        {
            TV v0 = TE.LoadFirst<TV>(t, offset), v1 = TE.LoadSecond<TV>(t, offset);
            TV v2 = TE.LoadFirst<TV>(t, offset + 2 * w), v3 = TE.LoadSecond<TV>(t, offset + 2 * w);
            TV x = TV.Splat(p0[j]);
            a00 = TV.Fma(x, v0, a00);
            a01 = TV.Fma(x, v1, a01);
            a02 = TV.Fma(x, v2, a02);
            a03 = TV.Fma(x, v3, a03);
            x = TV.Splat(p1[j]);
            a10 = TV.Fma(x, v0, a10);
            a11 = TV.Fma(x, v1, a11);
            a12 = TV.Fma(x, v2, a12);
            a13 = TV.Fma(x, v3, a13);
            x = TV.Splat(p2[j]);
            a20 = TV.Fma(x, v0, a20);
            a21 = TV.Fma(x, v1, a21);
            a22 = TV.Fma(x, v2, a22);
            a23 = TV.Fma(x, v3, a23);
            x = TV.Splat(p3[j]);
            a30 = TV.Fma(x, v0, a30);
            a31 = TV.Fma(x, v1, a31);
            a32 = TV.Fma(x, v2, a32);
            a33 = TV.Fma(x, v3, a33);
        }
        TV.StoreF32(a00, a);
        TV.StoreF32(a01, a + w);
        TV.StoreF32(a02, a + 2 * w);
        TV.StoreF32(a03, a + 3 * w);
        TV.StoreF32(a10, b1);
        TV.StoreF32(a11, b1 + w);
        TV.StoreF32(a12, b1 + 2 * w);
        TV.StoreF32(a13, b1 + 3 * w);
        TV.StoreF32(a20, b2);
        TV.StoreF32(a21, b2 + w);
        TV.StoreF32(a22, b2 + 2 * w);
        TV.StoreF32(a23, b2 + 3 * w);
        TV.StoreF32(a30, b3);
        TV.StoreF32(a31, b3 + w);
        TV.StoreF32(a32, b3 + 2 * w);
        TV.StoreF32(a33, b3 + 3 * w);
    }

    /// <summary>output rows = acc_r / l_r for <paramref name="rows"/> rows (zeros for a row that saw no key).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Finish<TV, TE>(float* acc, float* l, int rows, int d, byte* output, long outBase)
        where TV : struct, IVec<TV> where TE : struct, IElement
    {
        int width = TV.Count;
        for (int r = 0; r < rows; r++)
        {
            float inv = l[r] > 0f ? 1f / l[r] : 0f;
            var sv = TV.Splat(inv);
            float* a = acc + r * d;
            long o = outBase + (long)r * d;
            int i = 0;
            for (; i + 2 * width <= d; i += 2 * width)
                TE.StorePair(TV.Multiply(TV.LoadF32(a + i), sv), TV.Multiply(TV.LoadF32(a + i + width), sv), output, o + i);
            for (; i + width <= d; i += width) TE.Store(TV.Multiply(TV.LoadF32(a + i), sv), output, o + i);
            for (; i < d; i++) TE.StoreScalar(a[i] * inv, output, o + i);
        }
    }

    /// <summary>Four dot products of one row of <paramref name="t"/> (d elements from <paramref name="start"/>) with four query rows q, q + d, ...; results to scores[0], scores[stride], ...</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Dot4<TV, TE>(float* q, int d, byte* t, long start, float* scores, int stride)
        where TV : struct, IVec<TV> where TE : struct, IElement
    {
        int width = TV.Count, i = 0;
        float* q0 = q, q1 = q + d, q2 = q1 + d, q3 = q2 + d;
        TV a0 = TV.Splat(0f), a1 = a0, a2 = a0, a3 = a0;
        for (; i + 2 * width <= d; i += 2 * width)
        {
            var key = TE.LoadFirst<TV>(t, start + i);
            a0 = TV.Fma(TV.LoadF32(q0 + i), key, a0);
            a1 = TV.Fma(TV.LoadF32(q1 + i), key, a1);
            a2 = TV.Fma(TV.LoadF32(q2 + i), key, a2);
            a3 = TV.Fma(TV.LoadF32(q3 + i), key, a3);
            key = TE.LoadSecond<TV>(t, start + i);
            a0 = TV.Fma(TV.LoadF32(q0 + i + width), key, a0);
            a1 = TV.Fma(TV.LoadF32(q1 + i + width), key, a1);
            a2 = TV.Fma(TV.LoadF32(q2 + i + width), key, a2);
            a3 = TV.Fma(TV.LoadF32(q3 + i + width), key, a3);
        }
        for (; i + width <= d; i += width)
        {
            var key = TE.Load<TV>(t, start + i);
            a0 = TV.Fma(TV.LoadF32(q0 + i), key, a0);
            a1 = TV.Fma(TV.LoadF32(q1 + i), key, a1);
            a2 = TV.Fma(TV.LoadF32(q2 + i), key, a2);
            a3 = TV.Fma(TV.LoadF32(q3 + i), key, a3);
        }
        // The four horizontal sums together (haddps on x86): a quarter of the shuffles of four separate sums.
        var sums = VectorSums.Sum4(TV.Fold(a0), TV.Fold(a1), TV.Fold(a2), TV.Fold(a3));
        float s0 = sums[0], s1 = sums[1], s2 = sums[2], s3 = sums[3];
        for (; i < d; i++)
        {
            float key = TE.LoadScalar(t, start + i);
            s0 += q0[i] * key;
            s1 += q1[i] * key;
            s2 += q2[i] * key;
            s3 += q3[i] * key;
        }
        scores[0] = s0;
        scores[stride] = s1;
        scores[2 * stride] = s2;
        scores[3 * stride] = s3;
    }

    /// <summary>
    /// <see cref="Dot4{TV,TE}"/> for two rows of <paramref name="t"/> (from <paramref name="start"/> and
    /// start + <paramref name="rowStride"/>): each query vector loaded once for two keys. Results to scores[0], scores[1],
    /// scores[stride], scores[stride + 1], ...
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Dot4x2<TV, TE>(float* q, int d, byte* t, long start, long rowStride, float* scores, int stride)
        where TV : struct, IVec<TV> where TE : struct, IElement
    {
        int width = TV.Count, i = 0;
        float* q0 = q, q1 = q + d, q2 = q1 + d, q3 = q2 + d;
        TV a0 = TV.Splat(0f), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
        long second = start + rowStride;
        for (; i + 2 * width <= d; i += 2 * width)
        {
            TV k0 = TE.LoadFirst<TV>(t, start + i), k1 = TE.LoadFirst<TV>(t, second + i);
            TV x = TV.LoadF32(q0 + i);
            a0 = TV.Fma(x, k0, a0);
            b0 = TV.Fma(x, k1, b0);
            x = TV.LoadF32(q1 + i);
            a1 = TV.Fma(x, k0, a1);
            b1 = TV.Fma(x, k1, b1);
            x = TV.LoadF32(q2 + i);
            a2 = TV.Fma(x, k0, a2);
            b2 = TV.Fma(x, k1, b2);
            x = TV.LoadF32(q3 + i);
            a3 = TV.Fma(x, k0, a3);
            b3 = TV.Fma(x, k1, b3);
            k0 = TE.LoadSecond<TV>(t, start + i);
            k1 = TE.LoadSecond<TV>(t, second + i);
            x = TV.LoadF32(q0 + i + width);
            a0 = TV.Fma(x, k0, a0);
            b0 = TV.Fma(x, k1, b0);
            x = TV.LoadF32(q1 + i + width);
            a1 = TV.Fma(x, k0, a1);
            b1 = TV.Fma(x, k1, b1);
            x = TV.LoadF32(q2 + i + width);
            a2 = TV.Fma(x, k0, a2);
            b2 = TV.Fma(x, k1, b2);
            x = TV.LoadF32(q3 + i + width);
            a3 = TV.Fma(x, k0, a3);
            b3 = TV.Fma(x, k1, b3);
        }
        for (; i + width <= d; i += width)
        {
            TV k0 = TE.Load<TV>(t, start + i), k1 = TE.Load<TV>(t, second + i);
            TV x = TV.LoadF32(q0 + i);
            a0 = TV.Fma(x, k0, a0);
            b0 = TV.Fma(x, k1, b0);
            x = TV.LoadF32(q1 + i);
            a1 = TV.Fma(x, k0, a1);
            b1 = TV.Fma(x, k1, b1);
            x = TV.LoadF32(q2 + i);
            a2 = TV.Fma(x, k0, a2);
            b2 = TV.Fma(x, k1, b2);
            x = TV.LoadF32(q3 + i);
            a3 = TV.Fma(x, k0, a3);
            b3 = TV.Fma(x, k1, b3);
        }
        // The eight sums in one tree of horizontal adds (fewer shuffles than two of four).
        var sums = VectorSums.Sum8(TV.Fold256(a0), TV.Fold256(a1), TV.Fold256(a2), TV.Fold256(a3),
            TV.Fold256(b0), TV.Fold256(b1), TV.Fold256(b2), TV.Fold256(b3));
        float s0 = sums[0], s1 = sums[1], s2 = sums[2], s3 = sums[3], u0 = sums[4], u1 = sums[5], u2 = sums[6], u3 = sums[7];
        for (; i < d; i++)
        {
            float k0 = TE.LoadScalar(t, start + i), k1 = TE.LoadScalar(t, second + i);
            s0 += q0[i] * k0;
            s1 += q1[i] * k0;
            s2 += q2[i] * k0;
            s3 += q3[i] * k0;
            u0 += q0[i] * k1;
            u1 += q1[i] * k1;
            u2 += q2[i] * k1;
            u3 += q3[i] * k1;
        }
        scores[0] = s0;
        scores[1] = u0;
        scores[stride] = s1;
        scores[stride + 1] = u1;
        scores[2 * stride] = s2;
        scores[2 * stride + 1] = u2;
        scores[3 * stride] = s3;
        scores[3 * stride + 1] = u3;
    }

    /// <summary>Σ q[i]·row[i] over d elements of the tensor at <paramref name="t"/>, from element <paramref name="start"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Dot<TV, TE>(float* q, byte* t, long start, int d) where TV : struct, IVec<TV> where TE : struct, IElement
    {
        int width = TV.Count, i = 0;
        TV a0 = TV.Splat(0f), a1 = a0;
        for (; i + 2 * width <= d; i += 2 * width)
        {
            a0 = TV.Fma(TV.LoadF32(q + i), TE.LoadFirst<TV>(t, start + i), a0);
            a1 = TV.Fma(TV.LoadF32(q + i + width), TE.LoadSecond<TV>(t, start + i), a1);
        }
        if (i + width <= d)
        {
            a0 = TV.Fma(TV.LoadF32(q + i), TE.Load<TV>(t, start + i), a0);
            i += width;
        }
        float sum = TV.Sum(TV.Add(a0, a1));
        for (; i < d; i++) sum += q[i] * TE.LoadScalar(t, start + i);
        return sum;
    }

    /// <summary>Asks for <paramref name="bytes"/> from <paramref name="p"/> into L1, a cache line at a time (nothing where x86's prefetch is absent).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Prefetch(byte* p, int bytes)
    {
        if (!Sse.IsSupported) return;
        for (int o = 0; o < bytes; o += 64) Sse.Prefetch0(p + o);
    }

    /// <summary>
    /// One thread's f32 working rows, kept between calls (the pool's threads are few): Q and Acc (rows × d), M and L
    /// (rows), P (rows × <see cref="KeyBlock"/> scores).
    /// </summary>
    private sealed class TaskBuffers
    {
        [ThreadStatic] private static TaskBuffers? t_buffers;
        private float* _block;
        private int _rows, _d;

        public float* Q, Acc, M, L, P;

        public static TaskBuffers Get(int rows, int d)
        {
            var buffers = t_buffers ??= new TaskBuffers();
            if (buffers._rows < rows || buffers._d != d) buffers.Resize(Math.Max(rows, buffers._rows), d);
            return buffers;
        }

        private void Resize(int rows, int d)
        {
            if (_block != null) NativeMemory.AlignedFree(_block);
            // Each part starts on a 64-byte line.
            long qa = ((long)rows * d + 15) / 16 * 16, ml = ((long)rows + 15) / 16 * 16, p = (long)rows * KeyBlock;
            _block = (float*)NativeMemory.AlignedAlloc((nuint)((2 * qa + 2 * ml + p) * sizeof(float)), 64);
            Q = _block;
            Acc = Q + qa;
            M = Acc + qa;
            L = M + ml;
            P = L + ml;
            (_rows, _d) = (rows, d);
        }

        ~TaskBuffers()
        {
            if (_block != null) NativeMemory.AlignedFree(_block);
        }
    }
}
