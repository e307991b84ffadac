using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace NativeParallel.Kernels.Cpu;

// v3 of the packed GEMM (AVX-512 only): the 12 × 32 micro-kernel, the transposing packers, the blocking; see the
// class summary in CpuPackedGemm.cs.
internal static unsafe partial class CpuPackedGemm
{
    private const int NR3 = 32;

    private static void MultiplyV3(int m, int n, int k, Operand a, Operand b, float* c, long ldc, bool accumulate, ushort* narrowTo)
    {
        int mc = MC3, nc = NC3, kc = KC3;
        int blocksM = (m + mc - 1) / mc, blocksN = (n + nc - 1) / nc;
        // As v2: a task owns a block of columns (it packs that block of B once) and a run of row blocks; when the
        // column blocks are fewer than the cores, the rows are cut into runs too.
        int runs = Math.Clamp((Environment.ProcessorCount + blocksN - 1) / blocksN, 1, blocksM);
        int blocksPerRun = (blocksM + runs - 1) / runs;
        runs = (blocksM + blocksPerRun - 1) / blocksPerRun;
        // A task packs its block of B for a long run of k (all of k up to PackedBFloats3 floats, 4 MB) and then, per row
        // block, walks the k panels of that run: the row block's C (MC × NC, 288 KB) stays in L2 between k panels
        // instead of going out to memory and back once per panel (v2's order: four round trips of C at 1024³).
        int kSpan = Math.Max(kc, Math.Min(k, PackedBFloats3 / nc / kc * kc));
        CpuParallel.For(blocksN * runs, (long)blocksPerRun * mc * nc * k, (start, end) =>
        {
            // 16 floats of slack: the 12-wide packer stores whole vectors that reach 4 floats past a panel.
            EnsurePacking((long)mc * kc + 16, (long)nc * kSpan);
            float* packedA = t_packedA, packedB = t_packedB;
            float* tile = stackalloc float[MR3 * NR3];
            for (int task = start; task < end; task++)
            {
                int j0 = task / runs * nc, cols = Math.Min(nc, n - j0), paddedCols = (cols + NR3 - 1) / NR3 * NR3;
                int firstBlock = task % runs * blocksPerRun, lastBlock = Math.Min(blocksM, firstBlock + blocksPerRun);
                for (int s0 = 0; s0 < k; s0 += kSpan)
                {
                    int sEnd = Math.Min(k, s0 + kSpan);
                    // The k panel at p0 is packed at (p0 - s0)·paddedCols, its 32-column micro-panels one after another.
                    for (int p0 = s0; p0 < sEnd; p0 += kc)
                    {
                        int depth = Math.Min(kc, sEnd - p0);
                        float* panel = packedB + (long)(p0 - s0) * paddedCols;
                        for (int j = 0; j < cols; j += NR3) Pack3(b, j0 + j, Math.Min(NR3, cols - j), NR3, p0, depth, panel + (long)j * depth);
                    }
                    for (int block = firstBlock; block < lastBlock; block++)
                    {
                        int i0 = block * mc, rows = Math.Min(mc, m - i0);
                        for (int p0 = s0; p0 < sEnd; p0 += kc)
                        {
                            int depth = Math.Min(kc, sEnd - p0);
                            bool add = accumulate || p0 > 0, last = p0 + depth == k;
                            float* panel = packedB + (long)(p0 - s0) * paddedCols;
                            for (int i = 0; i < rows; i += MR3) Pack3(a, i0 + i, Math.Min(MR3, rows - i), MR3, p0, depth, packedA + (long)i * depth);
                            // B's 32-column micro-panel stays in L1 while the row panels of A stream past it from L2.
                            for (int j = 0; j < cols; j += NR3)
                                for (int i = 0; i < rows; i += MR3)
                                {
                                    Kernel12x32(packedA + (long)i * depth, panel + (long)j * depth, depth, tile);
                                    long offset = (i0 + i) * ldc + j0 + j;
                                    int tileRows = Math.Min(MR3, rows - i), tileCols = Math.Min(NR3, cols - j);
                                    if (narrowTo != null && last) PutBf16(tile, c + offset, narrowTo + offset, ldc, tileRows, tileCols, add);
                                    else if (tileRows == MR3 && tileCols == NR3) PutFull12x32(tile, c + offset, ldc, add);
                                    else PutPart(tile, NR3, c + offset, ldc, tileRows, tileCols, add);
                                }
                        }
                    }
                }
            }
        });
    }

    // The register tile's k loop alone (see Kernel512 for why the write-back lives elsewhere): 24 accumulators, two
    // loads of B and twelve broadcasts of A per k step; 27 of the 32 zmm registers.
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Kernel12x32(float* pa, float* pb, int depth, float* tile)
    {
        Vector512<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default;
        Vector512<float> c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        Vector512<float> c60 = default, c61 = default, c70 = default, c71 = default, c80 = default, c81 = default;
        Vector512<float> c90 = default, c91 = default, cA0 = default, cA1 = default, cB0 = default, cB1 = default;
        for (int p = 0; p < depth; p++, pa += MR3, pb += NR3)
        {
            var b0 = Vector512.Load(pb);
            var b1 = Vector512.Load(pb + 16);
            var a = Vector512.Create(pa[0]); c00 = Vector512.FusedMultiplyAdd(a, b0, c00); c01 = Vector512.FusedMultiplyAdd(a, b1, c01);
            a = Vector512.Create(pa[1]); c10 = Vector512.FusedMultiplyAdd(a, b0, c10); c11 = Vector512.FusedMultiplyAdd(a, b1, c11);
            a = Vector512.Create(pa[2]); c20 = Vector512.FusedMultiplyAdd(a, b0, c20); c21 = Vector512.FusedMultiplyAdd(a, b1, c21);
            a = Vector512.Create(pa[3]); c30 = Vector512.FusedMultiplyAdd(a, b0, c30); c31 = Vector512.FusedMultiplyAdd(a, b1, c31);
            a = Vector512.Create(pa[4]); c40 = Vector512.FusedMultiplyAdd(a, b0, c40); c41 = Vector512.FusedMultiplyAdd(a, b1, c41);
            a = Vector512.Create(pa[5]); c50 = Vector512.FusedMultiplyAdd(a, b0, c50); c51 = Vector512.FusedMultiplyAdd(a, b1, c51);
            a = Vector512.Create(pa[6]); c60 = Vector512.FusedMultiplyAdd(a, b0, c60); c61 = Vector512.FusedMultiplyAdd(a, b1, c61);
            a = Vector512.Create(pa[7]); c70 = Vector512.FusedMultiplyAdd(a, b0, c70); c71 = Vector512.FusedMultiplyAdd(a, b1, c71);
            a = Vector512.Create(pa[8]); c80 = Vector512.FusedMultiplyAdd(a, b0, c80); c81 = Vector512.FusedMultiplyAdd(a, b1, c81);
            a = Vector512.Create(pa[9]); c90 = Vector512.FusedMultiplyAdd(a, b0, c90); c91 = Vector512.FusedMultiplyAdd(a, b1, c91);
            a = Vector512.Create(pa[10]); cA0 = Vector512.FusedMultiplyAdd(a, b0, cA0); cA1 = Vector512.FusedMultiplyAdd(a, b1, cA1);
            a = Vector512.Create(pa[11]); cB0 = Vector512.FusedMultiplyAdd(a, b0, cB0); cB1 = Vector512.FusedMultiplyAdd(a, b1, cB1);
        }
        c00.Store(tile); c01.Store(tile + 16); c10.Store(tile + 32); c11.Store(tile + 48);
        c20.Store(tile + 64); c21.Store(tile + 80); c30.Store(tile + 96); c31.Store(tile + 112);
        c40.Store(tile + 128); c41.Store(tile + 144); c50.Store(tile + 160); c51.Store(tile + 176);
        c60.Store(tile + 192); c61.Store(tile + 208); c70.Store(tile + 224); c71.Store(tile + 240);
        c80.Store(tile + 256); c81.Store(tile + 272); c90.Store(tile + 288); c91.Store(tile + 304);
        cA0.Store(tile + 320); cA1.Store(tile + 336); cB0.Store(tile + 352); cB1.Store(tile + 368);
    }

    private static void PutFull12x32(float* tile, float* c, long ldc, bool add)
    {
        for (int r = 0; r < MR3; r++, tile += NR3, c += ldc)
        {
            var t0 = Vector512.Load(tile);
            var t1 = Vector512.Load(tile + 16);
            if (add)
            {
                t0 += Vector512.Load(c);
                t1 += Vector512.Load(c + 16);
            }
            t0.Store(c);
            t1.Store(c + 16);
        }
    }

    // The last k panel of a bf16 product: the tile plus the earlier panels' sums, rounded once into the bf16 output
    // (to nearest even, NaN kept quiet: Bf16Vector's rounding, sixteen lanes at a time).
    private static void PutBf16(float* tile, float* partial, ushort* c, long ldc, int rows, int cols, bool add)
    {
        if (cols < NR3)
        {
            for (int r = 0; r < rows; r++)
            {
                var sums = new Span<float>(tile + r * NR3, cols);
                if (add) System.Numerics.Tensors.TensorPrimitives.Add(sums, new ReadOnlySpan<float>(partial + r * ldc, cols), sums);
                Bf16Vector.Narrow(sums, c + r * ldc);
            }
            return;
        }
        for (int r = 0; r < rows; r++, tile += NR3, partial += ldc, c += ldc)
        {
            var t0 = Vector512.Load(tile);
            var t1 = Vector512.Load(tile + 16);
            if (add)
            {
                t0 += Vector512.Load(partial);
                t1 += Vector512.Load(partial + 16);
            }
            RoundToBf16(t0).Store(c);
            RoundToBf16(t1).Store(c + 16);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<ushort> RoundToBf16(Vector512<float> value)
    {
        return Avx512F.ConvertToVector256UInt16(Bf16Rounding.WithNaN(value.AsUInt32()) >> 16);
    }

    // v3's packing: dst[p·width + lane] = X(first + lane, p0 + p), width 12 or 32, missing lanes zero. Rows
    // contiguous in k (DepthStride 1) go through 16 × 16 transposes in registers; columns contiguous (RowStride 1)
    // are copied a k step at a time; what is left (a ragged end of k, other strides) takes v2's scalar loops.
    private static void Pack3(Operand x, int first, int count, int width, int p0, int depth, float* dst)
    {
        if (x.DepthStride == 1)
        {
            int done = depth & ~15;
            for (int group = 0; group < width && done > 0; group += 16)
            {
                int lanes = Math.Clamp(count - group, 0, 16);
                long src = (first + group) * x.RowStride + p0;
                for (int p = 0; p < done; p += 16)
                    Transpose16(x, src + p, lanes, dst + (long)p * width + group, width);
            }
            if (done < depth) Pack(x, first, count, width, p0 + done, depth - done, dst + (long)done * width);
            return;
        }
        if (x.RowStride == 1)
        {
            for (int p = 0; p < depth; p++)
            {
                long column = first + (p0 + p) * x.DepthStride;
                float* to = dst + (long)p * width;
                int lane = 0;
                for (; lane + 16 <= count; lane += 16) Load16(x, column + lane).Store(to + lane);
                for (; lane < count; lane++) to[lane] = x.At(column + lane);
                for (; lane < width; lane++) to[lane] = 0;
            }
            return;
        }
        Pack(x, first, count, width, p0, depth, dst);
    }

    // Sixteen consecutive elements as f32 (bf16 widened exactly: its bits are the top half of the float's).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Load16(Operand x, long offset) => x.Bf16
        ? Vector512.ShiftLeft(Avx512F.ConvertToVector512UInt32(Vector256.Load((ushort*)x.Address + offset)), 16).AsSingle()
        : Vector512.Load((float*)x.Address + offset);

    // Sixteen rows of sixteen k steps (rows at or past `lanes` read as zeros), transposed in registers and stored as
    // sixteen k steps of sixteen lanes, `width` floats apart. Four stages, each swapping one bit between the row and
    // column index (8, 4, 2, 1): rows i and i|b trade their b-blocks with one two-source permute each. Width 12: each
    // store reaches 4 floats into the next k step, which the next store (or the next panel, or the slack after the
    // last) then overwrites.
    private static void Transpose16(Operand x, long src, int lanes, float* to, int width)
    {
        long stride = x.RowStride;
        var r0 = 0 < lanes ? Load16(x, src + 0 * stride) : default;
        var r1 = 1 < lanes ? Load16(x, src + 1 * stride) : default;
        var r2 = 2 < lanes ? Load16(x, src + 2 * stride) : default;
        var r3 = 3 < lanes ? Load16(x, src + 3 * stride) : default;
        var r4 = 4 < lanes ? Load16(x, src + 4 * stride) : default;
        var r5 = 5 < lanes ? Load16(x, src + 5 * stride) : default;
        var r6 = 6 < lanes ? Load16(x, src + 6 * stride) : default;
        var r7 = 7 < lanes ? Load16(x, src + 7 * stride) : default;
        var r8 = 8 < lanes ? Load16(x, src + 8 * stride) : default;
        var r9 = 9 < lanes ? Load16(x, src + 9 * stride) : default;
        var r10 = 10 < lanes ? Load16(x, src + 10 * stride) : default;
        var r11 = 11 < lanes ? Load16(x, src + 11 * stride) : default;
        var r12 = 12 < lanes ? Load16(x, src + 12 * stride) : default;
        var r13 = 13 < lanes ? Load16(x, src + 13 * stride) : default;
        var r14 = 14 < lanes ? Load16(x, src + 14 * stride) : default;
        var r15 = 15 < lanes ? Load16(x, src + 15 * stride) : default;
        Swap(ref r0, ref r8, s_keep8, s_swap8);
        Swap(ref r1, ref r9, s_keep8, s_swap8);
        Swap(ref r2, ref r10, s_keep8, s_swap8);
        Swap(ref r3, ref r11, s_keep8, s_swap8);
        Swap(ref r4, ref r12, s_keep8, s_swap8);
        Swap(ref r5, ref r13, s_keep8, s_swap8);
        Swap(ref r6, ref r14, s_keep8, s_swap8);
        Swap(ref r7, ref r15, s_keep8, s_swap8);
        Swap(ref r0, ref r4, s_keep4, s_swap4);
        Swap(ref r1, ref r5, s_keep4, s_swap4);
        Swap(ref r2, ref r6, s_keep4, s_swap4);
        Swap(ref r3, ref r7, s_keep4, s_swap4);
        Swap(ref r8, ref r12, s_keep4, s_swap4);
        Swap(ref r9, ref r13, s_keep4, s_swap4);
        Swap(ref r10, ref r14, s_keep4, s_swap4);
        Swap(ref r11, ref r15, s_keep4, s_swap4);
        Swap(ref r0, ref r2, s_keep2, s_swap2);
        Swap(ref r1, ref r3, s_keep2, s_swap2);
        Swap(ref r4, ref r6, s_keep2, s_swap2);
        Swap(ref r5, ref r7, s_keep2, s_swap2);
        Swap(ref r8, ref r10, s_keep2, s_swap2);
        Swap(ref r9, ref r11, s_keep2, s_swap2);
        Swap(ref r12, ref r14, s_keep2, s_swap2);
        Swap(ref r13, ref r15, s_keep2, s_swap2);
        Swap(ref r0, ref r1, s_keep1, s_swap1);
        Swap(ref r2, ref r3, s_keep1, s_swap1);
        Swap(ref r4, ref r5, s_keep1, s_swap1);
        Swap(ref r6, ref r7, s_keep1, s_swap1);
        Swap(ref r8, ref r9, s_keep1, s_swap1);
        Swap(ref r10, ref r11, s_keep1, s_swap1);
        Swap(ref r12, ref r13, s_keep1, s_swap1);
        Swap(ref r14, ref r15, s_keep1, s_swap1);
        r0.Store(to + 0 * width);
        r1.Store(to + 1 * width);
        r2.Store(to + 2 * width);
        r3.Store(to + 3 * width);
        r4.Store(to + 4 * width);
        r5.Store(to + 5 * width);
        r6.Store(to + 6 * width);
        r7.Store(to + 7 * width);
        r8.Store(to + 8 * width);
        r9.Store(to + 9 * width);
        r10.Store(to + 10 * width);
        r11.Store(to + 11 * width);
        r12.Store(to + 12 * width);
        r13.Store(to + 13 * width);
        r14.Store(to + 14 * width);
        r15.Store(to + 15 * width);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Swap(ref Vector512<float> x, ref Vector512<float> y, Vector512<int> keep, Vector512<int> swap)
    {
        var low = x;
        x = Avx512F.PermuteVar16x32x2(low, keep, y);
        y = Avx512F.PermuteVar16x32x2(low, swap, y);
    }

    // For rows x = i (bit clear) and y = i|bit: x keeps its columns without the bit and takes y's columns j^bit
    // where j has it; y takes x's columns j|bit where j lacks it and keeps its own. Indices 16..31 pick from y.
    private static readonly Vector512<int> s_keep8 = Indices(8, low: true), s_swap8 = Indices(8, low: false);
    private static readonly Vector512<int> s_keep4 = Indices(4, low: true), s_swap4 = Indices(4, low: false);
    private static readonly Vector512<int> s_keep2 = Indices(2, low: true), s_swap2 = Indices(2, low: false);
    private static readonly Vector512<int> s_keep1 = Indices(1, low: true), s_swap1 = Indices(1, low: false);

    private static Vector512<int> Indices(int bit, bool low)
    {
        var index = new int[16];
        for (int j = 0; j < 16; j++)
            index[j] = low ? ((j & bit) != 0 ? 16 + (j ^ bit) : j) : ((j & bit) != 0 ? 16 + j : j | bit);
        return Vector512.Create(index);
    }
}
