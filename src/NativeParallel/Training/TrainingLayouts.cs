using System.Diagnostics;
using NativeParallel.Comm;
using NativeParallel.Devices;
using NativeParallel.Kernels.Ops;
using NativeParallel.Models;
using NativeParallel.Tensors;

namespace NativeParallel.Training;

/// <summary>
/// One parallel training layout: data parallelism (optionally with ZeRO-1), tensor parallelism, or a GPipe pipeline.
/// Text form: <c>dp=2</c>, <c>dp=2,zero=1</c>, <c>tp=2</c>, <c>pp=2,mb=4</c>.
/// </summary>
public sealed record TrainingLayout(int Dp = 1, int Zero = 0, int Tp = 1, int Pp = 1, int MicroBatches = 1)
{
    /// <summary>Ranks the layout runs on.</summary>
    public int Ranks => Dp * Tp * Pp;

    /// <summary>The text form.</summary>
    public string Name => Ranks == 1 ? "single" : Dp > 1 ? $"dp={Dp}{(Zero == 1 ? ",zero=1" : "")}" : Tp > 1 ? $"tp={Tp}" : $"pp={Pp},mb={MicroBatches}";

    /// <summary>Parses one layout; throws <see cref="ArgumentException"/> naming what is wrong.</summary>
    public static TrainingLayout Parse(string text)
    {
        var layout = new TrainingLayout();
        foreach (string part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var kv = part.Split('=');
            if (kv.Length != 2 || !int.TryParse(kv[1], out int value) || value < 0)
                throw new ArgumentException($"training layout '{text}': '{part}' is not name=number (dp=2, dp=2,zero=1, tp=2, pp=2,mb=4)");
            layout = kv[0] switch
            {
                "dp" => layout with { Dp = value },
                "zero" => layout with { Zero = value },
                "tp" => layout with { Tp = value },
                "pp" => layout with { Pp = value },
                "mb" => layout with { MicroBatches = value },
                _ => throw new ArgumentException($"training layout '{text}': unknown axis '{kv[0]}' (dp, zero, tp, pp, mb)"),
            };
        }
        if (layout.Dp < 1 || layout.Tp < 1 || layout.Pp < 1 || layout.MicroBatches < 1 || layout.Zero is not (0 or 1))
            throw new ArgumentException($"training layout '{text}': degrees and micro-batches must be at least 1, zero 0 or 1");
        if ((layout.Dp > 1 ? 1 : 0) + (layout.Tp > 1 ? 1 : 0) + (layout.Pp > 1 ? 1 : 0) > 1)
            throw new ArgumentException($"training layout '{text}': compositions of dp, tp and pp are not implemented yet; one axis at a time");
        if (layout.Zero == 1 && layout.Dp < 2) throw new ArgumentException($"training layout '{text}': zero=1 shards over data-parallel ranks: give dp=N, N > 1");
        if (layout.MicroBatches > 1 && layout.Pp < 2) throw new ArgumentException($"training layout '{text}': mb=N is a pipeline's micro-batch count: give pp=N");
        return layout;
    }

    /// <summary>
    /// The payload bytes one rank sends per step, on average over ranks, by the ring formulas: DP all-reduces the
    /// gradients (2(n−1)/n of them), ZeRO-1 reduce-scatters them and all-gathers the weights (the same volume in
    /// f32), TP all-reduces the hidden state twice per layer forward and twice backward, PP sends each micro-batch's
    /// activations forward and their gradients back across every stage boundary.
    /// </summary>
    public double PredictedBytesPerRank(LlamaConfig c, int batch, int sequence, DType dtype)
    {
        int es = dtype.SizeOf();
        double tokens = (double)batch * sequence, hidden = tokens * c.Hidden * es;
        if (Dp > 1)
        {
            double gradients = c.Parameters * (double)es, ring = 2.0 * (Dp - 1) / Dp;
            // ZeRO-1 with bf16 also all-gathers the f32 masters beside the bf16 copy.
            return Zero == 1 ? (Dp - 1.0) / Dp * (gradients + c.Parameters * 4.0 + (dtype == DType.F32 ? 0 : c.Parameters * (double)es)) : ring * gradients;
        }
        if (Tp > 1) return 4.0 * c.Layers * 2.0 * (Tp - 1) / Tp * hidden;
        if (Pp > 1) return 2.0 * (Pp - 1) / Pp * hidden;
        return 0;
    }
}

/// <summary>What one layout measured over a few training steps, beside the single-device run of the same steps.</summary>
/// <param name="Layout">The layout.</param>
/// <param name="Losses">Each step's loss as rank 0 saw it.</param>
/// <param name="MaxLossError">The largest relative difference from the single-device losses.</param>
/// <param name="MemoryPerRank">Bytes rank 0 holds: parameters, gradients, optimizer state, activations and scratch.</param>
/// <param name="SentPerRankPerStep">Bytes sent per rank and step, on average over ranks (headers and agreement checks included).</param>
/// <param name="PredictedPerRankPerStep">The ring formulas' payload (<see cref="TrainingLayout.PredictedBytesPerRank"/>).</param>
/// <param name="MsPerStep">Median wall time of a step.</param>
/// <param name="Bubble">A pipeline's idle fraction, 0 otherwise.</param>
public sealed record TrainingLayoutResult(TrainingLayout Layout, double[] Losses, double MaxLossError, long MemoryPerRank,
    double SentPerRankPerStep, double PredictedPerRankPerStep, double MsPerStep, double Bubble);

/// <summary>Runs training layouts on thread ranks sharing one device, each checked against the single-device run.</summary>
public static class TrainingLayouts
{
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
        long memory = 0, sentTotal = 0;
        ProcessGroup.RunOnThreadRanks(ranks, group =>
        {
            int r = group.Rank;
            Func<int[], int[], int, StepResult> step;
            IDisposable owner;
            LlamaTrainer trainer;
            long optimizer;
            if (layout.Dp > 1)
            {
                var replica = new DataParallelTrainer(group, device, weights, batch, sequence, zero: layout.Zero, dtype: dtype);
                (owner, trainer, optimizer) = (replica, replica.Trainer, replica.OptimizerBytes);
                step = (i, t, s) => replica.Step(i, t, settings, s, gradClip);
            }
            else if (layout.Pp > 1)
            {
                var stage = new PipelineTrainer(group, device, weights, batch, sequence, layout.MicroBatches, dtype: dtype);
                (owner, trainer, optimizer) = (stage, stage.Trainer, stage.Trainer.OptimizerBytes);
                step = (i, t, s) => stage.Step(i, t, settings, s, gradClip);
            }
            else
            {
                var single = new LlamaTrainer(device, weights, batch, sequence, dtype: dtype, tensorParallel: layout.Tp > 1 ? group : null);
                (owner, trainer, optimizer) = (single, single, single.OptimizerBytes);
                step = (i, t, s) => single.Step(i, t, settings, s, gradClip);
            }
            using (owner)
            {
                if (r == 0) memory = trainer.ParameterBytes + trainer.GradientBytes + optimizer + trainer.ActivationBytes + trainer.ScratchBytes;
                var clock = new Stopwatch();
                for (int s = 0; s < batches.Count; s++)
                {
                    clock.Restart();
                    var result = step(batches[s].Inputs, batches[s].Targets, s + 1);
                    device.Synchronize();
                    if (r != 0) continue;
                    times[s] = clock.Elapsed.TotalMilliseconds;
                    losses[s] = result.Loss;
                }
            }
            Interlocked.Add(ref sentTotal, group.BytesSent);
        }, layout.Name);
        double sent = (double)sentTotal / ranks / batches.Count;
        double error = reference is null ? 0 : losses.Zip(reference).Max(p => Math.Abs(p.First - p.Second) / Math.Abs(p.Second));
        // The first step compiles kernels and touches every buffer: the median of the others is steady state.
        var steady = times.Skip(batches.Count > 1 ? 1 : 0).Order().ToArray();
        return new TrainingLayoutResult(layout, losses, error, memory, sent, layout.PredictedBytesPerRank(weights.Config, batch, sequence, dtype),
            steady[steady.Length / 2], layout.Pp > 1 ? (layout.Pp - 1.0) / (layout.MicroBatches + layout.Pp - 1) : 0);
    }
}
