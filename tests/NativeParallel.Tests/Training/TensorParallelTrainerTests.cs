using NativeParallel.Comm;
using NativeParallel.Devices;
using NativeParallel.Kernels.Ops;
using NativeParallel.Models;
using NativeParallel.Training;

namespace NativeParallel.Tests.Training;

/// <summary>Megatron tensor-parallel training on thread ranks against the single-device trainer.</summary>
public sealed class TensorParallelTrainerTests
{
    private const int Batch = 2, Sequence = 6;

    // Tiny's 4 heads over 2 KV heads and 12 MLP columns split 2 ways; 4 heads over 4 KV heads split 4 ways.
    public static TheoryData<int, int, bool> Layouts => new() { { 2, 2, false }, { 4, 4, false }, { 2, 2, true } };

    [Theory]
    [MemberData(nameof(Layouts))]
    public void ShardsTrainTheSameModelAsOneDevice(int tp, int kvHeads, bool recompute)
    {
        var config = TrainerTests.Tiny with { KvHeads = kvHeads };
        var weights = new LlamaWeights(config, seed: 14);
        var settings = new AdamWSettings(3e-3f, 0.9f, 0.95f, 1e-8f, 0.1f);
        var batches = Enumerable.Range(0, 4).Select(i => TrainerTests.RandomBatch(900 + (ulong)i, config.Vocab, Batch * Sequence)).ToArray();
        using var single = new LlamaTrainer(CpuDevice.Instance, weights, Batch, Sequence);
        var expected = batches.Select((b, i) => single.Step(b.Inputs, b.Targets, settings, i + 1, 1f)).ToArray();

        var results = new StepResult[tp][];
        var shards = new Dictionary<string, float[]>[tp];
        ProcessGroup.RunOnThreadRanks(tp, group =>
        {
            using var mesh = DeviceMesh.Create(group, tp: tp);
            using var rank = new ParallelTrainer(mesh, CpuDevice.Instance, weights, Batch, Sequence, new ParallelTrainingOptions(Recompute: recompute));
            results[group.Rank] = batches.Select((b, i) => rank.Step(b.Inputs, b.Targets, settings, i + 1, 1f)).ToArray();
            shards[group.Rank] = rank.Trainer.Parameters.ToDictionary(p => p.Name, p => p.Value.ToFloats());
        }, timeout: TimeSpan.FromSeconds(60));
        for (int s = 0; s < batches.Length; s++)
            for (int r = 0; r < tp; r++)
            {
                Assert.True(Math.Abs(results[r][s].Loss - expected[s].Loss) <= 1e-5 * expected[s].Loss, $"tp={tp} rank {r} step {s + 1}: loss {results[r][s].Loss} vs {expected[s].Loss}");
                Assert.True(Math.Abs(results[r][s].GradNorm - expected[s].GradNorm) <= 1e-5 * expected[s].GradNorm,
                    $"tp={tp} rank {r} step {s + 1}: gradient norm {results[r][s].GradNorm} vs {expected[s].GradNorm}");
            }
        // Each rank's shard equals its cut of the single-device weights after the steps.
        int d = config.HeadDim, qd = config.Heads * d / tp, kvd = config.KvHeads * d / tp, f = config.Ffn / tp, h = config.Hidden;
        var full = single.Parameters.ToDictionary(p => p.Name, p => p.Value.ToFloats());
        for (int r = 0; r < tp; r++)
            foreach (var (name, got) in shards[r])
            {
                float[] want = name switch
                {
                    _ when name.EndsWith("q_proj.weight") => Shards.Rows(full[name], h, r * qd, qd),
                    _ when name.EndsWith("k_proj.weight") || name.EndsWith("v_proj.weight") => Shards.Rows(full[name], h, r * kvd, kvd),
                    _ when name.EndsWith("o_proj.weight") => Shards.Columns(full[name], h, qd * tp, r * qd, qd),
                    _ when name.EndsWith("gate_proj.weight") || name.EndsWith("up_proj.weight") => Shards.Rows(full[name], h, r * f, f),
                    _ when name.EndsWith("down_proj.weight") => Shards.Columns(full[name], h, f * tp, r * f, f),
                    // Vocabulary-parallel: blocks of ceil(V/tp) rows, the last one shorter.
                    _ when name is "model.embed_tokens.weight" or "lm_head.weight" => Shards.Rows(full[name], h, r * VocabChunk(config.Vocab, tp),
                        Math.Min(config.Vocab, (r + 1) * VocabChunk(config.Vocab, tp)) - r * VocabChunk(config.Vocab, tp)),
                    _ => full[name],
                };
                double error = Kernels.Ops.FiniteDifference.RelativeError(Array.ConvertAll(got, v => (double)v), Array.ConvertAll(want, v => (double)v));
                Assert.True(error <= 1e-5, $"tp={tp} rank {r} {name}: relative error {error:E2} against the single-device weights");
            }
    }

    private static int VocabChunk(int vocab, int tp) => (vocab + tp - 1) / tp;

    [Fact]
    public void ALayoutThatDoesNotDivideTheHeadsIsRefused()
    {
        var groups = ProcessGroup.CreateThreadGroup(3);
        try
        {
            var e = Assert.Throws<ArgumentException>(() => new LlamaTrainer(CpuDevice.Instance, new LlamaWeights(TrainerTests.Tiny, 1), 1, 4, tensorParallel: groups[0]));
            Assert.Contains("tp=3 must divide heads", e.Message);
        }
        finally
        {
            foreach (var g in groups) g.Dispose();
        }
    }
}
