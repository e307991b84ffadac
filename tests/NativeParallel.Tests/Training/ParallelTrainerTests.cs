using NativeParallel.Comm;
using NativeParallel.Devices;
using NativeParallel.Kernels.Ops;
using NativeParallel.Models;
using NativeParallel.Training;

namespace NativeParallel.Tests.Training;

/// <summary>
/// Every training layout on thread ranks (data, tensor and pipeline parallelism alone and composed, both pipeline
/// schedules, ZeRO-1, gradient accumulation) against the single-device trainer on the same global batches: each
/// step's loss and gradient norm, the final weights of every rank's part, and data-parallel replicas bitwise equal.
/// </summary>
public sealed class ParallelTrainerTests
{
    private const int Sequence = 5;
    private static readonly AdamWSettings Settings = new(3e-3f, 0.9f, 0.95f, 1e-8f, 0.1f);

    public static TheoryData<string, int, int, long> Layouts => new()
    {
        // layout, layers, global batch, bucket bytes
        { "dp=2", 2, 4, 25L << 20 },
        { "dp=4", 2, 4, 25L << 20 },
        { "dp=2", 2, 4, 1024 },
        { "dp=2,zero=1", 2, 4, 25L << 20 },
        { "dp=3,zero=1", 2, 12, 25L << 20 },
        { "tp=2", 2, 4, 25L << 20 },
        { "tp=2,sp", 2, 4, 25L << 20 },
        { "dp=2,tp=2,sp,pp=2,mb=2,1f1b", 2, 8, 1024 },
        { "mb=2", 2, 4, 25L << 20 },
        { "pp=2,gpipe", 2, 4, 25L << 20 },
        { "pp=2,mb=4,gpipe", 2, 4, 25L << 20 },
        { "pp=3,mb=2,gpipe", 3, 4, 25L << 20 },
        { "pp=2,mb=4,1f1b", 3, 4, 25L << 20 },
        { "pp=3,mb=4,1f1b", 3, 4, 25L << 20 },
        { "pp=4,mb=8,1f1b", 4, 8, 25L << 20 },
        { "dp=4,tp=2", 2, 8, 25L << 20 },
        { "dp=2,tp=2", 2, 4, 25L << 20 },
        { "dp=2,pp=2,mb=2,1f1b", 2, 4, 1024 },
        { "tp=2,pp=2,mb=2,1f1b", 2, 4, 25L << 20 },
        { "dp=2,tp=2,pp=2,mb=2,1f1b", 2, 4, 25L << 20 },
        { "dp=2,zero=1,tp=2,pp=2,mb=2,gpipe", 2, 4, 25L << 20 },
        { "dp=2,zero=1,tp=2,sp,pp=2,mb=2,gpipe", 2, 8, 25L << 20 },
    };

    [Theory]
    [MemberData(nameof(Layouts))]
    public void EveryLayoutTrainsTheModelOfOneDevice(string text, int layers, int batch, long bucketBytes)
    {
        var layout = TrainingLayout.Parse(text);
        var config = TrainerTests.Tiny with { Layers = layers };
        var weights = new LlamaWeights(config, seed: 12);
        var batches = Enumerable.Range(0, 4).Select(i => TrainerTests.RandomBatch(700 + (ulong)i, config.Vocab, batch * Sequence)).ToArray();
        using var single = new LlamaTrainer(CpuDevice.Instance, weights, batch, Sequence);
        var expected = batches.Select((b, i) => single.Step(b.Inputs, b.Targets, Settings, i + 1, 1f)).ToArray();
        var full = single.Parameters.ToDictionary(p => p.Name, p => p.Value.ToFloats());

        var results = new StepResult[layout.Ranks][];
        var masters = new byte[layout.Ranks][];
        var parts = new (string Name, ShardPlacement Placement, float[] Values)[layout.Ranks][];
        var buckets = new int[layout.Ranks];
        var optimizer = new long[layout.Ranks];
        ProcessGroup.RunOnThreadRanks(layout.Ranks, world =>
        {
            using var mesh = DeviceMesh.Create(world, layout.Tp, layout.Pp, layout.Dp);
            using var trainer = new ParallelTrainer(mesh, CpuDevice.Instance, weights, batch, Sequence, layout.Options(bucketBytes: bucketBytes));
            int r = world.Rank;
            results[r] = batches.Select((b, i) => trainer.Step(b.Inputs, b.Targets, Settings, i + 1, 1f)).ToArray();
            masters[r] = trainer.Trainer.Masters.ToBytes();
            parts[r] = trainer.Trainer.Parameters.Select(p => (p.Name, p.Placement, p.Value.ToFloats())).ToArray();
            buckets[r] = trainer.BucketsLastStep;
            optimizer[r] = trainer.OptimizerBytes;
        }, timeout: TimeSpan.FromSeconds(60));

        for (int s = 0; s < batches.Length; s++)
            for (int r = 0; r < layout.Ranks; r++)
            {
                Assert.True(Math.Abs(results[r][s].Loss - expected[s].Loss) <= 1e-5 * expected[s].Loss,
                    $"{text} rank {r} step {s + 1}: loss {results[r][s].Loss} vs one device {expected[s].Loss}");
                Assert.True(Math.Abs(results[r][s].GradNorm - expected[s].GradNorm) <= 1e-5 * expected[s].GradNorm,
                    $"{text} rank {r} step {s + 1}: gradient norm {results[r][s].GradNorm} vs one device {expected[s].GradNorm}");
            }
        // Every element of the model is held somewhere, equal to the single-device value after the steps.
        var covered = full.ToDictionary(kv => kv.Key, kv => new bool[kv.Value.Length]);
        for (int r = 0; r < layout.Ranks; r++)
            foreach (var (name, placement, values) in parts[r])
            {
                var want = new double[values.Length];
                for (int i = 0; i < values.Length; i++)
                {
                    long at = placement.FullIndex(i);
                    want[i] = full[name][at];
                    covered[name][at] = true;
                }
                double error = Kernels.Ops.FiniteDifference.RelativeError(Array.ConvertAll(values, v => (double)v), want);
                Assert.True(error <= 1e-5, $"{text} rank {r} {name}: relative error {error:E2} against the single-device weights");
            }
        foreach (var (name, seen) in covered) Assert.True(seen.All(b => b), $"{text}: part of {name} is held by no rank");
        // Data-parallel replicas (the same tensor and pipeline coordinates) stay bitwise identical.
        for (int r = 0; r < layout.Ranks; r++)
        {
            int replica0 = DeviceMesh.FirstReplicaOf(r, layout.Tp, layout.Dp);
            Assert.True(masters[r].AsSpan().SequenceEqual(masters[replica0]), $"{text}: rank {r}'s weights differ from its replica on rank {replica0}");
        }
        if (layout.Dp > 1 && layout.Zero == 0 && bucketBytes < 4096)
            Assert.True(buckets[0] > 3, $"{text}: expected several buckets of {bucketBytes} bytes, got {buckets[0]}");
        if (layout.Zero == 1)
        {
            long whole = 8L * parts[0].Sum(p => p.Values.Length);
            Assert.True(optimizer[0] <= whole / layout.Dp + 8L * layout.Dp, $"{text}: a ZeRO-1 rank holds {optimizer[0]} bytes of moments, its part's are {whole}");
        }
    }

    [Theory]
    [InlineData("dp=2,zero=1,tp=2,sp,pp=2,mb=2,1f1b")]
    [InlineData("dp=2,tp=2,pp=2,mb=2,gpipe")]
    public void Bf16LayoutsTrainTheModelOfOneBf16DeviceWithinItsBound(string text)
    {
        // bf16 rounds differently when sums are cut differently (tensor-parallel partial sums, micro-batches): the
        // losses agree within bf16's bound, and data-parallel replicas still end bitwise equal.
        var layout = TrainingLayout.Parse(text);
        const int batch = 8;
        var weights = new LlamaWeights(TrainerTests.Tiny, seed: 17);
        var batches = Enumerable.Range(0, 3).Select(i => TrainerTests.RandomBatch(600 + (ulong)i, TrainerTests.Tiny.Vocab, batch * Sequence)).ToArray();
        using var single = new LlamaTrainer(CpuDevice.Instance, weights, batch, Sequence, dtype: global::NativeParallel.Tensors.DType.BF16);
        var expected = batches.Select((b, i) => single.Step(b.Inputs, b.Targets, Settings, i + 1, 1f).Loss).ToArray();
        var losses = new double[layout.Ranks][];
        var masters = new byte[layout.Ranks][];
        ProcessGroup.RunOnThreadRanks(layout.Ranks, world =>
        {
            using var mesh = DeviceMesh.Create(world, layout.Tp, layout.Pp, layout.Dp);
            using var trainer = new ParallelTrainer(mesh, CpuDevice.Instance, weights, batch, Sequence, layout.Options(global::NativeParallel.Tensors.DType.BF16));
            losses[world.Rank] = batches.Select((b, i) => trainer.Step(b.Inputs, b.Targets, Settings, i + 1, 1f).Loss).ToArray();
            masters[world.Rank] = trainer.Trainer.Working.ToBytes();
        }, timeout: TimeSpan.FromSeconds(60));
        for (int s = 0; s < expected.Length; s++)
            Assert.True(Math.Abs(losses[0][s] - expected[s]) <= 1e-2 * expected[s], $"bf16 {text} step {s + 1}: loss {losses[0][s]} vs one device {expected[s]}");
        for (int r = 0; r < layout.Ranks; r++)
        {
            int replica0 = DeviceMesh.FirstReplicaOf(r, layout.Tp, layout.Dp);
            Assert.True(masters[r].AsSpan().SequenceEqual(masters[replica0]), $"bf16 {text}: rank {r}'s weights differ from its replica on rank {replica0}");
        }
    }

    [Fact]
    public void OneForwardOneBackwardHoldsFewerActivationsThanGPipe()
    {
        var weights = new LlamaWeights(TrainerTests.Tiny, seed: 3);
        var held = new Dictionary<string, long>();
        foreach (string text in new[] { "pp=2,mb=4,gpipe", "pp=2,mb=4,1f1b" })
        {
            var layout = TrainingLayout.Parse(text);
            long[] bytes = new long[2];
            ProcessGroup.RunOnThreadRanks(2, world =>
            {
                using var mesh = DeviceMesh.Create(world, pp: 2);
                using var trainer = new ParallelTrainer(mesh, CpuDevice.Instance, weights, 4, Sequence, layout.Options());
                bytes[world.Rank] = trainer.Trainer.ActivationBytes;
            });
            held[text] = bytes[0];
        }
        // Stage 0 keeps 4 micro-batches under GPipe, 2 (= p) under 1F1B.
        Assert.Equal(2 * held["pp=2,mb=4,1f1b"], held["pp=2,mb=4,gpipe"]);
    }

    [Fact]
    public void SequenceParallelismKeepsLessOfTheResidualStream()
    {
        var weights = new LlamaWeights(TrainerTests.Tiny, seed: 4);
        var held = new Dictionary<bool, long>();
        foreach (bool sp in new[] { false, true })
        {
            long[] bytes = new long[2];
            ProcessGroup.RunOnThreadRanks(2, world =>
            {
                using var mesh = DeviceMesh.Create(world, tp: 2);
                using var trainer = new ParallelTrainer(mesh, CpuDevice.Instance, weights, 4, Sequence, new ParallelTrainingOptions(SequenceParallel: sp));
                bytes[world.Rank] = trainer.Trainer.ActivationBytes;
            });
            held[sp] = bytes[0];
        }
        // Per layer the input, mid and both norms' outputs (4 of the hidden size) are halved; the rest is already split by heads.
        int tokens = 4 * Sequence, hidden = TrainerTests.Tiny.Hidden;
        long saved = (4L * TrainerTests.Tiny.Layers + 2) * tokens / 2 * hidden * 4;
        Assert.Equal(held[false] - saved, held[true]);
    }

    [Fact]
    public void ACheckpointSavedInOneLayoutResumesInAnother()
    {
        // Saved at tp=2,pp=2 (shards and stages merged into one folder), resumed at dp=2 with ZeRO-1 (moments cut
        // into shards again): the losses continue those of one device.
        const int batch = 4;
        var config = TrainerTests.Tiny with { Layers = 2 };
        var weights = new LlamaWeights(config, seed: 21);
        var batches = Enumerable.Range(0, 4).Select(i => TrainerTests.RandomBatch(500 + (ulong)i, config.Vocab, batch * Sequence)).ToArray();
        using var single = new LlamaTrainer(CpuDevice.Instance, weights, batch, Sequence);
        var expected = batches.Select((b, i) => single.Step(b.Inputs, b.Targets, Settings, i + 1, 1f).Loss).ToArray();
        string folder = Directory.CreateTempSubdirectory("np-layouts-").FullName;
        try
        {
            var state = new TrainingCheckpoint.State(2, 0, 0, batch, Sequence);
            ProcessGroup.RunOnThreadRanks(4, world =>
            {
                using var mesh = DeviceMesh.Create(world, tp: 2, pp: 2);
                using var trainer = new ParallelTrainer(mesh, CpuDevice.Instance, weights, batch, Sequence, TrainingLayout.Parse("tp=2,pp=2,mb=2").Options());
                for (int i = 0; i < 2; i++) trainer.Step(batches[i].Inputs, batches[i].Targets, Settings, i + 1, 1f);
                TrainingCheckpoint.Save(folder, trainer, state);
            });
            var saved = HuggingFaceCheckpoint.Load(folder);
            var resumed = new double[2][];
            ProcessGroup.RunOnThreadRanks(2, world =>
            {
                using var mesh = DeviceMesh.Create(world, dp: 2);
                using var trainer = new ParallelTrainer(mesh, CpuDevice.Instance, saved, batch, Sequence, TrainingLayout.Parse("dp=2,zero=1").Options());
                TrainingCheckpoint.LoadMoments(folder, trainer);
                resumed[world.Rank] = Enumerable.Range(2, 2).Select(i => trainer.Step(batches[i].Inputs, batches[i].Targets, Settings, i + 1, 1f).Loss).ToArray();
            });
            for (int i = 0; i < 2; i++)
                Assert.True(Math.Abs(resumed[0][i] - expected[2 + i]) <= 1e-5 * expected[2 + i],
                    $"step {3 + i} after resuming tp=2,pp=2 as dp=2,zero=1: loss {resumed[0][i]} vs one device {expected[2 + i]}");
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [Theory]
    [InlineData("dp=2")]
    [InlineData("dp=2,zero=1")]
    [InlineData("tp=2,sp,pp=2,mb=2,1f1b")]
    public void ThreadRanksSharingTheEmulatedDeviceTrainTheModelOfTheCpu(string text)
    {
        // The kernel-device path: collectives and transfers on emulated-device tensors, every training kernel's CUDA
        // source, against the CPU run of the same global batches. The device defers every stream but the default
        // one, so a gradient bucket reduced on the communication stream without its events would train wrong.
        Hardware.RequireEmu();
        using var device = new EmuDevice { StreamOrder = EmuStreamOrder.Deferred };
        const int batch = 4;
        var layout = TrainingLayout.Parse(text);
        var weights = new LlamaWeights(TrainerTests.Tiny, seed: 13);
        var batches = Enumerable.Range(0, 2).Select(i => TrainerTests.RandomBatch(800 + (ulong)i, TrainerTests.Tiny.Vocab, batch * Sequence)).ToArray();
        using var single = new LlamaTrainer(CpuDevice.Instance, weights, batch, Sequence);
        var expected = batches.Select((b, i) => single.Step(b.Inputs, b.Targets, Settings, i + 1, 1f).Loss).ToArray();
        var losses = new double[layout.Ranks][];
        long directInSubGroup = 0;
        ProcessGroup.RunOnThreadRanks(layout.Ranks, world =>
        {
            using var mesh = DeviceMesh.Create(world, layout.Tp, layout.Pp, layout.Dp);
            using var trainer = new ParallelTrainer(mesh, device, weights, batch, Sequence, layout.Options(bucketBytes: 2048));
            losses[world.Rank] = batches.Select((b, i) => trainer.Step(b.Inputs, b.Targets, Settings, i + 1, 1f).Loss).ToArray();
            if (world.Rank == 0) directInSubGroup = layout.Tp > 1 ? mesh.Tp.DeviceDirectCalls : mesh.Dp.DeviceDirectCalls;
        }, timeout: TimeSpan.FromSeconds(120));
        // The split groups' collectives on device tensors went device-direct (peers' buffers), not through the host.
        Assert.True(directInSubGroup > 0, $"emu {text}: no collective of the tensor- or data-parallel group went device-direct");
        for (int s = 0; s < expected.Length; s++)
            Assert.True(Math.Abs(losses[0][s] - expected[s]) <= 1e-5 * expected[s], $"emu {text} step {s + 1}: loss {losses[0][s]} vs cpu {expected[s]}");
        for (int r = 1; r < layout.Ranks; r++) Assert.Equal(losses[0], losses[r]);
    }

    [Fact]
    public void ABatchThatDoesNotSplitIsRefused()
    {
        var weights = new LlamaWeights(TrainerTests.Tiny, 1);
        string? message = null;
        ProcessGroup.RunOnThreadRanks(2, world =>
        {
            using var mesh = DeviceMesh.Create(world, dp: 2);
            var e = Assert.Throws<ArgumentException>(() => new ParallelTrainer(mesh, CpuDevice.Instance, weights, 6, 4, new ParallelTrainingOptions(MicroBatches: 2)));
            if (world.Rank == 0) message = e.Message;
            Assert.Throws<ArgumentException>(() => new ParallelTrainer(mesh, CpuDevice.Instance, weights, 4, 4, new ParallelTrainingOptions(BucketBytes: 0)));
        });
        Assert.Contains("not a multiple of 4", message);
    }

    [Fact]
    public void StagesSplitTheLayersAsEvenlyAsTheyCan()
    {
        Assert.Equal([(0, 2), (2, 2), (4, 1)], Enumerable.Range(0, 3).Select(i => PipelineStage.Of(i, 3, 5)).Select(s => (s.FirstLayer, s.Layers)));
        Assert.True(PipelineStage.Of(0, 3, 5).IsFirst && PipelineStage.Of(2, 3, 5).IsLast && !PipelineStage.Of(1, 3, 5).IsLast);
        Assert.Throws<ArgumentException>(() => PipelineStage.Of(0, 3, 2));
    }

    [Fact]
    public void LayoutsParseAndNameThemselves()
    {
        Assert.Equal("dp=2,tp=2,pp=2,mb=4,gpipe", TrainingLayout.Parse("pp=2, tp=2, dp=2, mb=4, schedule=gpipe").Name);
        Assert.Equal("single", TrainingLayout.Parse("single").Name);
        foreach (string name in TrainingLayouts.All.Concat(TrainingLayouts.ExpertParallel)) Assert.Equal(name, TrainingLayout.Parse(name).Name);
        Assert.Equal(8, TrainingLayout.Parse("dp=2,tp=2,pp=2").Ranks);
        Assert.Contains("unknown axis", Assert.Throws<ArgumentException>(() => TrainingLayout.Parse("dp=2,cp=2")).Message);
        // Expert parallelism trains over the data-parallel ranks: ep=N alone, or with the same dp.
        Assert.Equal("ep=2", TrainingLayout.Parse("dp=2,ep=2").Name);
        Assert.Equal(2, TrainingLayout.Parse("ep=2").Dp);
        Assert.Contains("ep = dp", Assert.Throws<ArgumentException>(() => TrainingLayout.Parse("dp=4,ep=2")).Message);
        Assert.Contains("ep = dp", Assert.Throws<ArgumentException>(() => TrainingLayout.Parse("ep=2,tp=2")).Message);
        Assert.Contains("needs a mixture-of-experts model", TrainingLayout.Parse("ep=2").Unfit(TrainerTests.Tiny, 4, Sequence));
        Assert.Contains("zero=1 shards", Assert.Throws<ArgumentException>(() => TrainingLayout.Parse("zero=1")).Message);
        Assert.Contains("tp=3 must divide", TrainingLayout.Parse("tp=3").Unfit(TrainerTests.Tiny, 4, Sequence));
    }
}
