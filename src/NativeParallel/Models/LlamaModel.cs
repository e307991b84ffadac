using NativeParallel.Devices;
using NativeParallel.Tensors;

namespace NativeParallel.Models;

/// <summary>
/// A Llama-style decoder on one device: weights uploaded once, a KV cache per layer, and a forward pass that
/// appends tokens to the cache (prefill: many tokens; decode: one token, through the decode attention kernel).
/// It is the single-device run every parallel layout is checked against, so it deliberately shares no code with
/// <see cref="Parallel.ParallelLlama"/>: a bug in the shared path could not hide behind an equal comparison.
/// </summary>
public sealed class LlamaModel : IDisposable
{
    private readonly IDevice _device;
    private readonly LlamaConfig _c;
    private readonly Tensor _embedding, _finalNorm, _lmHead;
    private readonly LayerTensors[] _layers;
    private int _length;

    private sealed record LayerTensors(Tensor InputNorm, Tensor Q, Tensor K, Tensor V, Tensor O, Tensor PostNorm, Tensor? Gate,
        Tensor? Up, Tensor? Down, Tensor KCache, Tensor VCache, MoeExperts? Moe) : IDisposable
    {
        public void Dispose()
        {
            foreach (var t in new[] { InputNorm, Q, K, V, O, PostNorm, Gate, Up, Down, KCache, VCache }) t?.Dispose();
            Moe?.Dispose();
        }
    }

    /// <summary>Uploads <paramref name="weights"/> to <paramref name="device"/> and allocates the KV cache.</summary>
    public LlamaModel(IDevice device, LlamaWeights weights)
    {
        _device = device;
        _c = weights.Config;
        var dt = _c.DType;
        int h = _c.Hidden, d = _c.HeadDim, qd = _c.Heads * d, kvd = _c.KvHeads * d;
        Tensor Up(float[] values, params int[] shape) => Tensor.FromFloats(device, values, dt, shape);
        _embedding = Up(weights.Embedding, _c.Vocab, h);
        _finalNorm = Up(weights.FinalNorm, h);
        _lmHead = Up(weights.LmHead, _c.Vocab, h);
        bool moe = _c.Experts > 0;
        _layers = weights.Layers.Select(l => new LayerTensors(
            Up(l.InputNorm, h), Up(l.Q, qd, h), Up(l.K, kvd, h), Up(l.V, kvd, h), Up(l.O, h, qd), Up(l.PostNorm, h),
            moe ? null : Up(l.Gate, _c.Ffn, h), moe ? null : Up(l.Up, _c.Ffn, h), moe ? null : Up(l.Down, h, _c.Ffn),
            Tensor.Empty(device, dt, 1, _c.MaxSequence, _c.KvHeads, d), Tensor.Empty(device, dt, 1, _c.MaxSequence, _c.KvHeads, d),
            moe ? new MoeExperts(device, _c, l, Enumerable.Range(0, _c.Experts)) : null)).ToArray();
    }

    /// <summary>Tokens in the KV cache.</summary>
    public int Length => _length;

    /// <summary>Bytes of weights on the device.</summary>
    public long WeightBytes => _c.Parameters * _c.DType.SizeOf();

    /// <summary>Bytes of KV cache on the device.</summary>
    public long KvCacheBytes => _layers.Sum(l => l.KCache.Bytes + l.VCache.Bytes);

    /// <summary>Empties the KV cache (the next forward starts at position 0).</summary>
    public void Reset() => _length = 0;

    /// <summary>Runs <paramref name="ids"/> at positions Length.. and appends them to the cache; returns logits (tokens, vocab).</summary>
    public Tensor Forward(ReadOnlySpan<int> ids)
    {
        int t = ids.Length, start = _length;
        if (t == 0) throw new ArgumentException("forward needs at least one token");
        if (start + t > _c.MaxSequence) throw new InvalidOperationException($"sequence of {start + t} tokens exceeds the KV cache ({_c.MaxSequence}); raise MaxSequence");
        var k = _device.Kernels;
        var dt = _c.DType;
        int h = _c.Hidden, d = _c.HeadDim, qd = _c.Heads * d, kvd = _c.KvHeads * d;
        float scale = 1f / MathF.Sqrt(d);
        var positions = new int[t];
        for (int i = 0; i < t; i++) positions[i] = start + i;

        using var idsTensor = Tensor.FromInts(_device, ids, t);
        using var positionTensor = Tensor.FromInts(_device, positions, t);
        using var lengths = Tensor.FromInts(_device, [start + t], 1);
        using var x = Tensor.Empty(_device, dt, t, h);
        using var normed = Tensor.Empty(_device, dt, t, h);
        using var q = Tensor.Empty(_device, dt, t, qd);
        using var kNew = Tensor.Empty(_device, dt, t, kvd);
        using var vNew = Tensor.Empty(_device, dt, t, kvd);
        using var attention = Tensor.Empty(_device, dt, t, qd);
        using var projected = Tensor.Empty(_device, dt, t, h);
        using var gate = Tensor.Empty(_device, dt, t, _c.Ffn);
        using var up = Tensor.Empty(_device, dt, t, _c.Ffn);

        k.Embedding(idsTensor, _embedding, x);
        foreach (var layer in _layers)
        {
            k.RmsNorm(x, layer.InputNorm, normed, _c.NormEps);
            k.Matmul(normed, layer.Q, q);
            k.Matmul(normed, layer.K, kNew);
            k.Matmul(normed, layer.V, vNew);
            k.Rope(q.View(t, _c.Heads, d), positionTensor, _c.RopeTheta);
            k.Rope(kNew.View(t, _c.KvHeads, d), positionTensor, _c.RopeTheta);
            // Append the new keys and values at rows [start, start + t) of the cache.
            kNew.CopyTo(layer.KCache.Narrow(1, start, t).View(t, kvd));
            vNew.CopyTo(layer.VCache.Narrow(1, start, t).View(t, kvd));
            if (t == 1 && start > 0)
                k.AttentionDecode(q.View(1, _c.Heads, d), layer.KCache, layer.VCache, lengths, attention.View(1, _c.Heads, d), scale);
            else
                k.AttentionPrefill(q.View(1, t, _c.Heads, d), layer.KCache.Narrow(1, 0, start + t), layer.VCache.Narrow(1, 0, start + t),
                    attention.View(1, t, _c.Heads, d), start, scale);
            k.Matmul(attention, layer.O, projected);
            k.Add(x, projected, x);
            k.RmsNorm(x, layer.PostNorm, normed, _c.NormEps);
            if (layer.Moe is { } moe)
            {
                using var mixed = moe.Forward(normed);
                k.Add(x, mixed, x);
                continue;
            }
            k.Matmul(normed, layer.Gate!, gate);
            k.Matmul(normed, layer.Up!, up);
            k.SwiGlu(gate, up, gate);
            k.Matmul(gate, layer.Down!, projected);
            k.Add(x, projected, x);
        }
        k.RmsNorm(x, _finalNorm, normed, _c.NormEps);
        var logits = Tensor.Empty(_device, dt, t, _c.Vocab);
        k.Matmul(normed, _lmHead, logits);
        _length = start + t;
        return logits;
    }

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
        _embedding.Dispose();
        _finalNorm.Dispose();
        _lmHead.Dispose();
        foreach (var layer in _layers) layer.Dispose();
    }
}
