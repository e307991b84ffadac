using NativeParallel.Comm;
using NativeParallel.Devices;
using NativeParallel.Kernels.Ops;
using NativeParallel.Models;
using NativeParallel.Training;

namespace NativeParallel.Tests.Training;

/// <summary>GPipe pipeline-parallel training on thread ranks against the single-device trainer.</summary>
public sealed class PipelineTrainerTests
{
    private const int Batch = 4, Sequence = 5;

    public static TheoryData<int, int, int> Layouts => new() { { 2, 1, 2 }, { 2, 4, 2 }, { 3, 2, 3 }, { 2, 2, 3 } };

    [Theory]
    [MemberData(nameof(Layouts))]
    public void StagesTrainTheSameModelAsOneDevice(int pp, int microBatches, int layers)
    {
        var config = TrainerTests.Tiny with { Layers = layers };
        var weights = new LlamaWeights(config, seed: 15);
        var settings = new AdamWSettings(3e-3f, 0.9f, 0.95f, 1e-8f, 0.1f);
        var batches = Enumerable.Range(0, 4).Select(i => TrainerTests.RandomBatch(1000 + (ulong)i, config.Vocab, Batch * Sequence)).ToArray();
        using var single = new LlamaTrainer(CpuDevice.Instance, weights, Batch, Sequence);
        var expected = batches.Select((b, i) => single.Step(b.Inputs, b.Targets, settings, i + 1, 1f)).ToArray();
        var full = single.Parameters.ToDictionary(p => p.Name, p => p.Value.ToFloats());

        var results = new StepResult[pp][];
        var held = new Dictionary<string, float[]>[pp];
        ProcessGroup.RunOnThreadRanks(pp, group =>
        {
            using var stage = new PipelineTrainer(group, CpuDevice.Instance, weights, Batch, Sequence, microBatches);
            results[group.Rank] = batches.Select((b, i) => stage.Step(b.Inputs, b.Targets, settings, i + 1, 1f)).ToArray();
            held[group.Rank] = stage.Trainer.Parameters.ToDictionary(p => p.Name, p => p.Value.ToFloats());
        }, timeout: TimeSpan.FromSeconds(60));
        for (int s = 0; s < batches.Length; s++)
            for (int r = 0; r < pp; r++)
            {
                Assert.True(Math.Abs(results[r][s].Loss - expected[s].Loss) <= 1e-5 * expected[s].Loss, $"pp={pp} m={microBatches} stage {r} step {s + 1}: loss {results[r][s].Loss} vs {expected[s].Loss}");
                Assert.True(Math.Abs(results[r][s].GradNorm - expected[s].GradNorm) <= 1e-5 * expected[s].GradNorm,
                    $"pp={pp} m={microBatches} stage {r} step {s + 1}: gradient norm {results[r][s].GradNorm} vs {expected[s].GradNorm}");
            }
        // The stages together hold every parameter exactly once, each equal to the single-device one.
        Assert.Equal(full.Keys.Order(), held.SelectMany(h => h.Keys).Order());
        foreach (var (name, got) in held.SelectMany(h => h))
        {
            double error = Kernels.Ops.FiniteDifference.RelativeError(Array.ConvertAll(got, v => (double)v), Array.ConvertAll(full[name], v => (double)v));
            Assert.True(error <= 1e-5, $"pp={pp} m={microBatches} {name}: relative error {error:E2} against the single-device weights");
        }
    }

    [Fact]
    public void StagesSplitTheLayersAsEvenlyAsTheyCan()
    {
        Assert.Equal([(0, 2), (2, 2), (4, 1)], Enumerable.Range(0, 3).Select(i => PipelineStage.Of(i, 3, 5)).Select(s => (s.FirstLayer, s.Layers)));
        Assert.True(PipelineStage.Of(0, 3, 5).IsFirst && PipelineStage.Of(2, 3, 5).IsLast && !PipelineStage.Of(1, 3, 5).IsLast);
        Assert.Throws<ArgumentException>(() => PipelineStage.Of(0, 3, 2));
    }
}
