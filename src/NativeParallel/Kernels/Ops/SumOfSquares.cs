using System.Runtime.InteropServices;
using NativeParallel.Devices;
using NativeParallel.Diagnostics;
using NativeParallel.Kernels.Check;
using NativeParallel.Kernels.Cpu;
using NativeParallel.Tensors;
using static NativeParallel.Kernels.Check.CaseKit;

namespace NativeParallel.Kernels.Ops;

/// <summary>
/// total[0] += Σ x[i]²: x (count) f32 or bf16, total f32 (1). The building block of the global gradient norm (call it
/// once per gradient tensor, then take the square root of total). Accumulated in double and rounded once into
/// total. Deterministic: bitwise the same result on every run on a device, whatever the thread count or schedule (a
/// grid fixed by count, a fixed reduction order, no atomics).
/// </summary>
[KernelOp("sum_squares", "sum_squares.cu")]
public static unsafe class SumOfSquares
{
    private const string Op = "sum_squares";
    private static readonly EntryPoints Partial = new("sum_squares_partial");

    /// <summary>Elements per thread (at least) before a further block is used; blocks never exceed <see cref="MaxBlocks"/>.</summary>
    private const long ElementsPerBlock = OpLaunch.Block * 64;

    /// <summary>The most partial sums: the finishing block reads each once.</summary>
    private const int MaxBlocks = 1024;

    /// <summary>kernels/sum_squares.cu SumSquaresArgs.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct SumSquaresArgs
    {
        public ulong X, Partials, Total;
        public long Count;
        public int Blocks;
    }

    /// <summary>Adds Σ x² to total[0], on the tensors' device.</summary>
    public static void Accumulate(Tensor x, Tensor total)
    {
        using var traced = Tracer.Kernel("sum_of_squares", x, total);
        foreach (var (name, t) in new[] { ("x", x), ("total", total) })
        {
            OpShapes.Require(t.IsContiguous, Op, $"{name} must be contiguous, got a strided view {t}");
            OpShapes.Require(ReferenceEquals(t.Device, x.Device), Op, $"{name} is on {t.Device.Name}, x on {x.Device.Name}");
        }
        OpShapes.Require(x.DType is DType.F32 or DType.BF16, Op, $"x has dtype {x.DType.Name()}; supported: f32, bf16");
        OpShapes.Require(total.DType == DType.F32 && total.Count == 1, Op, $"total must be f32 with one element, got {total}");
        long count = x.Count;
        if (count == 0) return;
        if (OpLaunch.LauncherOf(x) is { } launcher)
        {
            int blocks = BlocksFor(count);
            using var partials = Tensor.Empty(x.Device, DType.I64, blocks); // doubles: only the kernels read them
            var args = new SumSquaresArgs { X = x.Pointer, Partials = partials.Pointer, Total = total.Pointer, Count = count, Blocks = blocks };
            launcher.Launch("sum_squares.cu", Partial[x.DType], new Gpu.Dim3((uint)blocks), new Gpu.Dim3(OpLaunch.Block), 0, args);
            launcher.Launch("sum_squares.cu", "sum_squares_finish_f32", new Gpu.Dim3(1), new Gpu.Dim3(OpLaunch.Block), 0, args);
            return;
        }
        Cpu(x, total, count);
    }

    /// <summary>The partial kernel's grid: a function of count only, so the reduction order never depends on the device.</summary>
    internal static int BlocksFor(long count) => (int)Math.Clamp((count + ElementsPerBlock - 1) / ElementsPerBlock, 1, MaxBlocks);

    // Fixed chunks of 65536 elements (CpuRowKernels.SumOfSquares), each summed in double, the partials added in chunk
    // order: bitwise the same whatever the thread count.
    private static void Cpu(Tensor x, Tensor total, long count)
    {
        double sum = CpuRowKernels.SumOfSquares(x, count);
        float* t = (float*)total.Pointer;
        t[0] = (float)(t[0] + sum);
    }

    /// <summary>The float64 reference: total + Σ x².</summary>
    public static double Reference(float[] x, double total)
    {
        foreach (float v in x) total += (double)v * v;
        return total;
    }

    internal static IEnumerable<KernelCase> Cases()
    {
        foreach (var dt in new[] { DType.F32, DType.BF16 })
            foreach (int count in new[] { 0, 1, 33, 1000, 1000003 })
                yield return Case(dt, count);
    }

    private static KernelCase Case(DType dt, int count) =>
        new(Op, dt, $"count={count}", (device, seed) =>
        {
            using var s = new Scope(device);
            var x = Random(seed, 1, count, dt, -3f, 3f);
            float start = Random(seed, 2, 1, DType.F32, 0.5f, 100f)[0];
            var xt = s.Floats(x, dt, count);
            var total = s.Floats([start], DType.F32, 1);
            Accumulate(xt, total);
            // A second run must give the same bits. (The emulator's fiber schedules already compare runs bitwise, and
            // a million elements there are slow, so it runs once per schedule.)
            if (device is not EmuDevice)
            {
                var again = s.Floats([start], DType.F32, 1);
                Accumulate(xt, again);
                float got = total.ToFloats()[0], repeat = again.ToFloats()[0];
                if (BitConverter.SingleToInt32Bits(got) != BitConverter.SingleToInt32Bits(repeat))
                    return (double.NaN, ErrorBounds.For(DType.F32), $"not deterministic: {got:R} then {repeat:R} from the same input");
            }
            return Compare(total, [Reference(x, start)], DType.F32);
        });
}
