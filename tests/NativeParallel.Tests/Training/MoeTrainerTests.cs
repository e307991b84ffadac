using NativeParallel.Devices;
using NativeParallel.Kernels.Ops;
using NativeParallel.Models;
using NativeParallel.Training;
using NativeParallel.Training.Reference;
using NativeParallel.Tests.Kernels.Ops;

namespace NativeParallel.Tests.Training;

/// <summary>
/// Training a mixture-of-experts (Mixtral-style) model on one device against the float64 reference trainer, whose
/// gradients are finite differences of a plain forward with its own router and capacity rule: the loss, every
/// tensor's gradient (router and each expert's), a few AdamW steps, and the loss falling.
/// </summary>
public sealed class MoeTrainerTests
{
    // Four experts, top-2, two layers, grouped-query attention; with capacity factor 1 each expert keeps at most
    // ceil(20 routings / 4) = 5 of the 2·5 tokens' routings, so the seeds below drop some and keep most.
    internal static readonly LlamaConfig TinyMoe = TrainerTests.Tiny with { Experts = 4, ExpertsPerToken = 2, Ffn = 8, CapacityFactor = 1.0 };

    private const int Batch = 2, Sequence = 5;

    public static TheoryData<string, double> DevicesAndCapacity => new() { { "cpu", 1.0 }, { "emu", 1.0 }, { "cpu", 0.0 } };

    private static IDevice Open(string name)
    {
        if (name == "emu") Hardware.RequireEmu();
        return name == "cpu" ? CpuDevice.Instance : EmuDevices.Shared;
    }

    [Theory]
    [MemberData(nameof(DevicesAndCapacity))]
    public void GradientsMatchFiniteDifferencesOfTheFloat64Model(string deviceName, double capacityFactor)
    {
        var weights = new LlamaWeights(TinyMoe with { CapacityFactor = capacityFactor }, seed: 5);
        var (inputs, targets) = TrainerTests.RandomBatch(11, TinyMoe.Vocab, Batch * Sequence);
        var reference = new ReferenceTrainer(weights);
        var expected = reference.Gradient(inputs, targets, Batch, Sequence);

        using var trainer = new LlamaTrainer(Open(deviceName), weights, Batch, Sequence);
        double loss = trainer.Forward(inputs, targets);
        trainer.Backward();
        Assert.Equal(reference.Loss(reference.Theta, inputs, targets, Batch, Sequence), loss, 1e-5);
        // The capacity rule must have both dropped and kept routings here, or none at all without a factor.
        if (capacityFactor > 0) Assert.InRange(trainer.DroppedRoutings, 1, Batch * Sequence * TinyMoe.ExpertsPerToken * TinyMoe.Layers / 2);
        else Assert.Equal(0, trainer.DroppedRoutings);

        var got = trainer.Parameters.SelectMany(p => p.Grad.ToFloats()).Select(v => (double)v).ToArray();
        Assert.Equal(expected.Length, got.Length);
        // The router and each expert are tensors of their own there.
        TrainerTests.AssertGradientsMatch(got, expected, trainer, reference, deviceName);
    }

    [Fact]
    public void Bf16AndRecomputeTrainTheMoeModelToo()
    {
        var weights = new LlamaWeights(TinyMoe, seed: 5);
        var (inputs, targets) = TrainerTests.RandomBatch(11, TinyMoe.Vocab, Batch * Sequence);
        var reference = new ReferenceTrainer(weights);
        var expected = reference.Gradient(inputs, targets, Batch, Sequence);
        double[] Gradients(LlamaTrainer t) => t.Parameters.SelectMany(p => p.Grad.ToFloats()).Select(v => (double)v).ToArray();

        // bf16 activations and gradients: within bf16's bound of the float64 model (the dense model's bound).
        using var bf16 = new LlamaTrainer(CpuDevice.Instance, weights, Batch, Sequence, dtype: NativeParallel.Tensors.DType.BF16);
        bf16.Forward(inputs, targets);
        bf16.Backward();
        double error = FiniteDifference.RelativeError(Gradients(bf16), expected);
        Assert.True(error <= 3e-2, $"whole-model bf16 MoE gradient: relative error {error:E2} against the float64 model (bound 3e-2)");

        // Recomputation reruns each MoE layer's routing and experts before its backward: the same gradients bit for bit.
        using var kept = new LlamaTrainer(CpuDevice.Instance, weights, Batch, Sequence);
        using var recomputed = new LlamaTrainer(CpuDevice.Instance, weights, Batch, Sequence, recompute: true);
        Assert.Equal(kept.Forward(inputs, targets), recomputed.Forward(inputs, targets));
        kept.Backward();
        recomputed.Backward();
        Assert.Equal(Gradients(kept), Gradients(recomputed));
    }

    [Fact]
    public void StepsFollowTheFloat64ReferenceTrainer() => TrainerTests.StepsFollowTheReferenceTrainer(TinyMoe, 4);

    [Fact]
    public void LossFallsOverTwentySteps()
    {
        var weights = new LlamaWeights(TinyMoe, seed: 7);
        using var trainer = new LlamaTrainer(CpuDevice.Instance, weights, Batch, Sequence);
        var settings = new AdamWSettings(1e-2f, 0.9f, 0.95f, 1e-8f, 0.0f);
        // Two batches in turn: the model can learn them, and the loss must fall well below where it starts.
        var batches = new[] { TrainerTests.RandomBatch(40, TinyMoe.Vocab, Batch * Sequence), TrainerTests.RandomBatch(42, TinyMoe.Vocab, Batch * Sequence) };
        var losses = new double[20];
        for (int step = 1; step <= 20; step++)
        {
            var (inputs, targets) = batches[step % 2];
            losses[step - 1] = trainer.Step(inputs, targets, settings, step, gradClip: 1f).Loss;
        }
        double first = (losses[0] + losses[1]) / 2, last = (losses[18] + losses[19]) / 2;
        Assert.True(last < 0.6 * first, $"MoE training loss went from {first:F4} to {last:F4} over 20 steps: {string.Join(", ", losses.Select(l => l.ToString("F3")))}");
    }

    [Theory]
    [InlineData("dp=2")]
    [InlineData("pp=2,mb=2,1f1b")]
    public void DataAndPipelineParallelismTrainTheMoeModelOfOneDevice(string text)
    {
        // Without a capacity cap the routing of a token does not depend on which rank or micro-batch holds it.
        var layout = TrainingLayout.Parse(text);
        var weights = new LlamaWeights(TinyMoe with { CapacityFactor = 0 }, seed: 12);
        const int batch = 4;
        var settings = new AdamWSettings(3e-3f, 0.9f, 0.95f, 1e-8f, 0.1f);
        var batches = Enumerable.Range(0, 3).Select(i => TrainerTests.RandomBatch(700 + (ulong)i, TinyMoe.Vocab, batch * Sequence)).ToArray();
        using var single = new LlamaTrainer(CpuDevice.Instance, weights, batch, Sequence);
        var expected = batches.Select((b, i) => single.Step(b.Inputs, b.Targets, settings, i + 1, 1f)).ToArray();
        var full = single.Parameters.ToDictionary(p => p.Name, p => p.Value.ToFloats());
        var results = new StepResult[layout.Ranks][];
        var parts = new (string Name, float[] Values)[layout.Ranks][];
        NativeParallel.Comm.ProcessGroup.RunOnThreadRanks(layout.Ranks, world =>
        {
            using var mesh = NativeParallel.Comm.DeviceMesh.Create(world, layout.Tp, layout.Pp, layout.Dp);
            using var trainer = new ParallelTrainer(mesh, CpuDevice.Instance, weights, batch, Sequence, layout.Options());
            results[world.Rank] = batches.Select((b, i) => trainer.Step(b.Inputs, b.Targets, settings, i + 1, 1f)).ToArray();
            parts[world.Rank] = trainer.Trainer.Parameters.Select(p => (p.Name, p.Value.ToFloats())).ToArray();
        }, timeout: TimeSpan.FromSeconds(60));
        for (int s = 0; s < batches.Length; s++)
            Assert.True(Math.Abs(results[0][s].Loss - expected[s].Loss) <= 1e-5 * expected[s].Loss, $"{text} step {s + 1}: loss {results[0][s].Loss} vs one device {expected[s].Loss}");
        foreach (var rank in parts)
            foreach (var (name, values) in rank)
            {
                double error = FiniteDifference.RelativeError(Array.ConvertAll(values, v => (double)v), Array.ConvertAll(full[name], v => (double)v));
                Assert.True(error <= 1e-5, $"{text} {name}: relative error {error:E2} against the single-device weights");
            }
    }

    [Theory]
    [InlineData("ep=2", 1.0)]
    [InlineData("ep=2", 0.0)]
    [InlineData("ep=2,mb=2", 0.0)] // gradient accumulation: each micro-batch's all-to-alls, forward and backward
    public void ExpertParallelTrainingGivesTheLossesAndWeightsOfOneDevice(string text, double capacityFactor)
    {
        // ep=2: each rank trains half the batch's rows and two of the four experts, on every rank's routings. The
        // capacity counts every rank's routings and an expert takes its arrivals by sending rank, then slot: the
        // single device's slot order over the whole batch, so the same routings drop.
        var config = TinyMoe with { CapacityFactor = capacityFactor };
        var weights = new LlamaWeights(config, seed: 14);
        const int batch = 4;
        var settings = new AdamWSettings(3e-3f, 0.9f, 0.95f, 1e-8f, 0.1f);
        var batches = Enumerable.Range(0, 3).Select(i => TrainerTests.RandomBatch(800 + (ulong)i, config.Vocab, batch * Sequence)).ToArray();
        using var single = new LlamaTrainer(CpuDevice.Instance, weights, batch, Sequence);
        var expected = new StepResult[batches.Length];
        long singleDropped = 0;
        for (int i = 0; i < batches.Length; i++)
        {
            expected[i] = single.Step(batches[i].Inputs, batches[i].Targets, settings, i + 1, 1f);
            singleDropped += single.DroppedRoutings;
        }
        var full = single.Parameters.ToDictionary(p => p.Name, p => p.Value.ToFloats());

        var layout = TrainingLayout.Parse(text);
        var results = new StepResult[2][];
        var parts = new (string Name, bool Expert, float[] Values)[2][];
        var dropped = new long[2];
        NativeParallel.Comm.ProcessGroup.RunOnThreadRanks(2, world =>
        {
            using var mesh = NativeParallel.Comm.DeviceMesh.Create(world, dp: 2);
            using var trainer = new ParallelTrainer(mesh, CpuDevice.Instance, weights, batch, Sequence, layout.Options());
            results[world.Rank] = new StepResult[batches.Length];
            for (int i = 0; i < batches.Length; i++)
            {
                results[world.Rank][i] = trainer.Step(batches[i].Inputs, batches[i].Targets, settings, i + 1, 1f);
                dropped[world.Rank] += trainer.Trainer.DroppedRoutings;
            }
            parts[world.Rank] = trainer.Trainer.Parameters.Select(p => (p.Name, p.IsExpertShard, p.Value.ToFloats())).ToArray();
        }, timeout: TimeSpan.FromSeconds(60));

        Assert.Equal(singleDropped, dropped.Sum());
        if (capacityFactor > 0) Assert.True(singleDropped > 0, "the capacity must drop some routings here");
        for (int s = 0; s < batches.Length; s++)
            for (int r = 0; r < 2; r++)
            {
                Assert.True(Math.Abs(results[r][s].Loss - expected[s].Loss) <= 1e-5 * expected[s].Loss, $"{text} rank {r} step {s + 1}: loss {results[r][s].Loss} vs one device {expected[s].Loss}");
                Assert.True(Math.Abs(results[r][s].GradNorm - expected[s].GradNorm) <= 1e-5 * expected[s].GradNorm,
                    $"{text} rank {r} step {s + 1}: gradient norm {results[r][s].GradNorm} vs one device {expected[s].GradNorm}");
            }
        for (int r = 0; r < 2; r++)
        {
            // Rank r holds experts 2r and 2r + 1 of each layer, and nothing of the others'.
            var experts = parts[r].Where(p => p.Expert).Select(p => p.Name).ToArray();
            Assert.Equal(TinyMoe.Layers * 2 * 3, experts.Length);
            Assert.All(experts, name => Assert.Contains($"experts.{2 * r + (name.Contains($"experts.{2 * r}.") ? 0 : 1)}.", name));
            foreach (var (name, _, values) in parts[r])
            {
                double error = FiniteDifference.RelativeError(Array.ConvertAll(values, v => (double)v), Array.ConvertAll(full[name], v => (double)v));
                Assert.True(error <= 1e-5, $"{text} rank {r} {name}: relative error {error:E2} against the single-device weights");
            }
        }
        // What the ranks share stays bitwise equal: the same summed gradients, the same update.
        var shared = parts[1].Where(p => !p.Expert).ToDictionary(p => p.Name, p => p.Values);
        foreach (var (name, expert, values) in parts[0])
            if (!expert) Assert.True(values.AsSpan().SequenceEqual(shared[name]), $"{text}: {name} differs between the ranks");
    }

    // bf16 too at ep=2: the checkpoint keeps the f32 masters, and the resumed run rounds its bf16 copy from them.
    public static TheoryData<string, string, string> CheckpointLayouts => new()
    {
        { "ep=2", "ep=2", "f32" }, { "ep=2", "single", "f32" }, { "single", "ep=2", "f32" }, { "ep=2", "ep=2", "bf16" },
    };

    [Theory]
    [MemberData(nameof(CheckpointLayouts))]
    public void ACheckpointResumesAndContinuesTheUninterruptedRun(string savedAt, string resumedAt, string dtypeName)
    {
        // Six steps straight through in the saving layout, with a checkpoint after step 3; steps 4..6 again from that
        // checkpoint in the resuming layout. The same layout must continue bit for bit (losses, norms, the final
        // weights and AdamW moments); another layout to the tolerance every layout keeps against one device. The
        // capacity cap drops routings here, so an expert that lost its moments or its routings shows.
        var weights = new LlamaWeights(TinyMoe, seed: 15);
        var dtype = NativeParallel.Tensors.DTypes.Parse(dtypeName);
        const int batch = 4, saveAfter = 3;
        var batches = Enumerable.Range(0, 6).Select(i => TrainerTests.RandomBatch(900 + (ulong)i, TinyMoe.Vocab, batch * Sequence)).ToArray();
        string folder = Directory.CreateTempSubdirectory("np-moe-resume-").FullName;
        try
        {
            string checkpoint = Path.Combine(folder, "step3"), straightEnd = Path.Combine(folder, "straight"), resumedEnd = Path.Combine(folder, "resumed");
            var straight = TrainInLayout(savedAt, dtype, weights, batches, batch, firstStep: 0, resumeFrom: null, (saveAfter, checkpoint), straightEnd);
            Assert.True(straight.Dropped > 0, "the capacity must drop some routings here");
            // The Hugging Face folder has no capacity factor (Mixtral's config has none): the resuming run gives it again.
            var saved = HuggingFaceCheckpoint.Load(checkpoint);
            var resumedWeights = new LlamaWeights(saved.Config with { CapacityFactor = TinyMoe.CapacityFactor }, saved.Embedding, saved.Layers, saved.FinalNorm, saved.LmHead);
            var resumed = TrainInLayout(resumedAt, dtype, resumedWeights, batches, batch, firstStep: saveAfter, resumeFrom: checkpoint, null, resumedEnd);

            bool bitwise = savedAt == resumedAt;
            string what = $"{dtypeName} saved at {savedAt} after step {saveAfter}, resumed at {resumedAt}";
            for (int s = saveAfter; s < batches.Length; s++)
            {
                var (expected, got) = (straight.Results[s], resumed.Results[s - saveAfter]);
                if (bitwise)
                {
                    Assert.True(expected.Loss == got.Loss && expected.GradNorm == got.GradNorm,
                        $"{what}, step {s + 1}: loss {got.Loss:R} and norm {got.GradNorm:R} against the uninterrupted run's {expected.Loss:R} and {expected.GradNorm:R}");
                    continue;
                }
                Assert.True(Math.Abs(got.Loss - expected.Loss) <= 1e-5 * expected.Loss, $"{what}, step {s + 1}: loss {got.Loss} vs the uninterrupted run's {expected.Loss}");
                Assert.True(Math.Abs(got.GradNorm - expected.GradNorm) <= 1e-5 * expected.GradNorm,
                    $"{what}, step {s + 1}: gradient norm {got.GradNorm} vs the uninterrupted run's {expected.GradNorm}");
            }
            // Every tensor of the two final checkpoints, each expert's on its own: weights, and both moments.
            foreach (string file in new[] { "model.safetensors", Path.Combine("training", "optimizer.safetensors") })
            {
                var a = Safetensors.Read(Path.Combine(straightEnd, file));
                var b = Safetensors.Read(Path.Combine(resumedEnd, file));
                Assert.Equal(a.Keys.Order(), b.Keys.Order());
                foreach (var (name, entry) in a)
                {
                    if (bitwise)
                    {
                        Assert.True(entry.Values.AsSpan().SequenceEqual(b[name].Values), $"{what}: {name} after step 6 differs from the uninterrupted run's");
                        continue;
                    }
                    double error = FiniteDifference.RelativeError(Array.ConvertAll(b[name].Values, v => (double)v), Array.ConvertAll(entry.Values, v => (double)v));
                    Assert.True(error <= 1e-5, $"{what}: {name} after step 6 is {error:E2} from the uninterrupted run's (bound 1e-5)");
                }
            }
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    // Trains `layoutText` on thread ranks over batches[firstStep..] (AdamW step numbers continuing from firstStep),
    // after the checkpoint's moments when resuming; writes a checkpoint after step `checkpoint.After` and another at
    // the end. Returns rank 0's step results and the routings dropped over the run by every rank.
    private static (StepResult[] Results, long Dropped) TrainInLayout(string layoutText, NativeParallel.Tensors.DType dtype, LlamaWeights weights, (int[] Inputs, int[] Targets)[] batches, int batch,
        int firstStep, string? resumeFrom, (int After, string Folder)? checkpoint, string endFolder)
    {
        var layout = TrainingLayout.Parse(layoutText);
        var settings = new AdamWSettings(3e-3f, 0.9f, 0.95f, 1e-8f, 0.1f);
        var results = new StepResult[batches.Length - firstStep];
        long dropped = 0;
        NativeParallel.Comm.ProcessGroup.RunOnThreadRanks(layout.Ranks, world =>
        {
            using var mesh = NativeParallel.Comm.DeviceMesh.Create(world, layout.Tp, layout.Pp, layout.Dp);
            using var trainer = new ParallelTrainer(mesh, CpuDevice.Instance, weights, batch, Sequence, layout.Options(dtype));
            if (resumeFrom is not null) TrainingCheckpoint.LoadMoments(resumeFrom, trainer);
            for (int s = firstStep; s < batches.Length; s++)
            {
                var result = trainer.Step(batches[s].Inputs, batches[s].Targets, settings, s + 1, 1f);
                Interlocked.Add(ref dropped, trainer.Trainer.DroppedRoutings);
                if (world.Rank == 0) results[s - firstStep] = result;
                // The data position is the CLI's business; here the batches are indexed by step.
                if (checkpoint is { } c && s + 1 == c.After) TrainingCheckpoint.Save(c.Folder, trainer, new TrainingCheckpoint.State(s + 1, 0, 0, batch, Sequence));
            }
            TrainingCheckpoint.Save(endFolder, trainer, new TrainingCheckpoint.State(batches.Length, 0, 0, batch, Sequence));
        }, timeout: TimeSpan.FromSeconds(60));
        return (results, dropped);
    }

    [Fact]
    public void TensorParallelismIsRefusedWithItsReason()
    {
        var weights = new LlamaWeights(TinyMoe, seed: 3);
        var errors = new string[2];
        NativeParallel.Comm.ProcessGroup.RunOnThreadRanks(2, world =>
        {
            using var mesh = NativeParallel.Comm.DeviceMesh.Create(world, tp: 2);
            errors[world.Rank] = Assert.Throws<NotSupportedException>(() => new ParallelTrainer(mesh, CpuDevice.Instance, weights, 2, Sequence)).Message;
        });
        Assert.All(errors, e => Assert.Contains("does not split a mixture-of-experts model's experts", e));
        Assert.Contains("does not split", TrainingLayout.Parse("tp=2").Unfit(TinyMoe, 2, Sequence));
    }

    [Theory]
    [MemberData(nameof(TrainerTests.Devices), MemberType = typeof(TrainerTests))]
    public void TrainingAndInferenceRunTheSameMoeLayersToTheSameLoss(string deviceName)
    {
        // Inference on one device has no capacity limit: neither has the trainer at factor 0.
        var (trained, served) = TrainerTests.TrainedAndServedLoss(Open(deviceName), new LlamaWeights(TinyMoe with { CapacityFactor = 0 }, seed: 8));
        Assert.True(Math.Abs(trained - served) <= 1e-5 * Math.Abs(served),
            $"on {deviceName}: the MoE trainer's loss {trained:R} and the loss of the served model's logits {served:R} differ");
    }
}
