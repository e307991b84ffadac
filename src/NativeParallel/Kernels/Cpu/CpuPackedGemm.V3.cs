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
        // As v2: a task owns a block of columns (it packs that block of B once per k panel) and a run of row blocks;
        // when the column blocks are fewer than the cores, the rows are cut into runs too.
        int runs = Math.Clamp((Environment.ProcessorCount + blocksN - 1) / blocksN, 1, blocksM);
        int blocksPerRun = (blocksM + runs - 1) / runs;
        runs = (blocksM + blocksPerRun - 1) / blocksPerRun;
        CpuParallel.For(blocksN * runs, (long)blocksPerRun * mc * nc * k, (start, end) =>
        {
            // 16 floats of slack: the 12-wide packer stores whole vectors that reach 4 floats past a panel.
            EnsurePacking((long)mc * kc + 16, (long)nc * kc);
            float* packedA = t_packedA, packedB = t_packedB;
            float* tile = stackalloc float[MR3 * NR3];
            for (int task = start; task < end; task++)
            {
                int j0 = task / runs * nc, cols = Math.Min(nc, n - j0);
                int firstBlock = task % runs * blocksPerRun, lastBlock = Math.Min(blocksM, firstBlock + blocksPerRun);
                for (int p0 = 0; p0 < k; p0 += kc)
                {
                    int depth = Math.Min(kc, k - p0);
                    bool add = accumulate || p0 > 0, last = p0 + depth == k;
                    for (int j = 0; j < cols; j += NR3) Pack3(b, j0 + j, Math.Min(NR3, cols - j), NR3, p0, depth, packedB + (long)j * depth);
                    for (int block = firstBlock; block < lastBlock; block++)
                    {
                        int i0 = block * mc, rows = Math.Min(mc, m - i0);
                        for (int i = 0; i < rows; i += MR3) Pack3(a, i0 + i, Math.Min(MR3, rows - i), MR3, p0, depth, packedA + (long)i * depth);
                        // B's 32-column micro-panel stays in L1 while the row panels of A stream past it from L2.
                        for (int j = 0; j < cols; j += NR3)
                            for (int i = 0; i < rows; i += MR3)
                            {
                                Kernel12x32(packedA + (long)i * depth, packedB + (long)j * depth, depth, tile);
                                long offset = (i0 + i) * ldc + j0 + j;
                                int tileRows = Math.Min(MR3, rows - i), tileCols = Math.Min(NR3, cols - j);
                                if (narrowTo != null && last) PutBf16(tile, c + offset, narrowTo + offset, ldc, tileRows, tileCols, add);
                                else if (tileRows == MR3 && tileCols == NR3) PutFull12x32(tile, c + offset, ldc, add);
                                else PutPart(tile, NR3, c + offset, ldc, tileRows, tileCols, add);
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
        var bits = value.AsUInt32();
        var isNaN = Vector512.GreaterThan(bits & Vector512.Create(0x7FFF_FFFFu), Vector512.Create(0x7F80_0000u));
        var rounded = (bits + Vector512.Create(0x7FFFu) + ((bits >> 16) & Vector512<uint>.One)) >> 16;
        var quietNaN = (bits >> 16) | Vector512.Create(0x0040u);
        return Avx512F.ConvertToVector256UInt16(Vector512.ConditionalSelect(isNaN, quietNaN, rounded));
    }

    // v3's packing: dst[p·width + lane] = X(first + lane, p0 + p), width 12 or 32, missing lanes zero. Rows
    // contiguous in k (DepthStride 1) go through 16 × 16 transposes in registers; columns contiguous (RowStride 1)
    // are copied a k step at a time; what is left (a ragged end of k, other strides) takes v2's scalar loops.
    private static void Pack3(Operand x, int first, int count, int width, int p0, int depth, float* dst)
    {
        if (x.DepthStride == 1)
        {
            int done = depth & ~15;
            if (done > 0)
            {
                Vector512<float>* rows = stackalloc Vector512<float>[16];
                for (int group = 0; group < width; group += 16)
                {
                    int lanes = Math.Clamp(count - group, 0, 16);
                    long src = (first + group) * x.RowStride + p0;
                    for (int p = 0; p < done; p += 16)
                    {
                        for (int lane = 0; lane < lanes; lane++) rows[lane] = Load16(x, src + lane * x.RowStride + p);
                        for (int lane = lanes; lane < 16; lane++) rows[lane] = default;
                        Transpose16(rows);
                        // Width 12: each store reaches 4 floats into the next k step, which the next store (or the
                        // next panel, or the slack after the last) then overwrites.
                        float* to = dst + (long)p * width + group;
                        for (int q = 0; q < 16; q++) rows[q].Store(to + q * width);
                    }
                }
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

    // rows[i][j] becomes rows[j][i]: four stages, each swapping one bit between the row and column index (8, 4, 2,
    // 1): rows i and i|b trade their b-blocks with one two-source permute each.
    private static void Transpose16(Vector512<float>* rows)
    {
        Stage(rows, 8, s_keep8, s_swap8);
        Stage(rows, 4, s_keep4, s_swap4);
        Stage(rows, 2, s_keep2, s_swap2);
        Stage(rows, 1, s_keep1, s_swap1);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Stage(Vector512<float>* rows, int bit, Vector512<int> low, Vector512<int> high)
    {
        for (int i = 0; i < 16; i++)
        {
            if ((i & bit) != 0) continue;
            var x = rows[i];
            var y = rows[i | bit];
            rows[i] = Avx512F.PermuteVar16x32x2(x, low, y);
            rows[i | bit] = Avx512F.PermuteVar16x32x2(x, high, y);
        }
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
