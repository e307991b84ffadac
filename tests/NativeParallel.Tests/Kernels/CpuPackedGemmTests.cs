using NativeParallel.Kernels.Cpu;
using NativeParallel.Tensors;

namespace NativeParallel.Tests.Kernels;

/// <summary>
/// The CPU's packed GEMM against a float64 reference, for every operand layout training uses (rows or columns
/// contiguous), sizes that cut every block (MR, NR, MC, NC, KC) unevenly, overwrite and accumulate, f32 and bf16
/// operands, f32 and bf16 results; v2 on the Vector256 micro-kernel and, where the CPU has AVX-512, v2 and v3 on the
/// Vector512 ones, v3 also with small blocks so a few rows already cross every block, so every path runs on one machine.
/// </summary>
[Collection(nameof(CpuVectorWidthCollection))]
public sealed unsafe class CpuPackedGemmTests
{
    [Theory]
    [InlineData(1, 1, 1, false, false)]
    [InlineData(7, 33, 5, false, false)]
    [InlineData(97, 257, 513, false, false)]   // two row blocks, two column blocks, three k panels (v2)
    [InlineData(200, 300, 70, true, false)]    // A read down its columns (dYᵀ), B by rows
    [InlineData(61, 290, 260, false, true)]    // B read down its columns (W in dY·W)
    [InlineData(130, 45, 600, true, true)]     // both (dYᵀ·X)
    [InlineData(211, 530, 531, false, false)]  // v3: two row blocks, two column blocks, three k panels, ragged k
    public void MatchesTheFloat64Reference(int m, int n, int k, bool aByColumns, bool bByColumns)
    {
        foreach (var (version, wide, small) in Variants())
            foreach (bool bf16 in new[] { false, true })
                WithVersion(version, wide, small, () =>
                {
                    Check(m, n, k, aByColumns, bByColumns, accumulate: false, bf16, bf16Result: false);
                    Check(m, n, k, aByColumns, bByColumns, accumulate: true, bf16, bf16Result: false);
                    if (bf16) Check(m, n, k, aByColumns, bByColumns, accumulate: false, bf16, bf16Result: true);
                });
    }

    // (version, Vector512, small v3 blocks): v2 on both widths; v3 with its own blocks and with MC 24, KC 40, NC 64
    // and packed B for 80 of k, which the sizes above cross several times (partial tiles in both directions, several
    // runs of k, a ragged k panel after the 16-step transposes).
    private static IEnumerable<(int Version, bool Wide, bool Small)> Variants()
    {
        yield return (2, false, false);
        if (!System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated) yield break;
        yield return (2, true, false);
        yield return (3, true, false);
        yield return (3, true, true);
    }

    private static void WithVersion(int version, bool wide, bool small, Action check)
    {
        var before = (CpuPackedGemm.PreferVector512, CpuPackedGemm.Version, CpuPackedGemm.MC3, CpuPackedGemm.KC3, CpuPackedGemm.NC3, CpuPackedGemm.PackedBFloats3);
        try
        {
            (CpuPackedGemm.PreferVector512, CpuPackedGemm.Version) = (wide, version);
            // Small blocks, and packed B for two k panels at a time, so a task also walks several runs of k.
            if (small) (CpuPackedGemm.MC3, CpuPackedGemm.KC3, CpuPackedGemm.NC3, CpuPackedGemm.PackedBFloats3) = (24, 40, 64, 64 * 80);
            check();
        }
        finally
        {
            (CpuPackedGemm.PreferVector512, CpuPackedGemm.Version, CpuPackedGemm.MC3, CpuPackedGemm.KC3, CpuPackedGemm.NC3, CpuPackedGemm.PackedBFloats3) = before;
        }
    }

    private static void Check(int m, int n, int k, bool aByColumns, bool bByColumns, bool accumulate, bool bf16, bool bf16Result)
    {
        var random = new Random(m * 7919 + n * 31 + k);
        // bf16 operands: values rounded to bf16, so the float64 reference sees exactly what the GEMM reads.
        float Value() => bf16 ? FloatBits.FromBF16(FloatBits.ToBF16((float)(random.NextDouble() * 2 - 1))) : (float)(random.NextDouble() * 2 - 1);
        var a = Enumerable.Range(0, m * k).Select(_ => Value()).ToArray();
        var b = Enumerable.Range(0, n * k).Select(_ => Value()).ToArray();
        var c = Enumerable.Range(0, m * n).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        var before = (float[])c.Clone();
        // A(i, p): stored (m, k) by rows, or (k, m) and read down columns; likewise B(j, p).
        long aRow = aByColumns ? 1 : k, aDepth = aByColumns ? m : 1;
        long bRow = bByColumns ? 1 : k, bDepth = bByColumns ? n : 1;
        var a16 = a.Select(FloatBits.ToBF16).ToArray();
        var b16 = b.Select(FloatBits.ToBF16).ToArray();
        var c16 = new ushort[m * n];
        fixed (float* pa = a, pb = b, pc = c)
        fixed (ushort* qa = a16, qb = b16, qc = c16)
        {
            CpuPackedGemm.Operand x = bf16 ? new(qa, aRow, aDepth) : new(pa, aRow, aDepth);
            CpuPackedGemm.Operand y = bf16 ? new(qb, bRow, bDepth) : new(pb, bRow, bDepth);
            if (bf16Result) CpuPackedGemm.MultiplyToBf16(m, n, k, x, y, qc, n);
            else CpuPackedGemm.Multiply(m, n, k, x, y, pc, n, accumulate);
        }
        if (bf16Result) c = c16.Select(FloatBits.FromBF16).ToArray();
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
                // A bf16 result is the f32 sum rounded once: half a bf16 unit (2^-8 of the sum at most) on top of the f32 error.
                double error = Math.Abs(c[i * n + j] - sum) - (bf16Result ? Math.Abs(sum) * Math.Pow(2, -8) : 0);
                worst = Math.Max(worst, Math.Max(error, 0) / Math.Max(scale, 1e-30));
            }
        Assert.True(worst < 1e-6, $"m={m} n={n} k={k} aByColumns={aByColumns} bByColumns={bByColumns} accumulate={accumulate} " +
                                  $"bf16={bf16} bf16Result={bf16Result} v{CpuPackedGemm.Version} vector{(CpuPackedGemm.UsesVector512 ? 512 : 256)} " +
                                  $"MC3={CpuPackedGemm.MC3} KC3={CpuPackedGemm.KC3} NC3={CpuPackedGemm.NC3}: worst relative error {worst:E2}");
    }
}

/// <summary>Tests that switch the CPU's vector width run one at a time.</summary>
[CollectionDefinition(nameof(CpuVectorWidthCollection), DisableParallelization = true)]
public sealed class CpuVectorWidthCollection;
