using System.Runtime.InteropServices;
using NativeParallel.Diagnostics;
using NativeParallel.Kernels.Check;
using NativeParallel.Kernels.Cpu;
using NativeParallel.Tensors;
using static NativeParallel.Kernels.Check.CaseKit;

namespace NativeParallel.Kernels.Ops;

/// <summary>
/// Causal attention over a prompt with grouped-query heads. q: (batch, tq, hq, d); k, v: (batch, tk, hkv, d), hq a
/// multiple of hkv (query head h reads kv head h / (hq / hkv)); output: (batch, tq, hq, d); one dtype (f32 or bf16),
/// computed in f32; 1 ≤ d ≤ <see cref="KernelLimits.MaxHeadDim"/>. Query i sits at global position queryStart + i
/// and sees keys j ≤ queryStart + i (so a token-split slice attends to gathered K/V); a row that sees no key is zeros.
/// </summary>
[KernelOp("attention_prefill", "attention.cu")]
public static unsafe class AttentionPrefill
{
    private const string Op = "attention_prefill";
    internal const uint Warps = 4;  // ATT_WARPS in attention.cu
    private static readonly EntryPoints Entry = new("attention_prefill");

    /// <summary>kernels/attention.cu AttentionPrefillArgs.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct AttentionPrefillArgs
    {
        public ulong Q, K, V, Out;
        public int Batch, Tq, Tk, Hq, Hkv, D, QueryStart;
        public float Scale;
    }

    /// <summary>Runs on the tensors' device.</summary>
    public static void Run(Tensor q, Tensor k, Tensor v, Tensor output, int queryStart, float scale)
    {
        using var traced = Tracer.Kernel(Op, q, k, v, output);
        var s = Shapes(q, k, v, output, queryStart);
        if (OpLaunch.LauncherOf(q) is { } launcher)
        {
            long rows = (long)s.Batch * s.Tq * s.Hq;
            if (rows == 0) return;
            var args = new AttentionPrefillArgs
            {
                Q = q.Pointer, K = k.Pointer, V = v.Pointer, Out = output.Pointer, Batch = s.Batch, Tq = s.Tq, Tk = s.Tk,
                Hq = s.Hq, Hkv = s.Hkv, D = s.D, QueryStart = queryStart, Scale = scale,
            };
            launcher.Launch("attention.cu", Entry[q.DType], new Gpu.Dim3(OpLaunch.GridFor(launcher, rows, Warps)), new Gpu.Dim3(Warps * 32), 0, args);
            return;
        }
        // The CPU path: Kernels/Cpu/CpuAttention.cs (bf16 in registers, blocks of keys).
        CpuAttention.Prefill(q, k, v, output, s, queryStart, scale);
    }

    private static OpShapes.AttentionSizes Shapes(Tensor q, Tensor k, Tensor v, Tensor output, int queryStart)
    {
        OpShapes.Common(Op, ("q", q), ("k", k), ("v", v), ("output", output));
        OpShapes.FloatType(Op, "q", q, DType.F32, DType.BF16);
        OpShapes.Require(k.DType == q.DType && v.DType == q.DType && output.DType == q.DType, Op, "q, k, v and output must share one dtype");
        OpShapes.Require(q.Rank == 4 && k.Rank == 4, Op, $"q must be (batch, tq, hq, d) and k, v (batch, tk, hkv, d), got {q} and {k}");
        var s = new OpShapes.AttentionSizes(q.Dim(0), q.Dim(1), k.Dim(1), q.Dim(2), k.Dim(2), q.Dim(3));
        OpShapes.Require(k.Dim(0) == s.Batch && k.Dim(3) == s.D, Op, $"k {k} does not match q {q}");
        OpShapes.Require(v.Rank == 4 && v.Shape.SequenceEqual(k.Shape), Op, $"v must have k's shape {k}, got {v}");
        OpShapes.Require(output.Shape.SequenceEqual(q.Shape), Op, $"output must have q's shape {q}, got {output}");
        OpShapes.Require(s.Hkv > 0 && s.Hq % s.Hkv == 0, Op, $"query heads ({s.Hq}) must be a multiple of kv heads ({s.Hkv})");
        OpShapes.Require(s.D is > 0 and <= KernelLimits.MaxHeadDim, Op, $"head dimension must be in 1..{KernelLimits.MaxHeadDim}, got {s.D}");
        OpShapes.Require(queryStart >= 0, Op, $"queryStart must be non-negative, got {queryStart}");
        return s;
    }

    /// <summary>The float64 reference: causal grouped-query attention; query i at position queryStart + i sees keys j ≤ queryStart + i.</summary>
    public static double[] Reference(float[] q, float[] k, float[] v, int batch, int tq, int tk, int hq, int hkv,
        int d, int queryStart, float scale)
    {
        var output = new double[(long)batch * tq * hq * d];
        int group = hq / hkv;
        var scores = new double[tk];
        for (int b = 0; b < batch; b++)
            for (int i = 0; i < tq; i++)
                for (int h = 0; h < hq; h++)
                {
                    int kvHead = h / group;
                    int visible = Math.Min(tk, queryStart + i + 1);
                    long qRow = (((long)b * tq + i) * hq + h) * d;
                    AttendRow(q, qRow, k, v, j => (((long)b * tk + j) * hkv + kvHead) * d, visible, d, scale, scores, output, qRow);
                }
        return output;
    }

    /// <summary>One query row of the references (prefill and decode): softmax of the scaled dot products with the first <paramref name="visible"/> keys, times their values.</summary>
    internal static void AttendRow(float[] q, long qRow, float[] k, float[] v, Func<int, long> keyRow, int visible, int d,
        float scale, double[] scores, double[] output, long outRow)
    {
        if (visible <= 0) return; // nothing visible: the output row is zeros
        double max = double.NegativeInfinity;
        for (int j = 0; j < visible; j++)
        {
            long kRow = keyRow(j);
            double dot = 0;
            for (int c = 0; c < d; c++) dot += (double)q[qRow + c] * k[kRow + c];
            scores[j] = dot * scale;
            max = Math.Max(max, scores[j]);
        }
        double sum = 0;
        for (int j = 0; j < visible; j++) sum += scores[j] = Math.Exp(scores[j] - max);
        for (int j = 0; j < visible; j++)
        {
            long vRow = keyRow(j);
            double p = scores[j] / sum;
            for (int c = 0; c < d; c++) output[outRow + c] += p * v[vRow + c];
        }
    }

    internal static IEnumerable<KernelCase> Cases()
    {
        foreach (var dt in new[] { DType.F32, DType.BF16 })
            foreach (var s in new[] { (1, 1, 1, 1, 1, 1, 0), (1, 7, 7, 4, 2, 64, 0), (2, 33, 33, 8, 2, 32, 0), (1, 5, 12, 4, 4, 80, 7),
                                      (1, 3, 3, 2, 1, 256, 0), (1, 17, 17, 6, 3, 33, 0), (1, 4, 4, 2, 2, 16, 9),
                                      // Several key blocks with the causal edge inside them, row tiles with tails.
                                      (2, 45, 50, 8, 2, 40, 5), (1, 70, 100, 4, 4, 24, 30), (1, 9, 75, 6, 2, 64, 66) })
                yield return Case(dt, s.Item1, s.Item2, s.Item3, s.Item4, s.Item5, s.Item6, s.Item7);
    }

    private static KernelCase Case(DType dt, int batch, int tq, int tk, int hq, int hkv, int d, int queryStart) =>
        new(Op, dt, $"batch={batch} tq={tq} tk={tk} hq={hq} hkv={hkv} d={d} start={queryStart}", (device, seed) =>
        {
            using var s = new Scope(device);
            var q = Random(seed, 1, (long)batch * tq * hq * d, dt);
            var k = Random(seed, 2, (long)batch * tk * hkv * d, dt);
            var v = Random(seed, 3, (long)batch * tk * hkv * d, dt);
            var output = s.Poisoned(dt, batch, tq, hq, d);
            float scale = 1f / MathF.Sqrt(d);
            Run(s.Floats(q, dt, batch, tq, hq, d), s.Floats(k, dt, batch, tk, hkv, d), s.Floats(v, dt, batch, tk, hkv, d), output, queryStart, scale);
            return Compare(output, Reference(q, k, v, batch, tq, tk, hq, hkv, d, queryStart, scale), dt);
        });
}
