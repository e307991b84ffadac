using NativeParallel.Kernels.Cpu;

namespace NativeParallel.Tests.Kernels;

/// <summary>
/// The CPU's packed GEMM against a float64 reference, for every operand layout training uses (rows or columns
/// contiguous), sizes that cut every block (MR, NR, MC, NC, KC) unevenly, overwrite and accumulate; on the Vector256
/// micro-kernel and, where the CPU has AVX-512, on the Vector512 one, so both paths run on one machine.
/// </summary>
[Collection(nameof(CpuVectorWidthCollection))]
public sealed unsafe class CpuPackedGemmTests
{
    [Theory]
    [InlineData(1, 1, 1, false, false)]
    [InlineData(7, 33, 5, false, false)]
    [InlineData(97, 257, 513, false, false)]   // two row blocks, two column blocks, three k panels
    [InlineData(200, 300, 70, true, false)]    // A read down its columns (dYᵀ), B by rows
    [InlineData(61, 290, 260, false, true)]    // B read down its columns (W in dY·W)
    [InlineData(130, 45, 600, true, true)]     // both (dYᵀ·X)
    public void MatchesTheFloat64Reference(int m, int n, int k, bool aByColumns, bool bByColumns)
    {
        foreach (bool wide in new[] { false, true })
        {
            bool before = CpuPackedGemm.PreferVector512;
            try
            {
                CpuPackedGemm.PreferVector512 = wide;
                Check(m, n, k, aByColumns, bByColumns, accumulate: false);
                Check(m, n, k, aByColumns, bByColumns, accumulate: true);
            }
            finally
            {
                CpuPackedGemm.PreferVector512 = before;
            }
        }
    }

    private static void Check(int m, int n, int k, bool aByColumns, bool bByColumns, bool accumulate)
    {
        var random = new Random(m * 7919 + n * 31 + k);
        var a = Enumerable.Range(0, m * k).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        var b = Enumerable.Range(0, n * k).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        var c = Enumerable.Range(0, m * n).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        var before = (float[])c.Clone();
        // A(i, p): stored (m, k) by rows, or (k, m) and read down columns; likewise B(j, p).
        long aRow = aByColumns ? 1 : k, aDepth = aByColumns ? m : 1;
        long bRow = bByColumns ? 1 : k, bDepth = bByColumns ? n : 1;
        fixed (float* pa = a, pb = b, pc = c)
            CpuPackedGemm.Multiply(m, n, k, new(pa, aRow, aDepth), new(pb, bRow, bDepth), pc, n, accumulate);
        double worst = 0;
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double sum = accumulate ? before[i * n + j] : 0, scale = Math.Abs(sum);
                for (int p = 0; p < k; p++)
                {
                    double term = (double)a[i * aRow + p * aDepth] * b[j * bRow + p * bDepth];
                    sum += term;
                    scale += Math.Abs(term);
                }
                worst = Math.Max(worst, Math.Abs(c[i * n + j] - sum) / Math.Max(scale, 1e-30));
            }
        Assert.True(worst < 1e-6, $"m={m} n={n} k={k} aByColumns={aByColumns} bByColumns={bByColumns} accumulate={accumulate} " +
                                  $"vector{(CpuPackedGemm.UsesVector512 ? 512 : 256)}: worst relative error {worst:E2}");
    }
}

/// <summary>Tests that switch the CPU's vector width run one at a time.</summary>
[CollectionDefinition(nameof(CpuVectorWidthCollection), DisableParallelization = true)]
public sealed class CpuVectorWidthCollection;
