using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using NativeParallel.Tensors;

namespace NativeParallel.Kernels.Cpu;

/// <summary>
/// C (+)= A · Bᵀ in f32 for any strides of A (m × k) and B (n × k), f32 or bf16 operands, the GotoBLAS/BLIS way: k
/// is cut into panels of KC, C into blocks of MC × NC; a task takes a block column of C, packs its block of B into
/// column panels of NR (k-major, NR floats per k step) once per k panel for all its row blocks, and each block of A
/// into row panels of MR, so the micro-kernel streams both from L1/L2 with unit stride whatever the operands' layout,
/// and keeps an MR × NR tile of C in registers. The three products of training are this one call with different
/// strides (x·Wᵀ, dY·W, dYᵀ·X), so none needs a transposed copy; bf16 operands are widened while they are packed.
/// Each C tile is summed over k in panel order by one task, so the result does not depend on the thread count.
/// Versions (<see cref="Version"/>; the bench times them side by side):
/// <list type="bullet">
/// <item>v2: 6 × 32 tile in twelve Vector512 accumulators (6 × 16 in Vector256 ones without AVX-512), MC 96,
/// NC 256, KC 256, scalar packing: 8 loads per 12 FMAs.</item>
/// <item>v3 (default with AVX-512): 12 × 32 tile in 24 Vector512 accumulators (14 loads per 24 FMAs, the
/// broadcasts single vbroadcastss loads); the rows-contiguous operands (x and W in x·Wᵀ, dY in dY·W) packed by
/// 16 × 16 in-register transposes instead of a scalar scatter; larger column blocks (<see cref="NC3"/>) so A is
/// packed fewer times; a task packs its block of B for all of k first, then takes each row block through every k
/// panel, so that block's C stays in L2 instead of streaming to memory once per k panel; full tiles written back
/// with vector adds, bf16 results rounded tile by tile.
/// Without AVX-512 it runs v2's Vector256 path.</item>
/// </list>
/// </summary>
internal static unsafe partial class CpuPackedGemm
{
    /// <summary>Rows of A per micro-kernel tile (v2).</summary>
    public const int MR = 6;

    /// <summary>k per packed panel (v2): an MR × KC slice of A and a KC × NR slice of B fit L1 together.</summary>
    public const int KC = 256;

    /// <summary>Rows of C per task (v2, a multiple of MR): the packed A block (MC × KC) stays in L2.</summary>
    public const int MC = 96;

    /// <summary>Columns of C per task (v2, a multiple of both NRs, 32 and 16): the packed B block (KC × NC) stays in L2.</summary>
    public const int NC = 256;

    /// <summary>Rows of A per micro-kernel tile (v3).</summary>
    public const int MR3 = 12;

    /// <summary>k per packed panel (v3): a KC × 32 slice of B (32 KB) and a 12 × KC slice of A (12 KB) share the 48 KB L1.</summary>
    internal static int KC3 { get; set; } = 256;

    /// <summary>
    /// Rows of C per row block (v3, a multiple of 12): the packed A block, MC × KC (144 KB), and the block's C,
    /// MC × NC (288 KB), stay in L2 together (96, 144 and 192 measured alike at 1024³ here; 144 is in the middle).
    /// </summary>
    internal static int MC3 { get; set; } = 144;

    /// <summary>Columns of C per task (v3, a multiple of 32): its packed B block, KC × NC (512 KB), stays in L2.</summary>
    internal static int NC3 { get; set; } = 512;

    /// <summary>
    /// Floats of packed B a v3 thread holds (4 MB, kept per pool thread): its block of B for this much of k at once,
    /// k up to 2048 with NC 512 (C makes one round trip to memory per such run of k).
    /// </summary>
    internal static int PackedBFloats3 { get; set; } = 1 << 20;

    /// <summary>Which version runs: 3 (the default) or 2; the bench and the tests switch it.</summary>
    internal static int Version { get; set; } = 3;

    /// <summary>
    /// Element (row, p) of an operand lives at <c>Address + (row·RowStride + p·DepthStride)·size</c>, f32 or bf16
    /// (bf16 is widened exactly while it is packed).
    /// </summary>
    public readonly struct Operand
    {
        public Operand(float* pointer, long rowStride, long depthStride) => (Address, RowStride, DepthStride, Bf16) = ((nint)pointer, rowStride, depthStride, false);
        public Operand(ushort* pointer, long rowStride, long depthStride) => (Address, RowStride, DepthStride, Bf16) = ((nint)pointer, rowStride, depthStride, true);
        public nint Address { get; }
        public long RowStride { get; }
        public long DepthStride { get; }
        public bool Bf16 { get; }

        /// <summary>A contiguous f32 or bf16 tensor (its dtype checked by the op) with these strides.</summary>
        public static Operand Of(Tensor t, long rowStride, long depthStride) => t.DType == DType.BF16
            ? new((ushort*)t.Pointer, rowStride, depthStride)
            : new((float*)t.Pointer, rowStride, depthStride);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public float At(long offset) => Bf16 ? FloatBits.FromBF16(((ushort*)Address)[offset]) : ((float*)Address)[offset];
    }

    /// <summary>
    /// Whether the AVX-512 micro-kernel runs where the CPU has AVX-512 (the default); NATIVEPARALLEL_CPU_VECTOR=256,
    /// or a test, takes the Vector256 one, so both paths are checked on one machine.
    /// </summary>
    internal static bool PreferVector512 { get; set; } = Environment.GetEnvironmentVariable("NATIVEPARALLEL_CPU_VECTOR") != "256";

    /// <summary>Whether the AVX-512 micro-kernel runs now.</summary>
    public static bool UsesVector512 => Vector512.IsHardwareAccelerated && PreferVector512;

    // Packing buffers per thread, allocated once (the thread pool's threads are few and long-lived), grown when a
    // version's blocks need more.
    [ThreadStatic] private static float* t_packedA;
    [ThreadStatic] private static float* t_packedB;
    [ThreadStatic] private static long t_packedALength, t_packedBLength;

    private static void EnsurePacking(long aFloats, long bFloats)
    {
        if (t_packedALength < aFloats)
        {
            NativeMemory.AlignedFree(t_packedA);
            t_packedA = (float*)NativeMemory.AlignedAlloc((nuint)(aFloats * sizeof(float)), 64);
            t_packedALength = aFloats;
        }
        if (t_packedBLength < bFloats)
        {
            NativeMemory.AlignedFree(t_packedB);
            t_packedB = (float*)NativeMemory.AlignedAlloc((nuint)(bFloats * sizeof(float)), 64);
            t_packedBLength = bFloats;
        }
    }

    /// <summary>c[i·ldc + j] = Σ_p A(i, p) · B(j, p) (+ the old c[i·ldc + j] when <paramref name="accumulate"/>).</summary>
    public static void Multiply(int m, int n, int k, Operand a, Operand b, float* c, long ldc, bool accumulate)
    {
        if (m == 0 || n == 0) return;
        if (k == 0)
        {
            if (!accumulate)
                for (int i = 0; i < m; i++) new Span<float>(c + i * ldc, n).Clear();
            return;
        }
        if (Version >= 3 && UsesVector512) MultiplyV3(m, n, k, a, b, c, ldc, accumulate, null);
        else MultiplyV2(m, n, k, a, b, c, ldc, accumulate);
    }

    /// <summary>
    /// bf16 c[i·ldc + j] = Σ_p A(i, p) · B(j, p), summed in f32 and rounded once to nearest even. v3 rounds each tile
    /// as its last k panel is written back; an f32 scratch (m × ldc, pooled) holds the sums of the earlier k panels
    /// (v2 writes all of it, then narrows it).
    /// </summary>
    public static void MultiplyToBf16(int m, int n, int k, Operand a, Operand b, ushort* c, long ldc)
    {
        if (m == 0 || n == 0) return;
        long bytes = m * ldc * sizeof(float);
        float* partial = (float*)ScratchPool.Rent(bytes);
        try
        {
            if (k > 0 && Version >= 3 && UsesVector512)
            {
                MultiplyV3(m, n, k, a, b, partial, ldc, accumulate: false, c);
                return;
            }
            Multiply(m, n, k, a, b, partial, ldc, accumulate: false);
            for (int i = 0; i < m; i++) Bf16Vector.Narrow(new ReadOnlySpan<float>(partial + i * ldc, n), c + i * ldc);
        }
        finally
        {
            ScratchPool.Return(partial, bytes);
        }
    }

    private static void MultiplyV2(int m, int n, int k, Operand a, Operand b, float* c, long ldc, bool accumulate)
    {
        bool wide = UsesVector512;
        int nr = wide ? 32 : 16;
        int blocksM = (m + MC - 1) / MC, blocksN = (n + NC - 1) / NC;
        // A task owns one block of columns and a run of row blocks: it packs each k panel of its B block once and
        // reuses it for every row block of the run (packing B transposes it, the costliest memory traffic here).
        // Columns alone may not give every core work: then the rows are cut into as many runs as that takes.
        int runs = Math.Clamp((Environment.ProcessorCount + blocksN - 1) / blocksN, 1, blocksM);
        int blocksPerRun = (blocksM + runs - 1) / runs;
        runs = (blocksM + blocksPerRun - 1) / blocksPerRun;
        CpuParallel.For(blocksN * runs, (long)blocksPerRun * MC * NC * k, (start, end) =>
        {
            EnsurePacking(MC * KC, NC * KC);
            float* packedA = t_packedA, packedB = t_packedB;
            for (int task = start; task < end; task++)
            {
                int j0 = task / runs * NC, cols = Math.Min(NC, n - j0);
                int firstBlock = task % runs * blocksPerRun, lastBlock = Math.Min(blocksM, firstBlock + blocksPerRun);
                for (int p0 = 0; p0 < k; p0 += KC)
                {
                    int depth = Math.Min(KC, k - p0);
                    bool add = accumulate || p0 > 0;
                    for (int j = 0; j < cols; j += nr) Pack(b, j0 + j, Math.Min(nr, cols - j), nr, p0, depth, packedB + (long)j * depth);
                    for (int block = firstBlock; block < lastBlock; block++)
                    {
                        int i0 = block * MC, rows = Math.Min(MC, m - i0);
                        for (int i = 0; i < rows; i += MR) Pack(a, i0 + i, Math.Min(MR, rows - i), MR, p0, depth, packedA + (long)i * depth);
                        for (int j = 0; j < cols; j += nr)
                            for (int i = 0; i < rows; i += MR)
                            {
                                float* pa = packedA + (long)i * depth, pb = packedB + (long)j * depth;
                                float* ct = c + (i0 + i) * ldc + j0 + j;
                                int tileRows = Math.Min(MR, rows - i), tileCols = Math.Min(nr, cols - j);
                                if (wide) Tile512(pa, pb, depth, ct, ldc, tileRows, tileCols, add);
                                else Tile256(pa, pb, depth, ct, ldc, tileRows, tileCols, add);
                            }
                    }
                }
            }
        });
    }

    // A panel of `width` lanes (rows of the operand; the last panel's missing lanes are zeros) over `depth` k steps:
    // dst[p·width + lane] = X(first + lane, p0 + p). The loop order follows the operand's unit stride (v2's packing,
    // and v3's for the lanes and k steps its vector packing leaves).
    private static void Pack(Operand x, int first, int count, int width, int p0, int depth, float* dst)
    {
        long src = first * x.RowStride + p0 * x.DepthStride;
        if (x.DepthStride == 1)
        {
            for (int lane = 0; lane < count; lane++)
            {
                long row = src + lane * x.RowStride;
                for (int p = 0; p < depth; p++) dst[p * width + lane] = x.At(row + p);
            }
        }
        else
        {
            for (int p = 0; p < depth; p++)
            {
                long column = src + p * x.DepthStride;
                float* to = dst + p * width;
                if (x.RowStride == 1 && !x.Bf16) new ReadOnlySpan<float>((float*)x.Address + column, count).CopyTo(new Span<float>(to, count));
                else for (int lane = 0; lane < count; lane++) to[lane] = x.At(column + lane * x.RowStride);
            }
        }
        if (count < width)
            for (int p = 0; p < depth; p++) new Span<float>(dst + p * width + count, width - count).Clear();
    }

    // The register tile's k loop alone, its results stored to `tile` at the end. Kept apart from the write-back
    // (not inlined): with the edge branches after the loop in the same method, the JIT wrote every accumulator to
    // the stack on every k step, which halved the speed.
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Kernel512(float* pa, float* pb, int depth, float* tile)
    {
        Vector512<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default;
        Vector512<float> c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        for (int p = 0; p < depth; p++, pa += MR, pb += 32)
        {
            var b0 = Vector512.Load(pb);
            var b1 = Vector512.Load(pb + 16);
            var a = Vector512.Create(pa[0]);
            c00 = Vector512.FusedMultiplyAdd(a, b0, c00);
            c01 = Vector512.FusedMultiplyAdd(a, b1, c01);
            a = Vector512.Create(pa[1]);
            c10 = Vector512.FusedMultiplyAdd(a, b0, c10);
            c11 = Vector512.FusedMultiplyAdd(a, b1, c11);
            a = Vector512.Create(pa[2]);
            c20 = Vector512.FusedMultiplyAdd(a, b0, c20);
            c21 = Vector512.FusedMultiplyAdd(a, b1, c21);
            a = Vector512.Create(pa[3]);
            c30 = Vector512.FusedMultiplyAdd(a, b0, c30);
            c31 = Vector512.FusedMultiplyAdd(a, b1, c31);
            a = Vector512.Create(pa[4]);
            c40 = Vector512.FusedMultiplyAdd(a, b0, c40);
            c41 = Vector512.FusedMultiplyAdd(a, b1, c41);
            a = Vector512.Create(pa[5]);
            c50 = Vector512.FusedMultiplyAdd(a, b0, c50);
            c51 = Vector512.FusedMultiplyAdd(a, b1, c51);
        }
        c00.Store(tile); c01.Store(tile + 16);
        c10.Store(tile + 32); c11.Store(tile + 48);
        c20.Store(tile + 64); c21.Store(tile + 80);
        c30.Store(tile + 96); c31.Store(tile + 112);
        c40.Store(tile + 128); c41.Store(tile + 144);
        c50.Store(tile + 160); c51.Store(tile + 176);
    }

    private static void Tile512(float* pa, float* pb, int depth, float* c, long ldc, int rows, int cols, bool add)
    {
        float* tile = stackalloc float[MR * 32];
        Kernel512(pa, pb, depth, tile);
        PutPart(tile, 32, c, ldc, rows, cols, add);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Kernel256(float* pa, float* pb, int depth, float* tile)
    {
        Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default;
        Vector256<float> c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        for (int p = 0; p < depth; p++, pa += MR, pb += 16)
        {
            var b0 = Vector256.Load(pb);
            var b1 = Vector256.Load(pb + 8);
            var a = Vector256.Create(pa[0]);
            c00 = Vector256.FusedMultiplyAdd(a, b0, c00);
            c01 = Vector256.FusedMultiplyAdd(a, b1, c01);
            a = Vector256.Create(pa[1]);
            c10 = Vector256.FusedMultiplyAdd(a, b0, c10);
            c11 = Vector256.FusedMultiplyAdd(a, b1, c11);
            a = Vector256.Create(pa[2]);
            c20 = Vector256.FusedMultiplyAdd(a, b0, c20);
            c21 = Vector256.FusedMultiplyAdd(a, b1, c21);
            a = Vector256.Create(pa[3]);
            c30 = Vector256.FusedMultiplyAdd(a, b0, c30);
            c31 = Vector256.FusedMultiplyAdd(a, b1, c31);
            a = Vector256.Create(pa[4]);
            c40 = Vector256.FusedMultiplyAdd(a, b0, c40);
            c41 = Vector256.FusedMultiplyAdd(a, b1, c41);
            a = Vector256.Create(pa[5]);
            c50 = Vector256.FusedMultiplyAdd(a, b0, c50);
            c51 = Vector256.FusedMultiplyAdd(a, b1, c51);
        }
        c00.Store(tile); c01.Store(tile + 8);
        c10.Store(tile + 16); c11.Store(tile + 24);
        c20.Store(tile + 32); c21.Store(tile + 40);
        c30.Store(tile + 48); c31.Store(tile + 56);
        c40.Store(tile + 64); c41.Store(tile + 72);
        c50.Store(tile + 80); c51.Store(tile + 88);
    }

    private static void Tile256(float* pa, float* pb, int depth, float* c, long ldc, int rows, int cols, bool add)
    {
        float* tile = stackalloc float[MR * 16];
        Kernel256(pa, pb, depth, tile);
        PutPart(tile, 16, c, ldc, rows, cols, add);
    }

    private static void PutPart(float* tile, int width, float* c, long ldc, int rows, int cols, bool add)
    {
        for (int r = 0; r < rows; r++)
        {
            float* from = tile + r * width, to = c + r * ldc;
            var target = new Span<float>(to, cols);
            if (add) System.Numerics.Tensors.TensorPrimitives.Add(target, new ReadOnlySpan<float>(from, cols), target);
            else new ReadOnlySpan<float>(from, cols).CopyTo(target);
        }
    }
}
