using NativeParallel.Comm;
using NativeParallel.Devices;
using NativeParallel.Kernels.Ops;
using NativeParallel.Models;
using NativeParallel.Tensors;
using NativeParallel.Training;

namespace NativeParallel.Tests.Training;

/// <summary>Data-parallel training on thread ranks against the single-device trainer with the same global batch.</summary>
public sealed class DataParallelTrainerTests
{
    private const int GlobalBatch = 4, Sequence = 6;

    public static TheoryData<int, long, int> Layouts => new() { { 2, 25L << 20, 0 }, { 4, 25L << 20, 0 }, { 2, 1024, 0 }, { 2, 25L << 20, 1 }, { 3, 25L << 20, 1 } };

    [Theory]
    [MemberData(nameof(Layouts))]
    public void ReplicasTrainTheSameModelAsOneDevice(int dp, long bucketBytes, int zero)
    {
        var weights = new LlamaWeights(TrainerTests.Tiny, seed: 12);
        var settings = new AdamWSettings(3e-3f, 0.9f, 0.95f, 1e-8f, 0.1f);
        int globalBatch = GlobalBatch * (dp == 3 ? 3 : 1);
        var batches = Enumerable.Range(0, 5).Select(i => TrainerTests.RandomBatch(700 + (ulong)i, TrainerTests.Tiny.Vocab, globalBatch * Sequence)).ToArray();

        using var single = new LlamaTrainer(CpuDevice.Instance, weights, globalBatch, Sequence);
        var singleLosses = batches.Select((b, i) => single.Step(b.Inputs, b.Targets, settings, i + 1, 1f)).ToArray();

        var results = new StepResult[dp][];
        var weightsAfter = new byte[dp][][];
        int[] buckets = new int[dp];
        long[] optimizerBytes = new long[dp];
        ProcessGroup.RunOnThreadRanks(dp, group =>
        {
            int r = group.Rank;
            using var replica = new DataParallelTrainer(group, CpuDevice.Instance, weights, globalBatch, Sequence, bucketBytes, zero: zero);
            results[r] = batches.Select((b, i) => replica.Step(b.Inputs, b.Targets, settings, i + 1, 1f)).ToArray();
            weightsAfter[r] = replica.Trainer.Parameters.Select(p => p.Value.ToBytes()).ToArray();
            buckets[r] = replica.BucketsLastStep;
            optimizerBytes[r] = replica.OptimizerBytes;
        }, timeout: TimeSpan.FromSeconds(60));

        for (int s = 0; s < batches.Length; s++)
        {
            Assert.True(Math.Abs(results[0][s].Loss - singleLosses[s].Loss) <= 1e-5 * singleLosses[s].Loss,
                $"dp={dp} step {s + 1}: loss {results[0][s].Loss} vs one device {singleLosses[s].Loss}");
            Assert.True(Math.Abs(results[0][s].GradNorm - singleLosses[s].GradNorm) <= 1e-5 * singleLosses[s].GradNorm,
                $"dp={dp} step {s + 1}: gradient norm {results[0][s].GradNorm} vs one device {singleLosses[s].GradNorm}");
        }
        // Replicas stay bitwise identical; the model equals the single-device one within f32 summation order.
        for (int r = 1; r < dp; r++)
            for (int p = 0; p < weightsAfter[0].Length; p++)
                Assert.True(weightsAfter[0][p].AsSpan().SequenceEqual(weightsAfter[r][p]), $"rank {r} parameter {p} differs from rank 0");
        var got = weightsAfter[0].SelectMany(b => System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(b).ToArray()).Select(v => (double)v).ToArray();
        var expected = single.Parameters.SelectMany(p => p.Value.ToFloats()).Select(v => (double)v).ToArray();
        double error = Kernels.Ops.FiniteDifference.RelativeError(got, expected);
        Assert.True(error <= 1e-5, $"dp={dp}: weights after 5 steps differ from one device by {error:E2}");
        // Small buckets: the gradient went in several all-reduces, started while backward ran.
        if (bucketBytes < 4096) Assert.True(buckets[0] > 3, $"expected several buckets of {bucketBytes} bytes, got {buckets[0]}");
        // ZeRO-1: each rank holds 1/dp of AdamW's moments (rounded up to whole elements per shard).
        long full = single.OptimizerBytes;
        if (zero == 1) Assert.True(optimizerBytes[0] <= full / dp + 8L * dp, $"ZeRO-1 rank holds {optimizerBytes[0]} bytes of moments, the whole model's are {full}");
        else Assert.Equal(full, optimizerBytes[0]);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    public void ThreadRanksSharingTheEmulatedDeviceTrainTheModelOfTheCpu(int zero)
    {
        // The kernel-device path: collectives on emulated-device tensors (device-direct all-reduce for the buckets),
        // every training kernel's CUDA source, against the CPU run of the same global batches.
        Hardware.RequireEmu();
        var weights = new LlamaWeights(TrainerTests.Tiny, seed: 13);
        var settings = new AdamWSettings(3e-3f, 0.9f, 0.95f, 1e-8f, 0.1f);
        var batches = Enumerable.Range(0, 3).Select(i => TrainerTests.RandomBatch(800 + (ulong)i, TrainerTests.Tiny.Vocab, GlobalBatch * Sequence)).ToArray();
        using var single = new LlamaTrainer(CpuDevice.Instance, weights, GlobalBatch, Sequence);
        var expected = batches.Select((b, i) => single.Step(b.Inputs, b.Targets, settings, i + 1, 1f).Loss).ToArray();
        var losses = new double[2][];
        ProcessGroup.RunOnThreadRanks(2, group =>
        {
            using var replica = new DataParallelTrainer(group, EmuDevices.Shared, weights, GlobalBatch, Sequence, bucketBytes: 2048, zero: zero);
            losses[group.Rank] = batches.Select((b, i) => replica.Step(b.Inputs, b.Targets, settings, i + 1, 1f).Loss).ToArray();
        }, timeout: TimeSpan.FromSeconds(120));
        for (int s = 0; s < expected.Length; s++)
            Assert.True(Math.Abs(losses[0][s] - expected[s]) <= 1e-5 * expected[s], $"emu dp=2 zero={zero} step {s + 1}: loss {losses[0][s]} vs cpu {expected[s]}");
        Assert.Equal(losses[0], losses[1]);
    }

    [Fact]
    public void ABatchThatDoesNotSplitOverTheRanksIsRefused()
    {
        var groups = ProcessGroup.CreateThreadGroup(2);
        try
        {
            var weights = new LlamaWeights(TrainerTests.Tiny, 1);
            var e = Assert.Throws<ArgumentException>(() => new DataParallelTrainer(groups[0], CpuDevice.Instance, weights, 3, 4));
            Assert.Contains("not a multiple of dp=2", e.Message);
            Assert.Throws<ArgumentException>(() => new DataParallelTrainer(groups[0], CpuDevice.Instance, weights, 4, 4, bucketBytes: 0));
        }
        finally
        {
            foreach (var g in groups) g.Dispose();
        }
    }
}
