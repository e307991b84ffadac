using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace NativeParallel.Kernels.Cpu;

/// <summary>
/// c = a · bᵀ in f32 on the CPU, with a: (m, k) and b: (n, k) both row-major, so every output is a dot product
/// of two contiguous rows. Cache blocking: the output is cut into tiles of <see cref="TileRows"/> × <see cref="TileCols"/>
/// (one parallel task each) and k into panels of <see cref="PanelK"/>, so a tile's rows of a and b stay in L2
/// while they are reused; inside a tile a 2 × 4 micro-kernel keeps eight Vector256 accumulators in registers.
/// This dot-product form streams b once, which suits a few rows of a (decode); from <see cref="PackedFromRows"/>
/// rows on, <see cref="CpuPackedGemm"/> runs instead.
/// </summary>
internal static unsafe class CpuGemm
{
    public const int TileRows = 32;
    public const int TileCols = 64;
    public const int PanelK = 1024;

    /// <summary>Rows of a from which the packed GEMM takes over: below, packing b would cost as much as reading it (decode).</summary>
    internal static int PackedFromRows { get; set; } = 16;

    public static void MultiplyTransposed(float* a, float* b, float* c, int m, int n, int k)
    {
        if (m >= PackedFromRows)
        {
            CpuPackedGemm.Multiply(m, n, k, new(a, k, 1), new(b, k, 1), c, n, accumulate: false);
            return;
        }
        if (m == 0 || n == 0) return;
        if (k == 0)
        {
            new Span<float>(c, checked(m * n)).Clear();
            return;
        }
        int tilesM = (m + TileRows - 1) / TileRows, tilesN = (n + TileCols - 1) / TileCols;
        CpuParallel.For(tilesM * tilesN, (long)TileRows * TileCols * k, (start, end) =>
        {
            for (int tile = start; tile < end; tile++)
            {
                int i0 = tile / tilesN * TileRows, j0 = tile % tilesN * TileCols;
                int i1 = Math.Min(m, i0 + TileRows), j1 = Math.Min(n, j0 + TileCols);
                for (int p0 = 0; p0 < k; p0 += PanelK)
                {
                    int len = Math.Min(PanelK, k - p0);
                    Tile(a, b, c, n, k, i0, i1, j0, j1, p0, len, accumulate: p0 > 0);
                }
            }
        });
    }

    private static void Tile(float* a, float* b, float* c, int n, int k, int i0, int i1, int j0, int j1, int p0, int len, bool accumulate)
    {
        int i = i0;
        for (; i + 2 <= i1; i += 2)
        {
            float* a0 = a + (long)i * k + p0, a1 = a0 + k;
            int j = j0;
            for (; j + 4 <= j1; j += 4)
            {
                float* b0 = b + (long)j * k + p0;
                Micro2x4(a0, a1, b0, b0 + k, b0 + 2L * k, b0 + 3L * k, len, out var r0, out var r1);
                Store(c + (long)i * n + j, r0, accumulate);
                Store(c + (long)(i + 1) * n + j, r1, accumulate);
            }
            for (; j < j1; j++)
            {
                float* bj = b + (long)j * k + p0;
                Put(c + (long)i * n + j, Dot(a0, bj, len), accumulate);
                Put(c + (long)(i + 1) * n + j, Dot(a1, bj, len), accumulate);
            }
        }
        for (; i < i1; i++)
        {
            float* ai = a + (long)i * k + p0;
            for (int j = j0; j < j1; j++) Put(c + (long)i * n + j, Dot(ai, b + (long)j * k + p0, len), accumulate);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Put(float* dst, float value, bool accumulate) => *dst = accumulate ? *dst + value : value;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(float* dst, Vector128<float> value, bool accumulate)
    {
        if (accumulate) value += Vector128.Load(dst);
        value.Store(dst);
    }

    private static void Micro2x4(float* a0, float* a1, float* b0, float* b1, float* b2, float* b3, int len,
        out Vector128<float> row0, out Vector128<float> row1)
    {
        Vector256<float> c00 = default, c01 = default, c02 = default, c03 = default;
        Vector256<float> c10 = default, c11 = default, c12 = default, c13 = default;
        int p = 0;
        for (; p + 8 <= len; p += 8)
        {
            var x0 = Vector256.Load(a0 + p);
            var x1 = Vector256.Load(a1 + p);
            var y0 = Vector256.Load(b0 + p);
            var y1 = Vector256.Load(b1 + p);
            var y2 = Vector256.Load(b2 + p);
            var y3 = Vector256.Load(b3 + p);
            c00 = Vector256.FusedMultiplyAdd(x0, y0, c00);
            c01 = Vector256.FusedMultiplyAdd(x0, y1, c01);
            c02 = Vector256.FusedMultiplyAdd(x0, y2, c02);
            c03 = Vector256.FusedMultiplyAdd(x0, y3, c03);
            c10 = Vector256.FusedMultiplyAdd(x1, y0, c10);
            c11 = Vector256.FusedMultiplyAdd(x1, y1, c11);
            c12 = Vector256.FusedMultiplyAdd(x1, y2, c12);
            c13 = Vector256.FusedMultiplyAdd(x1, y3, c13);
        }
        float s00 = Vector256.Sum(c00), s01 = Vector256.Sum(c01), s02 = Vector256.Sum(c02), s03 = Vector256.Sum(c03);
        float s10 = Vector256.Sum(c10), s11 = Vector256.Sum(c11), s12 = Vector256.Sum(c12), s13 = Vector256.Sum(c13);
        for (; p < len; p++)
        {
            float x0 = a0[p], x1 = a1[p];
            s00 += x0 * b0[p]; s01 += x0 * b1[p]; s02 += x0 * b2[p]; s03 += x0 * b3[p];
            s10 += x1 * b0[p]; s11 += x1 * b1[p]; s12 += x1 * b2[p]; s13 += x1 * b3[p];
        }
        row0 = Vector128.Create(s00, s01, s02, s03);
        row1 = Vector128.Create(s10, s11, s12, s13);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Dot(float* x, float* y, int len) =>
        System.Numerics.Tensors.TensorPrimitives.Dot(new ReadOnlySpan<float>(x, len), new ReadOnlySpan<float>(y, len));
}
