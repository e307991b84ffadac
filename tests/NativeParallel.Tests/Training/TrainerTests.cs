using NativeParallel.Devices;
using NativeParallel.Kernels.Ops;
using NativeParallel.Models;
using NativeParallel.Tensors;
using NativeParallel.Training;
using NativeParallel.Training.Reference;

namespace NativeParallel.Tests.Training;

/// <summary>
/// The trainer against the float64 reference trainer (a plain forward in double, gradients by central finite
/// differences, AdamW written out): whole-model gradients, and a run of steps, on the CPU device and on the
/// emulated device (where every training kernel's CUDA source runs).
/// </summary>
public sealed class TrainerTests
{
    // Small enough for finite differences over every parameter (≈ 1.5 k), large enough for every path: two layers,
    // grouped-query attention (4 heads over 2), odd sizes.
    internal static readonly LlamaConfig Tiny = new()
    {
        Vocab = 19, Hidden = 16, Layers = 2, Heads = 4, KvHeads = 2, Ffn = 12, MaxSequence = 16,
    };

    private const int Batch = 2, Sequence = 5;

    internal static (int[] Inputs, int[] Targets) RandomBatch(ulong seed, int vocab, int count)
    {
        var inputs = new int[count];
        var targets = new int[count];
        SeededRandom.Integers(seed, inputs, vocab);
        SeededRandom.Integers(seed + 1, targets, vocab);
        return (inputs, targets);
    }

    public static TheoryData<string> Devices => new("cpu", "emu");

    private static IDevice Open(string name)
    {
        if (name == "emu") Hardware.RequireEmu();
        return name == "cpu" ? CpuDevice.Instance : EmuDevices.Shared;
    }

    [Theory]
    [MemberData(nameof(Devices))]
    public void GradientsMatchFiniteDifferencesOfTheFloat64Model(string deviceName)
    {
        var weights = new LlamaWeights(Tiny, seed: 5);
        var (inputs, targets) = RandomBatch(11, Tiny.Vocab, Batch * Sequence);
        var reference = new ReferenceTrainer(weights);
        var expected = reference.Gradient(inputs, targets, Batch, Sequence);

        using var trainer = new LlamaTrainer(Open(deviceName), weights, Batch, Sequence);
        double loss = trainer.Forward(inputs, targets);
        trainer.Backward();
        Assert.Equal(reference.Loss(reference.Theta, inputs, targets, Batch, Sequence), loss, 1e-5);

        var got = trainer.Parameters.SelectMany(p => p.Grad.ToFloats()).Select(v => (double)v).ToArray();
        AssertGradientsMatch(got, expected, trainer, reference, deviceName);
        Assert.Equal(Math.Sqrt(expected.Sum(g => g * g)), trainer.GradientNorm(), 1e-5 * Math.Sqrt(expected.Sum(g => g * g)));
    }

    /// <summary>
    /// The trainer's gradients <paramref name="got"/> against the float64 model's: the whole within 1e-5, and every
    /// tensor on its own within 1e-4, so a wrong small tensor cannot hide behind large ones.
    /// </summary>
    internal static void AssertGradientsMatch(double[] got, double[] expected, LlamaTrainer trainer, ReferenceTrainer reference, string deviceName)
    {
        double error = Kernels.Ops.FiniteDifference.RelativeError(got, expected);
        Assert.True(error <= 1e-5, $"whole-model gradient on {deviceName}: relative error {error:E2} against the float64 model (bound 1e-5)");
        for (int i = 0; i < trainer.Parameters.Count; i++)
        {
            var (offset, count) = reference.Range(i);
            double tensorError = Kernels.Ops.FiniteDifference.RelativeError(got[offset..(offset + count)], expected[offset..(offset + count)]);
            Assert.True(tensorError <= 1e-4, $"{trainer.Parameters[i].Name} on {deviceName}: gradient relative error {tensorError:E2} (bound 1e-4)");
        }
    }

    [Theory]
    [MemberData(nameof(Devices))]
    public void TrainingAndInferenceRunTheSameLayersToTheSameLoss(string deviceName)
    {
        // The trainer and the inference model are built from the same layer objects, trained with a causal
        // attention per batch row and served with prefill over a KV cache: one row's loss must agree.
        var (trained, served) = TrainedAndServedLoss(Open(deviceName), new LlamaWeights(Tiny, seed: 8));
        Assert.True(Math.Abs(trained - served) <= 1e-5 * Math.Abs(served),
            $"on {deviceName}: the trainer's loss {trained:R} and the loss of the served model's logits {served:R} differ");
    }

    /// <summary>
    /// The trainer's mean loss over one row of 7 random tokens, and the same loss computed from the served model's
    /// logits for that row.
    /// </summary>
    internal static (double Trained, double Served) TrainedAndServedLoss(IDevice device, LlamaWeights weights)
    {
        const int t = 7;
        int vocab = weights.Config.Vocab;
        var (inputs, targets) = RandomBatch(21, vocab, t);
        using var trainer = new LlamaTrainer(device, weights, 1, t);
        double trained = trainer.Forward(inputs, targets);

        using var model = new LlamaModel(device, weights);
        using var logits = model.Forward(inputs);
        var values = logits.ToFloats();
        double served = 0;
        for (int i = 0; i < t; i++)
        {
            var row = values.AsSpan(i * vocab, vocab);
            double max = double.NegativeInfinity, sum = 0;
            foreach (float v in row) max = Math.Max(max, v);
            foreach (float v in row) sum += Math.Exp(v - max);
            served += max + Math.Log(sum) - row[targets[i]];
        }
        return (trained, served / t);
    }

    [Fact]
    public void TwentyStepsFollowTheFloat64ReferenceTrainer() => StepsFollowTheReferenceTrainer(Tiny, 20);

    /// <summary>
    /// <paramref name="steps"/> AdamW steps of <paramref name="config"/> (seed 6, batch 2 × 5, a clip that bites on
    /// some steps and not others) against the float64 reference trainer: each loss within 1e-5, each gradient norm
    /// within 1e-4, and the weights after the last step within 1e-5.
    /// </summary>
    internal static void StepsFollowTheReferenceTrainer(LlamaConfig config, int steps)
    {
        var weights = new LlamaWeights(config, seed: 6);
        var reference = new ReferenceTrainer(weights);
        using var trainer = new LlamaTrainer(CpuDevice.Instance, weights, Batch, Sequence);
        var settings = new AdamWSettings(3e-3f, 0.9f, 0.95f, 1e-8f, 0.1f);
        for (int step = 1; step <= steps; step++)
        {
            var (inputs, targets) = RandomBatch(100 + (ulong)step, config.Vocab, Batch * Sequence);
            var (refLoss, refNorm) = reference.Step(inputs, targets, Batch, Sequence, 3e-3, 0.9, 0.95, 1e-8, 0.1, step, gradClip: 2.0);
            var result = trainer.Step(inputs, targets, settings, step, gradClip: 2f);
            Assert.True(Math.Abs(result.Loss - refLoss) <= 1e-5 * refLoss, $"step {step}: loss {result.Loss} vs reference {refLoss}");
            Assert.True(Math.Abs(result.GradNorm - refNorm) <= 1e-4 * refNorm, $"step {step}: gradient norm {result.GradNorm} vs reference {refNorm}");
        }
        var theta = trainer.Parameters.SelectMany(p => p.Value.ToFloats()).Select(v => (double)v).ToArray();
        double error = Kernels.Ops.FiniteDifference.RelativeError(theta, reference.Theta);
        Assert.True(error <= 1e-5, $"weights after {steps} steps: relative error {error:E2} against the reference trainer (bound 1e-5)");
    }

    [Theory]
    [MemberData(nameof(Devices))]
    public void Bf16GradientsAreWithinBf16BoundsOfTheFloat64Model(string deviceName)
    {
        var weights = new LlamaWeights(Tiny, seed: 5);
        var (inputs, targets) = RandomBatch(11, Tiny.Vocab, Batch * Sequence);
        var reference = new ReferenceTrainer(weights);
        var expected = reference.Gradient(inputs, targets, Batch, Sequence);
        using var trainer = new LlamaTrainer(Open(deviceName), weights, Batch, Sequence, dtype: DType.BF16);
        double loss = trainer.Forward(inputs, targets);
        trainer.Backward();
        double referenceLoss = reference.Loss(reference.Theta, inputs, targets, Batch, Sequence);
        Assert.True(Math.Abs(loss - referenceLoss) <= 1e-2 * referenceLoss, $"bf16 loss {loss} vs float64 {referenceLoss}");
        var got = trainer.Parameters.SelectMany(p => p.Grad.ToFloats()).Select(v => (double)v).ToArray();
        double error = Kernels.Ops.FiniteDifference.RelativeError(got, expected);
        // bf16 activations and gradients: each rounding is 2^-9 relative; through two layers and back the whole
        // gradient stays within a few percent.
        Assert.True(error <= 3e-2, $"whole-model bf16 gradient on {deviceName}: relative error {error:E2} against the float64 model (bound 3e-2)");
    }

    [Fact]
    public void Bf16TrainingFollowsTheF32RunAndKeepsF32Masters()
    {
        var weights = new LlamaWeights(Tiny, seed: 9);
        var settings = new AdamWSettings(3e-3f, 0.9f, 0.95f, 1e-8f, 0.1f);
        using var f32 = new LlamaTrainer(CpuDevice.Instance, weights, Batch, Sequence);
        using var bf16 = new LlamaTrainer(CpuDevice.Instance, weights, Batch, Sequence, dtype: DType.BF16);
        for (int step = 1; step <= 20; step++)
        {
            var (inputs, targets) = RandomBatch(500 + (ulong)step, Tiny.Vocab, Batch * Sequence);
            double a = f32.Step(inputs, targets, settings, step, 1f).Loss, b = bf16.Step(inputs, targets, settings, step, 1f).Loss;
            Assert.True(Math.Abs(a - b) <= 2e-2 * a, $"step {step}: bf16 loss {b} vs f32 {a}");
        }
        foreach (var p in bf16.Parameters)
        {
            Assert.Equal(DType.F32, p.Value.DType);
            Assert.Equal(DType.BF16, p.Working.DType);
            // The working copy is the master rounded to bf16, exactly.
            var rounded = p.Value.ToFloats().Select(v => FloatBits.RoundTo(DType.BF16, v)).ToArray();
            Assert.Equal(rounded, p.Working.ToFloats());
        }
    }

    [Theory]
    [MemberData(nameof(Devices))]
    public void RecomputeGivesTheSameGradientsBitForBitWithLessMemory(string deviceName)
    {
        var weights = new LlamaWeights(Tiny with { Layers = 3 }, seed: 8);
        var (inputs, targets) = RandomBatch(21, Tiny.Vocab, Batch * Sequence);
        using var kept = new LlamaTrainer(Open(deviceName), weights, Batch, Sequence);
        using var recomputed = new LlamaTrainer(Open(deviceName), weights, Batch, Sequence, recompute: true);
        Assert.Equal(kept.Forward(inputs, targets), recomputed.Forward(inputs, targets));
        kept.Backward();
        recomputed.Backward();
        for (int p = 0; p < kept.Parameters.Count; p++)
            Assert.True(kept.Parameters[p].Grad.ToBytes().AsSpan().SequenceEqual(recomputed.Parameters[p].Grad.ToBytes()),
                $"{kept.Parameters[p].Name}: gradient with --recompute differs");
        // Three layers of activations against one shared set plus the residual stream of each layer.
        Assert.True(recomputed.ActivationBytes < kept.ActivationBytes * 0.7,
            $"recompute keeps {recomputed.ActivationBytes} bytes of activations, without it {kept.ActivationBytes}");
    }

    [Fact]
    public void ResumingFromACheckpointContinuesBitForBit()
    {
        var weights = new LlamaWeights(Tiny, seed: 7);
        var settings = new AdamWSettings(1e-2f, 0.9f, 0.999f, 1e-8f, 0.01f);
        var batches = Enumerable.Range(0, 6).Select(i => RandomBatch(300 + (ulong)i, Tiny.Vocab, Batch * Sequence)).ToArray();
        using var straight = new LlamaTrainer(CpuDevice.Instance, weights, Batch, Sequence);
        for (int i = 0; i < 6; i++) straight.Step(batches[i].Inputs, batches[i].Targets, settings, i + 1, 1f);

        string folder = Directory.CreateTempSubdirectory("np-ckpt-").FullName;
        try
        {
            using (var first = new LlamaTrainer(CpuDevice.Instance, weights, Batch, Sequence))
            {
                for (int i = 0; i < 3; i++) first.Step(batches[i].Inputs, batches[i].Targets, settings, i + 1, 1f);
                TrainingCheckpoint.Save(folder, first, new TrainingCheckpoint.State(3, 0, 42, Batch, Sequence));
            }
            Assert.Equal(new TrainingCheckpoint.State(3, 0, 42, Batch, Sequence), TrainingCheckpoint.ReadState(folder));
            using var resumed = new LlamaTrainer(CpuDevice.Instance, HuggingFaceCheckpoint.Load(folder), Batch, Sequence);
            TrainingCheckpoint.LoadMoments(folder, resumed);
            for (int i = 3; i < 6; i++) resumed.Step(batches[i].Inputs, batches[i].Targets, settings, i + 1, 1f);
            for (int p = 0; p < straight.Parameters.Count; p++)
                Assert.True(straight.Parameters[p].Value.ToBytes().AsSpan().SequenceEqual(resumed.Parameters[p].Value.ToBytes()),
                    $"{straight.Parameters[p].Name} differs after resuming");
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }
}

/// <summary>One emulated device for the training tests (its compiled kernels are cached per process).</summary>
internal static class EmuDevices
{
    private static readonly Lazy<EmuDevice> s_shared = new(() => new EmuDevice());

    public static EmuDevice Shared => s_shared.Value;
}
