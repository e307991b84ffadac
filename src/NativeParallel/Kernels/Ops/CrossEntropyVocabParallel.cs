using System.Runtime.InteropServices;
using NativeParallel.Devices;
using NativeParallel.Diagnostics;
using NativeParallel.Kernels.Check;
using NativeParallel.Kernels.Cpu;
using NativeParallel.Tensors;
using static NativeParallel.Kernels.Check.CaseKit;

namespace NativeParallel.Kernels.Ops;

/// <summary>
/// Megatron's vocabulary-parallel cross-entropy: each rank of a tensor-parallel group holds the logits of vocabulary
/// columns [vocabStart, vocabStart + v) of vocabTotal, and no rank ever holds a whole row. Three passes with two
/// all-reduces over the group between them (<see cref="Run"/> does all of it):
/// <list type="number">
/// <item><see cref="Stats"/>: rowMax[r] = max over this rank's columns; all-reduced with max.</item>
/// <item><see cref="Sums"/>: rowSums[r] = (Σ_j exp(logits[r, j] − rowMax[r]), logits[r, target − vocabStart] on the
/// rank holding the target, 0 elsewhere); all-reduced with sum.</item>
/// <item><see cref="Grad"/>: losses[r] = log(rowSums[r, 0]) + rowMax[r] − rowSums[r, 1] and
/// dLogits[r, j] = gradScale · (exp(logits[r, j] − rowMax[r]) / rowSums[r, 0] − (vocabStart + j == target)).</item>
/// </list>
/// logits, dLogits: (rows, v) f32 or bf16, dLogits may be logits (in place); targets: i32 (rows) ids in the whole
/// vocabulary, outside [0, vocabTotal) ignoring the row (loss 0, zero dLogits row); rowMax: f32 (rows); rowSums: f32
/// (rows, 2); losses: f32 (rows). Every rank gets the same losses. Computed in f32.
/// </summary>
[KernelOp("cross_entropy_vocab", "cross_entropy.cu")]
public static unsafe class CrossEntropyVocabParallel
{
    private const string Op = "cross_entropy_vocab";
    private static readonly EntryPoints StatsEntry = new("cross_entropy_vocab_stats");
    private static readonly EntryPoints SumsEntry = new("cross_entropy_vocab_sums");
    private static readonly EntryPoints GradEntry = new("cross_entropy_vocab_grad");

    /// <summary>kernels/cross_entropy.cu CrossEntropyVocabArgs.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct CrossEntropyVocabArgs
    {
        public ulong Logits, Targets, RowMax, RowSums, Losses, DLogits;
        public int Rows, V, VocabStart, VocabTotal;
        public float GradScale;
    }

    /// <summary>
    /// The whole loss and gradient of this rank's columns: the three passes with <paramref name="allReduceMax"/> and
    /// <paramref name="allReduceSum"/> (over the tensor-parallel group, in place on their tensor) between them.
    /// </summary>
    public static void Run(Tensor logits, Tensor targets, int vocabStart, int vocabTotal, Tensor rowMax, Tensor rowSums, Tensor losses, Tensor dLogits,
        float gradScale, Action<Tensor> allReduceMax, Action<Tensor> allReduceSum)
    {
        Stats(logits, rowMax);
        allReduceMax(rowMax);
        Sums(logits, targets, vocabStart, rowMax, rowSums);
        allReduceSum(rowSums);
        Grad(logits, targets, vocabStart, vocabTotal, rowMax, rowSums, losses, dLogits, gradScale);
    }

    /// <summary>Pass 1: each row's maximum over this rank's columns.</summary>
    public static void Stats(Tensor logits, Tensor rowMax)
    {
        using var traced = Tracer.Kernel("cross_entropy_vocab_stats", logits, rowMax);
        var (rows, v) = Check(logits, rowMax: rowMax);
        Launch(StatsEntry, rows, new CrossEntropyVocabArgs { Logits = logits.Pointer, RowMax = rowMax.Pointer, Rows = rows, V = v }, logits,
            () => CpuStats(logits, rowMax, rows, v));
    }

    /// <summary>Pass 2: each row's sum of exp(logit − the row's global max) over this rank's columns, and its target logit where this rank holds it.</summary>
    public static void Sums(Tensor logits, Tensor targets, int vocabStart, Tensor rowMax, Tensor rowSums)
    {
        using var traced = Tracer.Kernel("cross_entropy_vocab_sums", logits, targets, rowMax, rowSums);
        var (rows, v) = Check(logits, targets, rowMax, rowSums);
        Launch(SumsEntry, rows, new CrossEntropyVocabArgs
        {
            Logits = logits.Pointer, Targets = targets.Pointer, RowMax = rowMax.Pointer, RowSums = rowSums.Pointer, Rows = rows, V = v, VocabStart = vocabStart,
        }, logits, () => CpuSums(logits, targets, vocabStart, rowMax, rowSums, rows, v));
    }

    /// <summary>Pass 3: the losses and this rank's columns of dLogits from the group's max and sums.</summary>
    public static void Grad(Tensor logits, Tensor targets, int vocabStart, int vocabTotal, Tensor rowMax, Tensor rowSums, Tensor losses, Tensor dLogits, float gradScale)
    {
        using var traced = Tracer.Kernel("cross_entropy_vocab_grad", logits, targets, rowMax, rowSums, losses, dLogits);
        var (rows, v) = Check(logits, targets, rowMax, rowSums, losses, dLogits);
        OpShapes.Require(vocabStart >= 0 && vocabStart + v <= vocabTotal, Op, $"columns [{vocabStart}, {vocabStart + v}) are outside the vocabulary of {vocabTotal}");
        Launch(GradEntry, rows, new CrossEntropyVocabArgs
        {
            Logits = logits.Pointer, Targets = targets.Pointer, RowMax = rowMax.Pointer, RowSums = rowSums.Pointer, Losses = losses.Pointer,
            DLogits = dLogits.Pointer, Rows = rows, V = v, VocabStart = vocabStart, VocabTotal = vocabTotal, GradScale = gradScale,
        }, logits, () => CpuGrad(logits, targets, vocabStart, vocabTotal, rowMax, rowSums, losses, dLogits, rows, v, gradScale));
    }

    private static void Launch(EntryPoints entry, int rows, CrossEntropyVocabArgs args, Tensor logits, Action cpu)
    {
        if (rows == 0) return;
        if (OpLaunch.LauncherOf(logits) is { } launcher)
        {
            launcher.Launch("cross_entropy.cu", entry[logits.DType], new Gpu.Dim3(OpLaunch.RowGrid(launcher, rows)), new Gpu.Dim3(OpLaunch.Block), 0, args);
            return;
        }
        cpu();
    }

    private static (int Rows, int V) Check(Tensor logits, Tensor? targets = null, Tensor? rowMax = null, Tensor? rowSums = null, Tensor? losses = null, Tensor? dLogits = null)
    {
        OpShapes.Require(logits.DType is DType.F32 or DType.BF16, Op, $"logits has dtype {logits.DType.Name()}; supported: f32, bf16");
        OpShapes.Require(logits.Rank == 2 && logits.IsContiguous, Op, $"logits must be contiguous (rows, v), got {logits}");
        int rows = logits.Shape[0], v = logits.Shape[1];
        OpShapes.Require(v >= 1, Op, $"this rank holds no vocabulary columns ({logits}); every rank of the group needs at least one");
        void Same(string name, Tensor? t, DType dtype, long count)
        {
            if (t is null) return;
            OpShapes.Require(t.IsContiguous && ReferenceEquals(t.Device, logits.Device), Op, $"{name} must be contiguous on {logits.Device.Name}, got {t}");
            OpShapes.Require(t.DType == dtype && t.Count == count, Op, $"{name} must be {dtype.Name()} with {count} elements for logits {logits}, got {t}");
        }
        Same("targets", targets, DType.I32, rows);
        Same("rowMax", rowMax, DType.F32, rows);
        Same("rowSums", rowSums, DType.F32, 2L * rows);
        Same("losses", losses, DType.F32, rows);
        Same("dLogits", dLogits, logits.DType, logits.Count);
        return (rows, v);
    }

    private static void CpuStats(Tensor logits, Tensor rowMax, int rows, int v)
    {
        using var xv = F32View.Input(logits);
        float* x = xv.Pointer, max = (float*)rowMax.Pointer;
        CpuParallel.For(rows, v, (start, end) =>
        {
            for (int r = start; r < end; r++) max[r] = System.Numerics.Tensors.TensorPrimitives.Max(new ReadOnlySpan<float>(x + (long)r * v, v));
        });
    }

    private static void CpuSums(Tensor logits, Tensor targets, int vocabStart, Tensor rowMax, Tensor rowSums, int rows, int v)
    {
        using var xv = F32View.Input(logits);
        float* x = xv.Pointer, max = (float*)rowMax.Pointer, sums = (float*)rowSums.Pointer;
        int* target = (int*)targets.Pointer;
        CpuParallel.For(rows, v * 8L, (start, end) =>
        {
            for (int r = start; r < end; r++)
            {
                float* row = x + (long)r * v;
                // A double accumulator: a plain f32 running sum over a vocabulary of 50 k drifts past f32's bound.
                double s = 0;
                float m = max[r];
                for (int j = 0; j < v; j++) s += MathF.Exp(row[j] - m);
                int local = target[r] - vocabStart;
                sums[2 * r] = (float)s;
                sums[2 * r + 1] = (uint)local < (uint)v ? row[local] : 0f;
            }
        });
    }

    private static void CpuGrad(Tensor logits, Tensor targets, int vocabStart, int vocabTotal, Tensor rowMax, Tensor rowSums, Tensor losses, Tensor dLogits,
        int rows, int v, float gradScale)
    {
        using var xv = F32View.Input(logits);
        using var dv = F32View.Output(dLogits);
        float* x = xv.Pointer, d = dv.Pointer, max = (float*)rowMax.Pointer, sums = (float*)rowSums.Pointer, loss = (float*)losses.Pointer;
        int* target = (int*)targets.Pointer;
        CpuParallel.For(rows, v * 8L, (start, end) =>
        {
            for (int r = start; r < end; r++)
            {
                float* row = x + (long)r * v, dRow = d + (long)r * v;
                int t = target[r];
                if ((uint)t >= (uint)vocabTotal)
                {
                    new Span<float>(dRow, v).Clear();
                    loss[r] = 0f;
                    continue;
                }
                float m = max[r], sum = sums[2 * r], scale = gradScale / sum;
                loss[r] = m + MathF.Log(sum) - sums[2 * r + 1];
                int local = t - vocabStart;
                for (int j = 0; j < v; j++)
                {
                    float p = MathF.Exp(row[j] - m) * scale;
                    dRow[j] = j == local ? p - gradScale : p;
                }
            }
        });
    }

    internal static IEnumerable<KernelCase> Cases()
    {
        foreach (var dt in new[] { DType.F32, DType.BF16 })
        {
            yield return Case(dt, 3, 31, ranks: 2, ignored: false, inPlace: false);
            yield return Case(dt, 5, 1000, ranks: 4, ignored: true, inPlace: false);
            yield return Case(dt, 4, 257, ranks: 3, ignored: true, inPlace: true);
            yield return Case(dt, 2, 50257, ranks: 2, ignored: false, inPlace: true);
        }
    }

    // The group simulated on one device: the full logits cut into `ranks` column blocks (the last one shorter), the
    // all-reduces done on the host, each block's dLogits and the losses against the whole-row float64 reference.
    private static KernelCase Case(DType dt, int rows, int vocab, int ranks, bool ignored, bool inPlace) =>
        new(Op, dt, $"rows={rows} V={vocab} over {ranks} ranks{(ignored ? " one ignored" : "")}{(inPlace ? " in-place" : "")}", (device, seed) =>
        {
            using var s = new Scope(device);
            var logits = Random(seed, 1, (long)rows * vocab, dt, -8f, 8f);
            var targets = RandomInts(seed, 2, rows, vocab);
            if (ignored) targets[rows / 2] = (seed & 1) == 0 ? -1 : vocab;
            float gradScale = 1f / rows;
            var (refLosses, refD) = CrossEntropy.Reference(logits, targets, rows, vocab, gradScale);
            int chunk = (vocab + ranks - 1) / ranks;
            var blocks = Enumerable.Range(0, ranks).Select(k =>
            {
                int start = k * chunk, v = Math.Min(vocab, start + chunk) - start;
                var part = new float[rows * v];
                for (int r = 0; r < rows; r++) Array.Copy(logits, (long)r * vocab + start, part, (long)r * v, v);
                var x = s.Floats(part, dt, rows, v);
                return (Start: start, V: v, Logits: x, Max: s.Poisoned(DType.F32, rows), Sums: s.Poisoned(DType.F32, rows, 2),
                    Losses: s.Poisoned(DType.F32, rows), D: inPlace ? x : s.Poisoned(dt, rows, v));
            }).ToArray();
            var ids = s.Ints(targets, rows);
            void AllReduce(Func<(int, int, Tensor, Tensor, Tensor, Tensor, Tensor), Tensor> pick, Func<float, float, float> op)
            {
                var values = blocks.Select(b => pick(b).ToFloats()).ToArray();
                var total = values[0].ToArray();
                foreach (var other in values.Skip(1)) for (int i = 0; i < total.Length; i++) total[i] = op(total[i], other[i]);
                foreach (var b in blocks) pick(b).CopyFromHost(MemoryMarshal.AsBytes(total.AsSpan()));
            }
            foreach (var b in blocks) Stats(b.Logits, b.Max);
            AllReduce(b => b.Item4, MathF.Max);
            foreach (var b in blocks) Sums(b.Logits, ids, b.Start, b.Max, b.Sums);
            AllReduce(b => b.Item5, (a, c) => a + c);
            foreach (var b in blocks) Grad(b.Logits, ids, b.Start, vocab, b.Max, b.Sums, b.Losses, b.D, gradScale);
            var results = new List<(double, double, string)>();
            foreach (var b in blocks)
            {
                var want = new double[rows * b.V];
                for (int r = 0; r < rows; r++) Array.Copy(refD, (long)r * vocab + b.Start, want, (long)r * b.V, b.V);
                results.Add(Compare(b.D, want, dt));
                results.Add(Compare(b.Losses, refLosses, DType.F32));
            }
            return Worst([.. results]);
        });
}
