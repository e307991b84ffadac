using System.Diagnostics;
using NativeParallel.Comm;
using NativeParallel.Devices;
using NativeParallel.Kernels.Ops;
using NativeParallel.Models;
using NativeParallel.Tensors;

namespace NativeParallel.Training;

/// <summary>
/// One parallel training layout on a 3-D mesh: data parallelism (optionally ZeRO-1), tensor parallelism and a
/// pipeline with its micro-batches and schedule, in any combination. Text form: comma-separated axes, e.g.
/// <c>dp=2</c>, <c>dp=2,zero=1</c>, <c>tp=2</c>, <c>pp=2,mb=4,gpipe</c>, <c>dp=2,tp=2,pp=2,mb=2,1f1b</c>; for a
/// mixture-of-experts model <c>ep=2</c>: data parallelism with the experts spread over its ranks (ep = dp).
/// </summary>
public sealed record TrainingLayout(int Dp = 1, int Zero = 0, int Tp = 1, int Pp = 1, int MicroBatches = 1,
    PipelineScheduleKind Schedule = PipelineScheduleKind.OneForwardOneBackward, bool Sp = false, int Ep = 1)
{
    /// <summary>Ranks the layout runs on.</summary>
    public int Ranks => Dp * Tp * Pp;

    /// <summary>The text form (<c>single</c> for one device without micro-batches).</summary>
    public string Name
    {
        get
        {
            var parts = new List<string>();
            if (Ep > 1) parts.Add($"ep={Ep}");
            else if (Dp > 1) parts.Add($"dp={Dp}");
            if (Zero == 1) parts.Add("zero=1");
            if (Tp > 1) parts.Add($"tp={Tp}");
            if (Sp) parts.Add("sp");
            if (Pp > 1) parts.Add($"pp={Pp}");
            if (MicroBatches > 1) parts.Add($"mb={MicroBatches}");
            if (Pp > 1) parts.Add(Schedule.Name());
            return parts.Count == 0 ? "single" : string.Join(",", parts);
        }
    }

    /// <summary>How a trainer runs this layout.</summary>
    public ParallelTrainingOptions Options(DType dtype = DType.F32, bool recompute = false, long bucketBytes = 25L << 20) =>
        new(MicroBatches, Schedule, bucketBytes, recompute, dtype, Zero, Sp, Ep > 1);

    /// <summary>Parses one layout; throws <see cref="ArgumentException"/> naming what is wrong.</summary>
    public static TrainingLayout Parse(string text)
    {
        var layout = new TrainingLayout();
        if (text.Trim() == "single") return layout;
        foreach (string part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (part == "sp")
            {
                layout = layout with { Sp = true };
                continue;
            }
            if (part is "gpipe" or "1f1b")
            {
                layout = layout with { Schedule = PipelineSchedule.Parse(part) };
                continue;
            }
            var kv = part.Split('=');
            if (kv.Length != 2 || !int.TryParse(kv[1], out int value) || value < 0)
            {
                if (kv.Length == 2 && kv[0] == "schedule")
                {
                    layout = layout with { Schedule = PipelineSchedule.Parse(kv[1]) };
                    continue;
                }
                throw new ArgumentException($"training layout '{text}': '{part}' is not name=number (e.g. dp=2,zero=1 or tp=2 or pp=2,mb=4,1f1b)");
            }
            layout = kv[0] switch
            {
                "dp" => layout with { Dp = value },
                "zero" => layout with { Zero = value },
                "tp" => layout with { Tp = value },
                "pp" => layout with { Pp = value },
                "mb" => layout with { MicroBatches = value },
                "ep" => layout with { Ep = value },
                _ => throw new ArgumentException($"training layout '{text}': unknown axis '{kv[0]}' (dp, zero, tp, pp, mb, ep, and sp, gpipe or 1f1b)"),
            };
        }
        if (layout.Ep > 1)
        {
            // Expert parallelism trains over the data-parallel ranks: ep alone gives both, and a dp must agree.
            if (layout.Dp == 1) layout = layout with { Dp = layout.Ep };
            if (layout.Dp != layout.Ep || layout.Tp > 1 || layout.Pp > 1 || layout.Zero != 0)
                throw new ArgumentException($"training layout '{text}': ep=N spreads the experts over the data-parallel ranks (ep = dp) and composes with nothing else yet: give ep=N alone (with mb=M if you like)");
        }
        if (layout.Dp < 1 || layout.Ep < 1 || layout.Tp < 1 || layout.Pp < 1 || layout.MicroBatches < 1 || layout.Zero is not (0 or 1))
            throw new ArgumentException($"training layout '{text}': degrees and micro-batches must be at least 1, zero 0 or 1");
        if (layout.Zero == 1 && layout.Dp < 2) throw new ArgumentException($"training layout '{text}': zero=1 shards over data-parallel ranks: give dp=N, N > 1");
        if (layout.Sp && layout.Tp < 2) throw new ArgumentException($"training layout '{text}': sp cuts tokens over the tensor-parallel ranks: give tp=N, N > 1");
        return layout;
    }

    /// <summary>Why this layout cannot train <paramref name="c"/> on batches of <paramref name="batch"/> rows, or null when it can.</summary>
    public string? Unfit(LlamaConfig c, int batch, int sequence)
    {
        if (batch % (Dp * MicroBatches) != 0) return $"{Name}: --batch {batch} does not split into dp × micro-batches = {Dp * MicroBatches} parts";
        if (c.Heads % Tp != 0 || c.KvHeads % Tp != 0 || c.Ffn % Tp != 0)
            return $"{Name}: tp={Tp} must divide the heads ({c.Heads}), kv heads ({c.KvHeads}) and MLP width ({c.Ffn})";
        if (Pp > c.Layers) return $"{Name}: {c.Layers} layers cannot fill pp={Pp} stages";
        if (Ep > 1 && (c.Experts == 0 || c.Experts % Ep != 0))
            return c.Experts == 0 ? $"{Name}: expert parallelism needs a mixture-of-experts model (--experts N); this one is dense"
                : $"{Name}: ep={Ep} must divide the {c.Experts} experts";
        if (Tp > 1 && c.Experts > 0)
            return $"{Name}: tensor parallelism does not split a mixture-of-experts model's experts; train it with dp, pp or ep (tp=1)";
        if (Sp && (long)batch / (Dp * MicroBatches) * sequence % Tp != 0)
            return $"{Name}: sp cuts each micro-batch's {batch / (Dp * MicroBatches) * sequence} tokens over tp={Tp} ranks: they do not divide";
        return null;
    }

    /// <summary>
    /// The payload bytes one rank sends per step, on average over ranks, by the ring formulas: DP all-reduces each
    /// rank's gradients (2(n−1)/n of them), ZeRO-1 reduce-scatters them and all-gathers the weights ((n−1)/n of each,
    /// the f32 masters and, in bf16, their copy); TP all-reduces the hidden state of its tokens twice per layer
    /// forward and twice backward (and the vocabulary-parallel embedding, head and cross-entropy's); PP sends each micro-batch's activations forward and their gradients back across
    /// every stage boundary; EP all-reduces the gradients its ranks share and all-to-alls the routed rows (at an even
    /// spread over the experts). The loss and norm all-reduce (8 bytes) and EP's row counts are left out.
    /// </summary>
    public double PredictedBytesPerRank(LlamaConfig c, int batch, int sequence, DType dtype)
    {
        int es = dtype.SizeOf(), h = c.Hidden, d = c.HeadDim;
        double replicaTokens = (double)batch / Dp * sequence, hidden = replicaTokens * h * es;
        // The parameters a rank synchronises with its replicas, on average: tensor-parallel shards split tp ways, the
        // rest whole on every tp rank; the stages' parameters disjoint. A mixture of experts has a router and E
        // experts per layer in place of the MLP, whole (tp does not split them); under ep each rank's experts are its
        // own and never summed.
        double split = c.Layers * (2.0 * c.Heads * d * h + 2.0 * c.KvHeads * d * h + (c.Experts == 0 ? 3.0 * c.Ffn * h : 0)) + (Tp > 1 ? 2.0 * c.Vocab * h : 0);
        double experts = c.Layers * (double)c.Experts * (3.0 * c.Ffn * h + h);
        double whole = c.Layers * 2.0 * h + h + (Tp > 1 ? 0 : 2.0 * c.Vocab * h) + (Ep > 1 ? c.Layers * (double)c.Experts * h : experts);
        double local = (split / Tp + whole) / Pp;
        double bytes = 0;
        if (Dp > 1)
            bytes += Zero == 1 ? (Dp - 1.0) / Dp * local * (es + 4.0 + (dtype == DType.F32 ? 0 : es)) : 2.0 * (Dp - 1) / Dp * local * es;
        // TP: four all-reduces of the hidden state per layer, one after the vocabulary-parallel embedding (first
        // stage) and one of the LM head's input gradient (last stage); the vocabulary-parallel cross-entropy's row
        // max and (sum, target logit), 12 bytes per token, on the last stage.
        double tpShare = (Tp - 1.0) / Tp;
        if (Tp > 1 && !Sp) bytes += (4.0 * c.Layers + 2.0) / Pp * 2.0 * tpShare * hidden + 2.0 * tpShare * replicaTokens * 12 / Pp;
        // TP with SP: per layer two all-gathers and two reduce-scatters forward; backward two all-gathers of the
        // gradient, two reduce-scatters and the two normed inputs gathered again; the embedding's reduce-scatter and
        // its gradient's all-gather, the head's input all-gathered twice and its gradient reduce-scattered; the
        // norms' weight gradients all-reduced once a step.
        if (Tp > 1 && Sp)
            bytes += (10.0 * c.Layers + 5.0) / Pp * tpShare * hidden + 2.0 * tpShare * replicaTokens * 12 / Pp
                     + 2.0 * tpShare * (2.0 * c.Layers + 1) / Pp * h * es;
        if (Pp > 1) bytes += 2.0 * (Pp - 1) / Pp * hidden;
        // EP: per MoE layer each of the replica's k routings per token travels to its expert's rank and back, and
        // backward sends both gradients the other way: four rows of the hidden size, and the expert id (4 bytes) once,
        // of which (ep−1)/ep leave the rank when the router spreads the routings evenly (dropped ones travel too).
        if (Ep > 1) bytes += c.Layers * (Ep - 1.0) / Ep * replicaTokens * c.ExpertsPerToken * (4.0 * h * es + 4);
        return bytes;
    }
}

/// <summary>What one layout measured over a few training steps, beside the single-device run of the same steps.</summary>
/// <param name="Layout">The layout.</param>
/// <param name="Losses">Each step's loss as rank 0 saw it.</param>
/// <param name="MaxLossError">The largest relative difference from the single-device losses.</param>
/// <param name="MemoryPerRank">Bytes the fullest rank holds: parameters, gradients, optimizer state, activations and scratch.</param>
/// <param name="ActivationsPerRank">Bytes of activations the fullest rank holds at its peak (the micro-batches in flight).</param>
/// <param name="SentPerRankPerStep">Bytes sent per rank and step, on average over ranks (headers and agreement checks included).</param>
/// <param name="PredictedPerRankPerStep">The ring formulas' payload (<see cref="TrainingLayout.PredictedBytesPerRank"/>).</param>
/// <param name="MsPerStep">Median wall time of a step.</param>
/// <param name="Bubble">A pipeline's idle fraction, 0 otherwise.</param>
/// <param name="ReplicasIdentical">Whether every data-parallel replica ended with bitwise the same weights (under expert parallelism, the weights they share: all but each rank's own experts).</param>
public sealed record TrainingLayoutResult(TrainingLayout Layout, double[] Losses, double MaxLossError, long MemoryPerRank, long ActivationsPerRank,
    double SentPerRankPerStep, double PredictedPerRankPerStep, double MsPerStep, double Bubble, bool ReplicasIdentical);

/// <summary>Runs training layouts on thread ranks sharing one device, each checked against the single-device run.</summary>
public static class TrainingLayouts
{
    /// <summary>The seed's training table: each axis alone, both pipeline schedules, and the compositions.</summary>
    public static readonly string[] All =
        ["dp=2", "dp=2,zero=1", "tp=2", "tp=2,sp", "pp=2,mb=4,gpipe", "pp=2,mb=4,1f1b", "dp=2,tp=2", "dp=2,pp=2,mb=2,1f1b", "tp=2,pp=2,mb=2,1f1b", "dp=2,tp=2,pp=2,mb=2,1f1b"];

    /// <summary>
    /// Expert parallelism's rows, which join <see cref="All"/> for a mixture-of-experts model: ep alone and with
    /// micro-batches (the only axis it composes with yet), and ep=4 where four ranks divide the experts.
    /// </summary>
    public static readonly string[] ExpertParallel = ["ep=2", "ep=2,mb=2", "ep=4"];

    /// <summary>The table for <paramref name="c"/>: <see cref="All"/>, and for a mixture-of-experts model <see cref="ExpertParallel"/> too.</summary>
    public static IEnumerable<string> AllFor(LlamaConfig c) => c.Experts == 0 ? All : All.Concat(ExpertParallel);

    /// <summary>
    /// Why <paramref name="layout"/>'s losses cannot be held to one device's on <paramref name="c"/>, or null when
    /// they can: with a capacity cap, each data-parallel replica and each micro-batch caps its own routings, so
    /// other routings drop than on one device (expert parallelism alone caps every rank's routings together, as one
    /// device does).
    /// </summary>
    public static string? Incomparable(TrainingLayout layout, LlamaConfig c) =>
        c.Experts > 0 && c.CapacityFactor > 0 && (layout.Dp > 1 && layout.Ep == 1 || layout.MicroBatches > 1)
            ? $"{layout.Name}: with --capacity {c.CapacityFactor:G} each {(layout.MicroBatches > 1 ? "micro-batch" : "data-parallel replica")} caps its own routings, " +
              "so other routings drop than on one device; compare it at --capacity 0"
            : null;

    /// <summary>
    /// Trains <paramref name="layout"/> from <paramref name="weights"/> on <paramref name="batches"/> (global B·T each)
    /// and compares its losses with <paramref name="reference"/> (the single-device losses of the same steps; null to
    /// measure the single-device run itself).
    /// </summary>
    public static TrainingLayoutResult Run(TrainingLayout layout, IDevice device, LlamaWeights weights, int batch, int sequence,
        IReadOnlyList<(int[] Inputs, int[] Targets)> batches, AdamWSettings settings, float gradClip, double[]? reference, DType dtype = DType.F32)
    {
        int ranks = layout.Ranks;
        var losses = new double[batches.Count];
        var times = new double[batches.Count];
        long memory = 0, activations = 0, sentTotal = 0;
        var replicaWeights = new byte[ranks][];
        ProcessGroup.RunOnThreadRanks(ranks, world =>
        {
            using var mesh = DeviceMesh.Create(world, layout.Tp, layout.Pp, layout.Dp);
            using var trainer = new ParallelTrainer(mesh, device, weights, batch, sequence, layout.Options(dtype));
            var t = trainer.Trainer;
            long mine = t.ParameterBytes + t.GradientBytes + trainer.OptimizerBytes + trainer.ActivationBytes + t.ScratchBytes;
            InterlockedMax(ref memory, mine);
            InterlockedMax(ref activations, trainer.ActivationBytes);
            long before = mesh.BytesSent;
            var clock = new Stopwatch();
            for (int s = 0; s < batches.Count; s++)
            {
                clock.Restart();
                var result = trainer.Step(batches[s].Inputs, batches[s].Targets, settings, s + 1, gradClip);
                device.Synchronize();
                if (world.Rank != 0) continue;
                times[s] = clock.Elapsed.TotalMilliseconds;
                losses[s] = result.Loss;
            }
            Interlocked.Add(ref sentTotal, mesh.BytesSent - before);
            // Under expert parallelism each rank's own experts differ by design: the replicas share the rest.
            replicaWeights[world.Rank] = t.Parameters.Where(p => !p.IsExpertShard).SelectMany(p => p.Value.ToBytes()).ToArray();
        }, layout.Name);
        double sent = (double)sentTotal / ranks / batches.Count;
        double error = reference is null ? 0 : losses.Zip(reference).Max(p => Math.Abs(p.First - p.Second) / Math.Abs(p.Second));
        bool identical = Enumerable.Range(0, ranks).All(r =>
            replicaWeights[r].AsSpan().SequenceEqual(replicaWeights[DeviceMesh.FirstReplicaOf(r, layout.Tp, layout.Dp)]));
        // The first step compiles kernels and touches every buffer: the median of the others is steady state.
        var steady = times.Skip(batches.Count > 1 ? 1 : 0).Order().ToArray();
        return new TrainingLayoutResult(layout, losses, error, memory, activations, sent, layout.PredictedBytesPerRank(weights.Config, batch, sequence, dtype),
            steady[steady.Length / 2], layout.Pp > 1 ? PipelineSchedule.Bubble(layout.Pp, layout.MicroBatches) : 0, identical);
    }

    private static void InterlockedMax(ref long target, long value)
    {
        long seen;
        while ((seen = Interlocked.Read(ref target)) < value && Interlocked.CompareExchange(ref target, value, seen) != seen) { }
    }
}
