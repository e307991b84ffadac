using NativeParallel.Devices;
using NativeParallel.Kernels.Check;
using NativeParallel.Models;
using NativeParallel.Tensors;

namespace NativeParallel.Tests.Models;

/// <summary>The single-device model against the host reference: prefill logits, and decode through the KV cache.</summary>
public sealed class LlamaModelTests
{
    private static readonly LlamaConfig Tiny = new() { Vocab = 97, Hidden = 64, Layers = 2, Heads = 4, KvHeads = 2, Ffn = 96, MaxSequence = 32 };

    [Theory]
    [InlineData(DType.F32, 1e-5)]
    [InlineData(DType.BF16, 3e-2)]
    public void PrefillLogitsMatchTheReference(DType dtype, double bound)
    {
        var weights = new LlamaWeights(Tiny with { DType = dtype }, 5);
        int[] prompt = [3, 14, 15, 92, 65, 35, 89, 79];
        using var model = new LlamaModel(CpuDevice.Instance, weights);
        using var logits = model.Forward(prompt);
        var expected = LlamaReference.Logits(weights, prompt);
        double error = ErrorBounds.RelativeError(logits.ToFloats(), Array.ConvertAll(expected, v => (double)v));
        Assert.True(error <= bound, $"relative error {error:E2} > {bound:E0}");
    }

    [Fact]
    public void DecodingThroughTheCacheEqualsRecomputingTheSequence()
    {
        var weights = new LlamaWeights(Tiny, 11);
        int[] prompt = [1, 2, 3, 4, 5];
        using var model = new LlamaModel(CpuDevice.Instance, weights);
        var sequence = prompt.ToList();
        using (var prefill = model.Forward(prompt)) sequence.Add(model.NextToken(prefill));
        for (int step = 0; step < 6; step++)
        {
            using var logits = model.Forward([sequence[^1]]);
            // The decode step's logits equal the last row of a full recompute of the sequence so far.
            var full = LlamaReference.Logits(weights, sequence.ToArray());
            var lastRow = full.AsSpan((sequence.Count - 1) * Tiny.Vocab, Tiny.Vocab).ToArray();
            double error = ErrorBounds.RelativeError(logits.ToFloats(), Array.ConvertAll(lastRow, v => (double)v));
            Assert.True(error <= 1e-5, $"decode step {step}: relative error {error:E2}");
            sequence.Add(model.NextToken(logits));
        }
        Assert.Equal(LlamaReference.Generate(weights, prompt, 7), sequence.Skip(prompt.Length).ToArray());
    }

    [Fact]
    public void OverflowingTheCacheIsAClearError()
    {
        using var model = new LlamaModel(CpuDevice.Instance, new LlamaWeights(Tiny, 1));
        var e = Assert.Throws<InvalidOperationException>(() => model.Forward(new int[Tiny.MaxSequence + 1]));
        Assert.Contains("exceeds the KV cache", e.Message);
    }
}
