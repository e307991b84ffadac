using System.Runtime.InteropServices;
using NativeParallel.Diagnostics;
using NativeParallel.Kernels.Check;
using NativeParallel.Kernels.Cpu;
using NativeParallel.Tensors;
using static NativeParallel.Kernels.Check.CaseKit;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace NativeParallel.Kernels.Ops;

/// <summary>
/// Causal grouped-query self-attention for training, flash-style (no (T, T) matrix is ever stored, on the device or
/// on the CPU). Query i sees keys j ≤ i; query head h reads kv head h / (Hq / Hkv).
/// <list type="bullet">
/// <item>q, output, dOutput, dq: (B, T, Hq, D); k, v, dk, dv: (B, T, Hkv, D); all of one dtype (f32 or bf16), computed
/// in f32. Hq a multiple of Hkv, 1 ≤ D ≤ <see cref="KernelLimits.MaxHeadDim"/>.</item>
/// <item>lse: f32 (B, Hq, T), lse_i = log Σ_{j≤i} exp(scale·q_i·k_j) (natural log), written by <see cref="Forward"/> and
/// read by <see cref="Backward"/>.</item>
/// <item>Backward: p_ij = exp(scale·q_i·k_j − lse_i), delta_i = dO_i·O_i, dS_ij = p_ij·(dO_i·v_j − delta_i),
/// dq_i = scale·Σ_j dS_ij k_j, dk_j = scale·Σ_{i, every query head of its group} dS_ij q_i, dv_j = Σ_i p_ij dO_i.
/// dq, dk, dv are overwritten; every sum runs in a fixed order (bitwise deterministic, no atomics).</item>
/// </list>
/// </summary>
[KernelOp("attention_train", "attention.cu")]
public static unsafe class AttentionTraining
{
    private const string Op = "attention_train";
    private const int Warps = 4; // kernels/attention.cu ATT_WARPS: rows per block
    private static readonly EntryPoints Fwd = new("attention_train_fwd");
    private static readonly EntryPoints BwdDq = new("attention_train_bwd_dq");
    private static readonly EntryPoints BwdDkDv = new("attention_train_bwd_dkdv");

    /// <summary>kernels/attention.cu AttentionTrainFwdArgs.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct AttentionTrainFwdArgs
    {
        public ulong Q, K, V, Out, Lse;
        public int Batch, T, Hq, Hkv, D;
        public float Scale;
    }

    /// <summary>kernels/attention.cu AttentionTrainBwdArgs.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct AttentionTrainBwdArgs
    {
        public ulong Q, K, V, Out, Lse, DOut, Delta, Dq, Dk, Dv;
        public int Batch, T, Hq, Hkv, D;
        public float Scale;
    }

    private readonly record struct Sizes(int B, int T, int Hq, int Hkv, int D)
    {
        public int Group => Hq / Hkv;
    }

    /// <summary>output = softmax(scale·q·kᵀ, causal)·v and the row log-sum-exp <paramref name="lse"/>, on the tensors' device.</summary>
    public static void Forward(Tensor q, Tensor k, Tensor v, Tensor output, Tensor lse, float scale)
    {
        using var traced = Tracer.Kernel("attention_fwd", q, k, v, output, lse);
        var s = Check(q, k, v, lse, ("output", output));
        if ((long)s.B * s.T * s.Hq == 0) return;
        if (OpLaunch.LauncherOf(q) is { } launcher)
        {
            var args = new AttentionTrainFwdArgs
            {
                Q = q.Pointer, K = k.Pointer, V = v.Pointer, Out = output.Pointer, Lse = lse.Pointer,
                Batch = s.B, T = s.T, Hq = s.Hq, Hkv = s.Hkv, D = s.D, Scale = scale,
            };
            long rows = (long)s.B * s.T * s.Hq;
            launcher.Launch("attention.cu", Fwd[q.DType], new Gpu.Dim3(OpLaunch.GridFor(launcher, rows, Warps)), new Gpu.Dim3(Warps * 32), 0, args);
            return;
        }
        CpuForward(q, k, v, output, lse, scale, s);
    }

    /// <summary>dq, dk, dv from the forward's <paramref name="output"/> and <paramref name="lse"/>, on the tensors' device.</summary>
    public static void Backward(Tensor q, Tensor k, Tensor v, Tensor output, Tensor lse, Tensor dOutput, Tensor dq, Tensor dk, Tensor dv, float scale)
    {
        using var traced = Tracer.Kernel("attention_bwd", q, k, v, output, lse, dOutput, dq, dk, dv);
        var s = Check(q, k, v, lse, ("output", output), ("dOutput", dOutput), ("dq", dq), ("dk", dk), ("dv", dv));
        if ((long)s.B * s.T * s.Hq == 0) return;
        if (OpLaunch.LauncherOf(q) is { } launcher)
        {
            using var delta = Tensor.Empty(q.Device, DType.F32, s.B, s.Hq, s.T);
            var args = new AttentionTrainBwdArgs
            {
                Q = q.Pointer, K = k.Pointer, V = v.Pointer, Out = output.Pointer, Lse = lse.Pointer, DOut = dOutput.Pointer,
                Delta = delta.Pointer, Dq = dq.Pointer, Dk = dk.Pointer, Dv = dv.Pointer,
                Batch = s.B, T = s.T, Hq = s.Hq, Hkv = s.Hkv, D = s.D, Scale = scale,
            };
            long queryRows = (long)s.B * s.T * s.Hq, keyRows = (long)s.B * s.T * s.Hkv;
            var block = new Gpu.Dim3(Warps * 32);
            // Stream order: bwd_dkdv reads the delta that bwd_dq writes.
            launcher.Launch("attention.cu", BwdDq[q.DType], new Gpu.Dim3(OpLaunch.GridFor(launcher, queryRows, Warps)), block, 0, args);
            launcher.Launch("attention.cu", BwdDkDv[q.DType], new Gpu.Dim3(OpLaunch.GridFor(launcher, keyRows, Warps)), block, 0, args);
            return;
        }
        CpuBackward(q, k, v, output, lse, dOutput, dq, dk, dv, scale, s);
    }

    private static Sizes Check(Tensor q, Tensor k, Tensor v, Tensor lse, params (string Name, Tensor T)[] others)
    {
        var all = new List<(string Name, Tensor T)> { ("q", q), ("k", k), ("v", v), ("lse", lse) };
        all.AddRange(others);
        foreach (var (name, t) in all)
        {
            OpShapes.Require(t.IsContiguous, Op, $"{name} must be contiguous, got a strided view {t}");
            OpShapes.Require(ReferenceEquals(t.Device, q.Device), Op, $"{name} is on {t.Device.Name}, q on {q.Device.Name}");
        }
        OpShapes.Require(q.DType is DType.F32 or DType.BF16, Op, $"q has dtype {q.DType.Name()}; supported: f32, bf16");
        OpShapes.Require(q.Rank == 4 && k.Rank == 4, Op, $"q must be (batch, t, hq, d) and k, v (batch, t, hkv, d), got {q} and {k}");
        var s = new Sizes(q.Dim(0), q.Dim(1), q.Dim(2), k.Dim(2), q.Dim(3));
        OpShapes.Require(k.Dim(0) == s.B && k.Dim(1) == s.T && k.Dim(3) == s.D, Op, $"k {k} does not match q {q}");
        OpShapes.Require(s.Hkv > 0 && s.Hq % s.Hkv == 0, Op, $"query heads ({s.Hq}) must be a multiple of kv heads ({s.Hkv})");
        OpShapes.Require(s.D is > 0 and <= KernelLimits.MaxHeadDim, Op, $"head dimension must be in 1..{KernelLimits.MaxHeadDim}, got {s.D}");
        OpShapes.Require(lse.DType == DType.F32 && lse.Shape.SequenceEqual([s.B, s.Hq, s.T]), Op, $"lse must be f32 ({s.B}, {s.Hq}, {s.T}), got {lse}");
        foreach (var (name, t) in all)
        {
            if (name == "lse") continue;
            OpShapes.Require(t.DType == q.DType, Op, $"{name} has dtype {t.DType.Name()}, q {q.DType.Name()}: all but lse share one dtype");
            bool keyShaped = name is "k" or "v" or "dk" or "dv";
            OpShapes.Require(t.Shape.SequenceEqual(keyShaped ? k.Shape : q.Shape), Op, $"{name} must have {(keyShaped ? "k" : "q")}'s shape, got {t}");
        }
        return s;
    }

    // ---- CPU path: Kernels/Cpu/CpuAttention (the prefill's flash attention forward; its Backward file). ----

    private static void CpuForward(Tensor q, Tensor k, Tensor v, Tensor output, Tensor lse, float scale, Sizes s) =>
        // The prefill's blocked flash attention over the whole sequence (queries at positions 0..T−1), keeping each
        // row's log-sum-exp for the backward.
        CpuAttention.Prefill(q, k, v, output, new OpShapes.AttentionSizes(s.B, s.T, s.T, s.Hq, s.Hkv, s.D), queryStart: 0, scale, (float*)lse.Pointer);

    private static void CpuBackward(Tensor q, Tensor k, Tensor v, Tensor output, Tensor lse, Tensor dOutput, Tensor dq, Tensor dk,
        Tensor dv, float scale, Sizes s) =>
        CpuAttention.Backward(q, k, v, output, lse, dOutput, dq, dk, dv, new OpShapes.AttentionSizes(s.B, s.T, s.T, s.Hq, s.Hkv, s.D), scale);

    // ---- float64 references ----

    /// <summary>The float64 forward: output (B, T, Hq, D) and lse (B, Hq, T).</summary>
    public static (double[] Output, double[] Lse) ReferenceForward(float[] q, float[] k, float[] v, int batch, int t, int hq, int hkv,
        int d, float scale)
    {
        var output = new double[(long)batch * t * hq * d];
        var lse = new double[(long)batch * hq * t];
        var p = new double[t];
        int group = hq / hkv;
        for (int b = 0; b < batch; b++)
            for (int h = 0; h < hq; h++)
                for (int i = 0; i < t; i++)
                {
                    long qRow = (((long)b * t + i) * hq + h) * d;
                    double rowLse = RowProbabilities(q, qRow, k, j => (((long)b * t + j) * hkv + h / group) * d, i + 1, d, scale, p);
                    lse[((long)b * hq + h) * t + i] = rowLse;
                    for (int j = 0; j <= i; j++)
                    {
                        long vRow = (((long)b * t + j) * hkv + h / group) * d;
                        for (int c = 0; c < d; c++) output[qRow + c] += p[j] * v[vRow + c];
                    }
                }
        return (output, lse);
    }

    /// <summary>The float64 backward (the forward recomputed in float64): dq (B, T, Hq, D), dk and dv (B, T, Hkv, D).</summary>
    public static (double[] Dq, double[] Dk, double[] Dv) ReferenceBackward(float[] q, float[] k, float[] v, float[] dOutput, int batch,
        int t, int hq, int hkv, int d, float scale)
    {
        var dq = new double[(long)batch * t * hq * d];
        var dk = new double[(long)batch * t * hkv * d];
        var dv = new double[dk.Length];
        var p = new double[t];
        var o = new double[d];
        int group = hq / hkv;
        for (int b = 0; b < batch; b++)
            for (int h = 0; h < hq; h++)
                for (int i = 0; i < t; i++)
                {
                    long qRow = (((long)b * t + i) * hq + h) * d;
                    long KeyRow(int j) => (((long)b * t + j) * hkv + h / group) * d;
                    RowProbabilities(q, qRow, k, KeyRow, i + 1, d, scale, p);
                    Array.Clear(o);
                    for (int j = 0; j <= i; j++)
                        for (int c = 0; c < d; c++) o[c] += p[j] * v[KeyRow(j) + c];
                    double delta = 0;
                    for (int c = 0; c < d; c++) delta += (double)dOutput[qRow + c] * o[c];
                    for (int j = 0; j <= i; j++)
                    {
                        long kRow = KeyRow(j);
                        double dp = 0;
                        for (int c = 0; c < d; c++) dp += (double)dOutput[qRow + c] * v[kRow + c];
                        double ds = p[j] * (dp - delta);
                        for (int c = 0; c < d; c++)
                        {
                            dq[qRow + c] += scale * ds * k[kRow + c];
                            dk[kRow + c] += scale * ds * q[qRow + c];
                            dv[kRow + c] += p[j] * dOutput[qRow + c];
                        }
                    }
                }
        return (dq, dk, dv);
    }

    /// <summary>p[j] = softmax_j(scale·q·k_j) over j &lt; visible; returns the log-sum-exp.</summary>
    private static double RowProbabilities(float[] q, long qRow, float[] k, Func<int, long> keyRow, int visible, int d, float scale, double[] p)
    {
        double max = double.NegativeInfinity;
        for (int j = 0; j < visible; j++)
        {
            long kRow = keyRow(j);
            double dot = 0;
            for (int c = 0; c < d; c++) dot += (double)q[qRow + c] * k[kRow + c];
            p[j] = dot * scale;
            max = Math.Max(max, p[j]);
        }
        double sum = 0;
        for (int j = 0; j < visible; j++) sum += p[j] = Math.Exp(p[j] - max);
        for (int j = 0; j < visible; j++) p[j] /= sum;
        return max + Math.Log(sum);
    }

    // ---- kernel-suite cases ----

    internal static IEnumerable<KernelCase> Cases()
    {
        (int B, int T, int Hq, int Hkv, int D)[] shapes =
            [(1, 1, 1, 1, 1), (1, 7, 4, 2, 16), (2, 33, 4, 1, 8), (1, 17, 6, 3, 33), (1, 40, 2, 2, 64), (1, 9, 2, 1, 256)];
        foreach (var dt in new[] { DType.F32, DType.BF16 })
            foreach (var shape in shapes)
            {
                yield return ForwardCase(dt, shape);
                yield return BackwardCase(dt, shape);
            }
    }

    private static string ShapeName((int B, int T, int Hq, int Hkv, int D) x, string pass) =>
        $"{pass} batch={x.B} t={x.T} hq={x.Hq} hkv={x.Hkv} d={x.D}";

    private static KernelCase ForwardCase(DType dt, (int B, int T, int Hq, int Hkv, int D) x) =>
        new(Op, dt, ShapeName(x, "fwd"), (device, seed) =>
        {
            using var s = new Scope(device);
            float scale = 1f / MathF.Sqrt(x.D);
            var q = Random(seed, 1, (long)x.B * x.T * x.Hq * x.D, dt, -2f, 2f);
            var k = Random(seed, 2, (long)x.B * x.T * x.Hkv * x.D, dt, -2f, 2f);
            var v = Random(seed, 3, (long)x.B * x.T * x.Hkv * x.D, dt);
            var output = s.Poisoned(dt, x.B, x.T, x.Hq, x.D);
            var lse = s.Poisoned(DType.F32, x.B, x.Hq, x.T);
            Forward(s.Floats(q, dt, x.B, x.T, x.Hq, x.D), s.Floats(k, dt, x.B, x.T, x.Hkv, x.D), s.Floats(v, dt, x.B, x.T, x.Hkv, x.D),
                output, lse, scale);
            var (refOut, refLse) = ReferenceForward(q, k, v, x.B, x.T, x.Hq, x.Hkv, x.D, scale);
            // lse is f32 for both dtypes and its inputs are exact in f32: held to the f32 bound.
            return Worst(Compare(output, refOut, dt), Compare(lse, refLse, DType.F32));
        });

    /// <summary>The backward is fed the float64 reference forward's output (rounded to the dtype) and lse (rounded to f32).</summary>
    private static KernelCase BackwardCase(DType dt, (int B, int T, int Hq, int Hkv, int D) x) =>
        new(Op, dt, ShapeName(x, "bwd"), (device, seed) =>
        {
            using var s = new Scope(device);
            float scale = 1f / MathF.Sqrt(x.D);
            int[] qShape = [x.B, x.T, x.Hq, x.D], kShape = [x.B, x.T, x.Hkv, x.D];
            var q = Random(seed, 1, (long)x.B * x.T * x.Hq * x.D, dt, -2f, 2f);
            var k = Random(seed, 2, (long)x.B * x.T * x.Hkv * x.D, dt, -2f, 2f);
            var v = Random(seed, 3, (long)x.B * x.T * x.Hkv * x.D, dt);
            var dOut = Random(seed, 4, (long)x.B * x.T * x.Hq * x.D, dt);
            var (refOut, refLse) = ReferenceForward(q, k, v, x.B, x.T, x.Hq, x.Hkv, x.D, scale);
            var dq = s.Poisoned(dt, qShape);
            var dk = s.Poisoned(dt, kShape);
            var dv = s.Poisoned(dt, kShape);
            Backward(s.Floats(q, dt, qShape), s.Floats(k, dt, kShape), s.Floats(v, dt, kShape),
                s.Floats(Array.ConvertAll(refOut, o => (float)o), dt, qShape), s.Floats(Array.ConvertAll(refLse, l => (float)l), DType.F32, x.B, x.Hq, x.T),
                s.Floats(dOut, dt, qShape), dq, dk, dv, scale);
            var (refDq, refDk, refDv) = ReferenceBackward(q, k, v, dOut, x.B, x.T, x.Hq, x.Hkv, x.D, scale);
            return Worst(Compare(dq, refDq, dt), Compare(dk, refDk, dt), Compare(dv, refDv, dt));
        });
}
