using NativeParallel.Comm;
using NativeParallel.Devices;
using NativeParallel.Parallel;
using NativeParallel.Tensors;

namespace NativeParallel.Models;

/// <summary>
/// A Llama-style decoder on one device: weights uploaded once, a KV cache per layer, and a forward pass that
/// appends tokens to the cache (prefill: many tokens; decode: one token, through the decode attention kernel).
/// It is the one-rank case of <see cref="ParallelLlama"/> (every group of size 1, so every collective is the
/// identity): one layer loop serves the single device and every layout. The float64 <see cref="LlamaReference"/>,
/// which shares no code with it, is what checks that loop; the parallel layouts are checked against this model.
/// </summary>
public sealed class LlamaModel : IDisposable
{
    private const int Request = 0;
    private readonly IDevice _device;
    private readonly LlamaConfig _c;
    private readonly ProcessGroup _alone;
    private readonly ParallelLlama _model;

    /// <summary>Uploads <paramref name="weights"/> to <paramref name="device"/>.</summary>
    public LlamaModel(IDevice device, LlamaWeights weights)
    {
        _device = device;
        _c = weights.Config;
        _alone = ProcessGroup.CreateThreadGroup(1, "single")[0];
        try
        {
            _model = new ParallelLlama(device, weights, new ParallelLayout(_c, _alone, _alone, _alone, _alone));
        }
        catch
        {
            _alone.Dispose();
            throw;
        }
    }

    /// <summary>Tokens in the KV cache.</summary>
    public int Length => _model.LengthOf(Request);

    /// <summary>Bytes of weights on the device.</summary>
    public long WeightBytes => _model.WeightBytes;

    /// <summary>Bytes of the KV cache on the device, at its full length (MaxSequence tokens).</summary>
    public long KvCacheBytes => 2L * _c.Layers * _c.MaxSequence * _c.KvHeads * _c.HeadDim * _c.DType.SizeOf();

    /// <summary>Empties the KV cache (the next forward starts at position 0).</summary>
    public void Reset() => _model.Release(Request);

    /// <summary>Runs <paramref name="ids"/> at positions Length.. and appends them to the cache; returns logits (tokens, vocab).</summary>
    public Tensor Forward(ReadOnlySpan<int> ids) => _model.ForwardOnOneDevice(Request, ids);

    /// <summary>The greedy next token after the last row of <paramref name="logits"/>.</summary>
    public int NextToken(Tensor logits)
    {
        using var index = Tensor.Empty(_device, DType.I32, 1);
        _device.Kernels.Argmax(logits.Narrow(0, logits.Dim(0) - 1, 1), index);
        return index.ToInts()[0];
    }

    /// <summary>
    /// The token after the last row of <paramref name="logits"/> drawn by <paramref name="sampler"/> at generation step
    /// <paramref name="step"/>: greedy stays on the device; sampling reads the row back to the host.
    /// </summary>
    public int NextToken(Tensor logits, Sampler? sampler, int step)
    {
        if (sampler is null || sampler.Options.IsGreedy) return NextToken(logits);
        return sampler.Next(logits.Narrow(0, logits.Dim(0) - 1, 1).ToFloats(), step);
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        _model.Dispose();
        _alone.Dispose();
    }
}
