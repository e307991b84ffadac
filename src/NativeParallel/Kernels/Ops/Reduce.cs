using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using NativeParallel.Diagnostics;
using NativeParallel.Kernels.Check;
using NativeParallel.Kernels.Cpu;
using NativeParallel.Tensors;
using static NativeParallel.Kernels.Check.CaseKit;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace NativeParallel.Kernels.Ops;

/// <summary>
/// The collectives' reduction step: output = op(inputs[0], ..., inputs[m−1]) element-wise, 1 ≤ m ≤
/// <see cref="KernelLimits.MaxReduceInputs"/>, every tensor (count) of one dtype (f32, bf16 or f16), computed in f32
/// with the inputs combined in order (deterministic); output may be one of the inputs (in place). Avg is the sum
/// divided by m.
/// </summary>
[KernelOp("reduce", "reduce.cu")]
public static unsafe class Reduce
{
    private const string Op = "reduce";
    // reduce_<op>_<dtype>, one set per ReduceOp (indexed by its value), named once.
    private static readonly EntryPoints[] Entries = Enum.GetValues<ReduceOp>().OrderBy(o => (int)o)
        .Select(o => new EntryPoints("reduce_" + o.ToString().ToLowerInvariant())).ToArray();

    /// <summary>kernels/reduce.cu ReduceArgs.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct ReduceArgs
    {
        public SourcePointers Sources;
        public ulong Dst;
        public long Count;
        public int Inputs;

        [InlineArray(KernelLimits.MaxReduceInputs)]
        public struct SourcePointers
        {
            private ulong _element;
        }
    }

    /// <summary>Runs on the tensors' device.</summary>
    public static void Run(ReduceOp op, ReadOnlySpan<Tensor> inputs, Tensor output)
    {
        // The span of every tensor is built only when a trace records it (a collection expression allocates).
        using var traced = Tracer.Current is null ? default : Tracer.Kernel(Op, [.. inputs, output]);
        long count = Shapes(inputs, output);
        if (OpLaunch.LauncherOf(output) is { } launcher)
        {
            if (count == 0) return;
            var args = new ReduceArgs { Dst = output.Pointer, Count = count, Inputs = inputs.Length };
            for (int s = 0; s < inputs.Length; s++) args.Sources[s] = inputs[s].Pointer;
            launcher.Launch("reduce.cu", Entries[(int)op][output.DType], new Gpu.Dim3(OpLaunch.GridFor(launcher, count)), new Gpu.Dim3(OpLaunch.Block), 0, args);
            return;
        }
        Cpu(op, inputs, output, count);
    }

    private static long Shapes(ReadOnlySpan<Tensor> inputs, Tensor output)
    {
        OpShapes.Require(inputs.Length is >= 1 and <= KernelLimits.MaxReduceInputs, Op, $"1..{KernelLimits.MaxReduceInputs} inputs, got {inputs.Length}");
        OpShapes.FloatType(Op, "output", output, DType.F32, DType.BF16, DType.F16);
        OpShapes.Require(output.IsContiguous, Op, "output must be contiguous");
        foreach (var input in inputs)
        {
            OpShapes.Require(input.IsContiguous && ReferenceEquals(input.Device, output.Device), Op, $"input {input} must be contiguous and on {output.Device.Name}");
            OpShapes.Require(input.DType == output.DType && input.Count == output.Count, Op, $"input {input} must match output {output}");
        }
        return output.Count;
    }

    private static void Cpu(ReduceOp op, ReadOnlySpan<Tensor> inputs, Tensor output, long count)
    {
        var views = new F32View[inputs.Length];
        try
        {
            for (int s = 0; s < inputs.Length; s++) views[s] = F32View.Input(inputs[s]);
            using var ov = F32View.Output(output);
            float*[] sources = new float*[inputs.Length];
            for (int s = 0; s < sources.Length; s++) sources[s] = views[s].Pointer;
            float* dst = ov.Pointer;
            float inverseCount = 1f / inputs.Length;
            CpuParallel.Chunks(count, inputs.Length, (offset, length) =>
            {
                var acc = new Span<float>(dst + offset, length);
                new ReadOnlySpan<float>(sources[0] + offset, length).CopyTo(acc);
                for (int s = 1; s < sources.Length; s++)
                {
                    ElementwiseReduce.Combine(op, acc, new ReadOnlySpan<float>(sources[s] + offset, length));
                }
                if (op == ReduceOp.Avg) TensorPrimitives.Multiply(acc, inverseCount, acc);
            });
        }
        finally
        {
            foreach (var view in views) view.Dispose();
        }
    }

    /// <summary>The float64 reference: op over the inputs element-wise.</summary>
    public static double[] Reference(ReduceOp op, float[][] inputs)
    {
        int count = inputs[0].Length;
        var y = new double[count];
        for (int i = 0; i < count; i++)
        {
            double acc = inputs[0][i];
            for (int s = 1; s < inputs.Length; s++)
            {
                double v = inputs[s][i];
                acc = op switch
                {
                    ReduceOp.Sum or ReduceOp.Avg => acc + v,
                    ReduceOp.Prod => acc * v,
                    ReduceOp.Max => Math.Max(acc, v),
                    ReduceOp.Min => Math.Min(acc, v),
                    _ => throw new ArgumentOutOfRangeException(nameof(op)),
                };
            }
            y[i] = op == ReduceOp.Avg ? acc / inputs.Length : acc;
        }
        return y;
    }

    internal static IEnumerable<KernelCase> Cases()
    {
        foreach (var dt in new[] { DType.F32, DType.BF16, DType.F16 })
            foreach (var op in Enum.GetValues<ReduceOp>())
            {
                foreach (var (count, inputs) in new[] { (0, 2), (1, 1), (33, 3), (1000, 8), (65537, 2) })
                    yield return Case(dt, op, count, inputs, inPlace: false);
                yield return Case(dt, op, 1000, 4, inPlace: true);
            }
    }

    private static KernelCase Case(DType dt, ReduceOp op, int count, int inputs, bool inPlace) =>
        new(Op, dt, $"op={op.ToString().ToLowerInvariant()} count={count} inputs={inputs}{(inPlace ? " in-place" : "")}", (device, seed) =>
        {
            using var s = new Scope(device);
            var values = new float[inputs][];
            var tensors = new Tensor[inputs];
            for (int i = 0; i < inputs; i++)
            {
                // Products of many inputs stay representable when magnitudes sit near 1.
                values[i] = op == ReduceOp.Prod ? Random(seed, i + 1, count, dt, 0.5f, 1.5f) : Random(seed, i + 1, count, dt);
                tensors[i] = s.Floats(values[i], dt, count);
            }
            var output = inPlace ? tensors[0] : s.Poisoned(dt, count);
            Run(op, tensors, output);
            return Compare(output, Reference(op, values), dt);
        });
}
