using NativeParallel.Devices;
using NativeParallel.Kernels.Cpu;
using NativeParallel.Tensors;

namespace NativeParallel.Tests.Kernels;

/// <summary>
/// The CPU row kernels store bf16 without their NaN handling where a row's statistics prove every output finite
/// (<see cref="IVec{TV}.StoreBf16NoNaN"/>): a NaN in the input must still come out as NaN in its row (and an
/// infinite weight as infinities in its column), on both vector widths, while the rows beside it stay finite.
/// </summary>
[Collection(nameof(CpuVectorWidthCollection))]
public sealed class RowKernelNaNTests
{
    public static TheoryData<bool> Widths => [true, false];

    [Theory, MemberData(nameof(Widths))]
    public void RmsNormKeepsNaNFromARowOrTheWeight(bool wide)
    {
        using var _ = UseWidth(wide);
        const int rows = 3, d = 100;
        float[] x = Values(rows * d, 1), w = Values(d, 2);
        x[1 * d + 17] = float.NaN;
        var y = Run(DType.BF16, (k, t) => k.RmsNorm(t[0], t[1], t[2], 1e-5f), (x, [rows, d]), (w, [d]), (new float[rows * d], [rows, d]));
        AssertRows(y, rows, d, nanRow: 1);
        w[5] = float.PositiveInfinity;
        var yw = Run(DType.BF16, (k, t) => k.RmsNorm(t[0], t[1], t[2], 1e-5f), (Values(rows * d, 1), [rows, d]), (w, [d]), (new float[rows * d], [rows, d]));
        for (int r = 0; r < rows; r++) Assert.True(float.IsInfinity(yw[r * d + 5]), $"row {r}: x·inv·∞ is {yw[r * d + 5]}");
    }

    [Theory, MemberData(nameof(Widths))]
    public void LayerNormKeepsNaNFromARow(bool wide)
    {
        using var _ = UseWidth(wide);
        const int rows = 3, d = 100;
        float[] x = Values(rows * d, 3);
        x[2 * d + 99] = float.NaN;
        var y = Run(DType.BF16, (k, t) => k.LayerNorm(t[0], t[1], t[2], t[3], 1e-5f), (x, [rows, d]), (Values(d, 4), [d]), (Values(d, 5), [d]), (new float[rows * d], [rows, d]));
        AssertRows(y, rows, d, nanRow: 2);
    }

    [Theory, MemberData(nameof(Widths))]
    public void SoftmaxKeepsNaNFromARow(bool wide)
    {
        using var _ = UseWidth(wide);
        const int rows = 3, n = 100;
        float[] x = Values(rows * n, 6);
        x[0 * n + 40] = float.NaN;
        var y = Run(DType.BF16, (k, t) => k.Softmax(t[0], t[1], 1f), (x, [rows, n]), (new float[rows * n], [rows, n]));
        AssertRows(y, rows, n, nanRow: 0);
    }

    [Theory, MemberData(nameof(Widths))]
    public void CrossEntropyKeepsNaNFromARow(bool wide)
    {
        using var _ = UseWidth(wide);
        const int rows = 3, v = 100;
        float[] x = Values(rows * v, 7);
        x[1 * v + 3] = float.NaN;
        var device = CpuDevice.Instance;
        using var logits = Tensor.FromFloats(device, x, DType.BF16, rows, v);
        using var targets = Tensor.FromInts(device, [1, 2, 3], rows);
        using var losses = Tensor.Empty(device, DType.F32, rows);
        using var dLogits = Tensor.Empty(device, DType.BF16, rows, v);
        NativeParallel.Kernels.Ops.CrossEntropy.Run(logits, targets, losses, dLogits, 1f / rows);
        AssertRows(dLogits.ToFloats(), rows, v, nanRow: 1);
    }

    /// <summary>The row kernels on Vector512 (where the CPU has it) or Vector256 until disposed.</summary>
    private static IDisposable UseWidth(bool wide)
    {
        bool before = CpuPackedGemm.PreferVector512;
        CpuPackedGemm.PreferVector512 = wide;
        return new Restore(() => CpuPackedGemm.PreferVector512 = before);
    }

    private sealed class Restore(Action undo) : IDisposable
    {
        public void Dispose() => undo();
    }

    private static float[] Run(DType dtype, Action<NativeParallel.Kernels.IKernels, Tensor[]> op, params (float[] Values, int[] Shape)[] tensors)
    {
        var device = CpuDevice.Instance;
        var made = tensors.Select(t => Tensor.FromFloats(device, t.Values, dtype, t.Shape)).ToArray();
        try
        {
            op(device.Kernels, made);
            return made[^1].ToFloats();
        }
        finally
        {
            foreach (var t in made) t.Dispose();
        }
    }

    private static void AssertRows(float[] y, int rows, int d, int nanRow)
    {
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < d; j++)
            {
                float value = y[r * d + j];
                if (r == nanRow) Assert.True(float.IsNaN(value), $"row {r} holds a NaN input, but output {j} is {value}");
                else Assert.True(float.IsFinite(value), $"row {r} is finite, but output {j} is {value}");
            }
    }

    private static float[] Values(int count, int seed)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, count).Select(_ => (float)(random.NextDouble() * 4 - 2)).ToArray();
    }
}
