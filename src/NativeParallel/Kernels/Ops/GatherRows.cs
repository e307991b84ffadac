using System.Runtime.InteropServices;
using NativeParallel.Diagnostics;
using NativeParallel.Kernels.Check;
using NativeParallel.Tensors;
using static NativeParallel.Kernels.Check.CaseKit;

namespace NativeParallel.Kernels.Ops;

/// <summary>
/// Row gather, the token permutation of a MoE layer: out[p, :] = src[index[p] / divisor, :], bit for bit; an
/// index below 0, or naming a row past src, gives a zero row. src: (srcRows, cols); index: (rows) i32;
/// out: (rows, cols), src's dtype (any 2- or 4-byte dtype: f32, bf16, f16, i32). divisor maps a routing slot
/// (token · k + j) to its token.
/// </summary>
[KernelOp("gather_rows", "moe.cu")]
public static unsafe class GatherRows
{
    private const string Op = "gather_rows";

    /// <summary>kernels/moe.cu GatherRowsArgs.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct GatherRowsArgs
    {
        public ulong Src, Index, Out;
        public int Rows, Cols, SrcRows, Divisor;
    }

    /// <summary>Runs on the tensors' device.</summary>
    public static void Run(Tensor src, Tensor index, int divisor, Tensor output)
    {
        using var traced = Tracer.Kernel(Op, src, index, output);
        OpShapes.Require(src.Rank == 2 && output.Rank == 2 && src.IsContiguous && output.IsContiguous, Op,
            $"src and out must be contiguous (rows, cols) tensors, got {src} and {output}");
        OpShapes.Require(index.DType == DType.I32 && index.IsContiguous, Op, $"index must be a contiguous i32 tensor, got {index}");
        OpShapes.Require(src.DType == output.DType && src.DType.SizeOf() is 2 or 4, Op, $"src and out need one 2- or 4-byte dtype, got {src.DType.Name()} and {output.DType.Name()}");
        OpShapes.Require(output.Dim(0) == index.Count && output.Dim(1) == src.Dim(1), Op, $"out must be ({index.Count}, {src.Dim(1)}), got {output}");
        OpShapes.Require(divisor >= 1, Op, $"divisor must be at least 1, got {divisor}");
        OpShapes.Require(src.Device == output.Device && index.Device == output.Device, Op, "src, index and out must be on one device");
        int rows = output.Dim(0), cols = output.Dim(1), srcRows = src.Dim(0);
        if (rows == 0 || cols == 0) return;
        if (OpLaunch.LauncherOf(output) is { } launcher)
        {
            var args = new GatherRowsArgs { Src = src.Pointer, Index = index.Pointer, Out = output.Pointer, Rows = rows, Cols = cols, SrcRows = srcRows, Divisor = divisor };
            string entry = src.DType.SizeOf() == 4 ? "gather_rows_b32" : "gather_rows_b16";
            launcher.Launch("moe.cu", entry, new Gpu.Dim3(OpLaunch.RowGrid(launcher, rows)), new Gpu.Dim3(OpLaunch.Block), 0, args);
            return;
        }
        long rowBytes = (long)cols * src.DType.SizeOf();
        byte* from = (byte*)src.Pointer, to = (byte*)output.Pointer;
        int* ids = (int*)index.Pointer;
        Cpu.CpuParallel.For(rows, rowBytes * 2, (start, end) =>
        {
            for (int p = start; p < end; p++)
            {
                int row = ids[p] < 0 ? -1 : ids[p] / divisor;
                var target = new Span<byte>(to + p * rowBytes, (int)rowBytes);
                if (row >= 0 && row < srcRows) new ReadOnlySpan<byte>(from + row * rowBytes, (int)rowBytes).CopyTo(target);
                else target.Clear();
            }
        });
    }

    /// <summary>The reference, on the values as floats.</summary>
    public static double[] Reference(float[] src, int srcRows, int cols, int[] index, int divisor)
    {
        var result = new double[(long)index.Length * cols];
        for (int p = 0; p < index.Length; p++)
        {
            int row = index[p] < 0 ? -1 : index[p] / divisor;
            if (row < 0 || row >= srcRows) continue;
            for (int c = 0; c < cols; c++) result[(long)p * cols + c] = src[(long)row * cols + c];
        }
        return result;
    }

    internal static IEnumerable<KernelCase> Cases()
    {
        foreach (var dt in new[] { DType.F32, DType.BF16 })
            foreach (var (srcRows, cols, rows, divisor) in new[] { (1, 1, 1, 1), (10, 33, 40, 2), (64, 260, 128, 1), (5, 7, 0, 1) })
                yield return new KernelCase(Op, dt, $"src={srcRows}x{cols} rows={rows} divisor={divisor}", (device, seed) =>
                {
                    using var s = new Scope(device);
                    var src = Random(seed, 1, (long)srcRows * cols, dt);
                    // Indices from −2 up past the last row: zero rows for both kinds of miss.
                    var index = RandomInts(seed, 2, rows, (srcRows + 2) * divisor);
                    for (int i = 0; i < index.Length; i++) index[i] -= 2;
                    var output = s.Poisoned(dt, rows, cols);
                    Run(s.Floats(src, dt, srcRows, cols), s.Ints(index, rows), divisor, output);
                    var expected = Reference(src, srcRows, cols, index, divisor);
                    // A copy is exact: any difference is a wrong row.
                    double error = ErrorBounds.RelativeError(output.ToFloats(), expected);
                    return (error, 0, "");
                });
    }
}
