using NativeParallel.Devices;
using NativeParallel.Models;
using NativeParallel.Tensors;

namespace NativeParallel.Parallel;

/// <summary>
/// One rank of a parallel Llama decoder. Tensor parallelism: q/k/v and gate/up column-parallel (split by heads
/// and MLP width), o and down row-parallel with one all-reduce each, a vocabulary-parallel embedding (all-reduce)
/// and LM head (all-gather). Pipeline parallelism: this rank runs its stage's layers, receiving hidden states from
/// the previous stage and sending them to the next. Sequence parallelism: during prefill this rank holds a
/// contiguous slice of the prompt; norms and the MLP stay local, attention all-gathers K and V and masks at global
/// positions; decode (one token) runs on every rank of the group, as the seed explains. Requests keep separate KV
/// caches, so several can be in flight (micro-batches through the pipeline, replicas under data parallelism).
/// </summary>
public sealed class ParallelLlama : IDisposable
{
    private readonly IDevice _device;
    private readonly ParallelLayout _p;
    private readonly LlamaConfig _c;
    private readonly Tensor? _embedding, _finalNorm, _lmHead;
    private readonly LayerTensors[] _layers;
    private readonly Dictionary<int, (Tensor K, Tensor V)[]> _caches = new();
    private readonly Dictionary<int, int> _lengths = new();

    private sealed record LayerTensors(Tensor InputNorm, Tensor Q, Tensor K, Tensor V, Tensor O, Tensor PostNorm, Tensor? Gate, Tensor? Up, Tensor? Down, MoeExperts? Moe)
    {
        public IEnumerable<Tensor> Tensors() => new[] { InputNorm, Q, K, V, O, PostNorm, Gate, Up, Down }.OfType<Tensor>();
    }

    /// <summary>Uploads this rank's shard of <paramref name="weights"/> to <paramref name="device"/>.</summary>
    public ParallelLlama(IDevice device, LlamaWeights weights, ParallelLayout layout)
    {
        _device = device;
        _p = layout;
        _c = weights.Config;
        var dt = _c.DType;
        int h = _c.Hidden, d = _c.HeadDim;
        Tensor Up(float[] values, params int[] shape) => Tensor.FromFloats(device, values, dt, shape);
        if (layout.FirstStage) _embedding = Up(ShardedWeights.Rows(weights.Embedding, h, layout.FirstVocab, layout.FirstVocab + layout.VocabShard), layout.VocabShard, h);
        if (layout.LastStage)
        {
            _finalNorm = Up(weights.FinalNorm, h);
            _lmHead = Up(ShardedWeights.Rows(weights.LmHead, h, layout.FirstVocab, layout.FirstVocab + layout.VocabShard), layout.VocabShard, h);
        }
        _layers = Enumerable.Range(layout.FirstLayer, layout.LayerCount).Select(i =>
        {
            var l = ShardedWeights.Layer(weights.Layers[i], layout);
            int qd = layout.QueryHeads * d, kvd = layout.KvHeads * d;
            bool moe = _c.Experts > 0;
            return new LayerTensors(Up(l.InputNorm, h), Up(l.Q, qd, h), Up(l.K, kvd, h), Up(l.V, kvd, h), Up(l.O, h, qd), Up(l.PostNorm, h),
                moe ? null : Up(l.Gate, layout.FfnShard, h), moe ? null : Up(l.Up, layout.FfnShard, h), moe ? null : Up(l.Down, h, layout.FfnShard),
                moe ? new MoeExperts(device, _c, l, Enumerable.Range(layout.FirstExpert, layout.ExpertsPerRank)) : null);
        }).ToArray();
    }

    /// <summary>Bytes of weights on this rank.</summary>
    public long WeightBytes =>
        new[] { _embedding, _finalNorm, _lmHead }.Sum(t => t?.Bytes ?? 0) +
        _layers.Sum(l => l.Tensors().Sum(t => t.Bytes) + (l.Moe?.WeightBytes ?? 0));

    /// <summary>MoE routings this rank's experts dropped for lack of capacity (expert parallelism).</summary>
    public long DroppedTokens { get; private set; }

    /// <summary>Bytes of KV cache on this rank (all requests).</summary>
    public long KvCacheBytes => _caches.Values.Sum(layers => layers.Sum(c => c.K.Bytes + c.V.Bytes));

    /// <summary>
    /// Runs <paramref name="ids"/> (the request's new tokens, all of them, on every rank) at the request's next
    /// positions. Returns logits (tokens, vocab) on the last stage (every TP and SP rank holds them all), null on
    /// other stages. Every rank of the layout must call it for the same request and tokens, in the same order.
    /// </summary>
    public float[]? Forward(int request, int[] ids)
    {
        using var logits = Layers(request, ids, out int region, out bool split);
        if (logits is null) return null;
        var full = GatherVocabulary(logits, region);
        if (!split) return full;
        // Prefill slices back into prompt order: rank blocks are token blocks.
        using var mineFull = Tensor.FromFloats(_device, full, DType.F32, full.Length);
        using var everything = Tensor.Empty(_device, DType.F32, full.Length * _p.Sp.Size);
        _p.Sp.AllGather(mineFull, everything);
        return everything.ToFloats();
    }

    /// <summary>
    /// The single-device case (every group of the layout of size 1): runs <paramref name="ids"/> for
    /// <paramref name="request"/> and returns its logits (tokens, vocab) on the device, for a device-side argmax.
    /// </summary>
    public Tensor ForwardOnOneDevice(int request, ReadOnlySpan<int> ids)
    {
        if (_p.Tp.Size != 1 || _p.Pp.Size != 1 || _p.Sp.Size != 1)
            throw new InvalidOperationException($"ForwardOnOneDevice needs a one-rank layout; this one has tp {_p.Tp.Size}, pp {_p.Pp.Size}, sp {_p.Sp.Size}: use Forward");
        return Layers(request, ids.ToArray(), out _, out _)!;
    }

    // The embedding, this stage's layers and (last stage) the LM head over this rank's vocabulary rows: returns the
    // logits of the TP region's tokens (region × vocabulary shard), or null on a stage that handed its output on.
    private Tensor? Layers(int request, int[] ids, out int region, out bool split)
    {
        int start = _lengths.GetValueOrDefault(request), total = ids.Length;
        if (total == 0) throw new ArgumentException($"request {request}: forward needs at least one token");
        if (start + total > _c.MaxSequence)
            throw new InvalidOperationException($"request {request}: a sequence of {start + total} tokens exceeds the KV cache ({_c.MaxSequence}); raise MaxSequence");
        // Token split: only prefill (several tokens) is divided; a single decode token runs on every SP rank.
        split = _p.Sp.Size > 1 && total > 1;
        if (split && total % _p.Sp.Size != 0)
            throw new ArgumentException($"sequence parallelism: {total} prompt tokens must divide by sp ({_p.Sp.Size}); pad the prompt");
        // Megatron SP: the residual stream holds this TP rank's token slice; the TP region sees every token.
        bool megatron = _p.MegatronSequenceParallel && total > 1;
        if (megatron && total % _p.Tp.Size != 0)
            throw new ArgumentException($"sequence parallelism: {total} prompt tokens must divide by tp ({_p.Tp.Size}); pad the prompt");
        split &= !megatron;
        var tp = new TensorParallelRegion(_p.Tp, megatron);
        // The residual stream holds `local` tokens from `offset`; the TP region (projections, attention, the MLP's
        // middle, the LM head) works on `region` tokens from `regionOffset`.
        int local = megatron ? total / _p.Tp.Size : split ? total / _p.Sp.Size : total;
        int offset = megatron ? _p.Tp.Rank * local : split ? _p.Sp.Rank * local : 0;
        region = megatron ? total : local;
        int regionOffset = megatron ? 0 : offset;
        var k = _device.Kernels;
        var dt = _c.DType;
        int h = _c.Hidden, d = _c.HeadDim, qd = _p.QueryHeads * d, kvd = _p.KvHeads * d;
        var caches = Cache(request);

        using var x = Tensor.Empty(_device, dt, local, h);
        // Row-sized partial sums and gathered inputs exist only when the region is wider than the residual stream.
        using var widePartial = tp.TokenSliced ? Tensor.Empty(_device, dt, region, h) : null;
        using var gatheredStorage = tp.TokenSliced ? Tensor.Empty(_device, dt, region, h) : null;
        if (_p.FirstStage)
        {
            // Vocabulary-parallel lookup: ids outside this rank's rows give zero rows; leaving the region sums them.
            var mine = ids.Skip(regionOffset).Take(region).Select(id => id - _p.FirstVocab).ToArray();
            using var regionIds = Tensor.FromInts(_device, mine, region);
            var partial = widePartial ?? x;
            k.Embedding(regionIds, _embedding!, partial);
            tp.Leave(partial, x);
        }
        else _p.Pp.Recv(x, _p.Pp.Rank - 1, tag: request);

        using var positions = Tensor.FromInts(_device, Enumerable.Range(start + regionOffset, region).ToArray(), region);
        using var lengths = Tensor.FromInts(_device, [start + total], 1);
        using var normed = Tensor.Empty(_device, dt, local, h);
        using var q = Tensor.Empty(_device, dt, region, qd);
        using var kNew = Tensor.Empty(_device, dt, region, kvd);
        using var vNew = Tensor.Empty(_device, dt, region, kvd);
        using var attention = Tensor.Empty(_device, dt, region, qd);
        using var projected = Tensor.Empty(_device, dt, local, h);
        using var gate = Tensor.Empty(_device, dt, region, _p.FfnShard);
        using var up = Tensor.Empty(_device, dt, region, _p.FfnShard);
        var partialOut = widePartial ?? projected;
        float scale = 1f / MathF.Sqrt(d);
        for (int li = 0; li < _layers.Length; li++)
        {
            var layer = _layers[li];
            var (kCache, vCache) = caches[li];
            k.RmsNorm(x, layer.InputNorm, normed, _c.NormEps);
            ProjectQkv(layer, tp.Enter(normed, gatheredStorage), positions, q, kNew, vNew);
            var kRows = kCache.Narrow(1, start, total).View(total, kvd);
            var vRows = vCache.Narrow(1, start, total).View(total, kvd);
            if (split)
            {
                // Every rank needs every token's keys and values: gather the slices straight into the cache.
                _p.Sp.AllGather(kNew, kRows);
                _p.Sp.AllGather(vNew, vRows);
            }
            else
            {
                kNew.CopyTo(kRows);
                vNew.CopyTo(vRows);
            }
            if (region == 1 && start > 0)
                k.AttentionDecode(q.View(1, _p.QueryHeads, d), kCache, vCache, lengths, attention.View(1, _p.QueryHeads, d), scale);
            else
                k.AttentionPrefill(q.View(1, region, _p.QueryHeads, d), kCache.Narrow(1, 0, start + total), vCache.Narrow(1, 0, start + total),
                    attention.View(1, region, _p.QueryHeads, d), start + regionOffset, scale);
            k.Matmul(attention, layer.O, partialOut);
            tp.Leave(partialOut, projected); // row-parallel o_proj: partial sums over heads
            k.Add(x, projected, x);
            k.RmsNorm(x, layer.PostNorm, normed, _c.NormEps);
            if (layer.Moe is { } moe)
            {
                // The MoE FFN is not TP-split: each rank runs it whole over its residual rows.
                AddExperts(moe, normed, x);
                continue;
            }
            DenseMlp(layer, tp.Enter(normed, gatheredStorage), gate, up, partialOut);
            tp.Leave(partialOut, projected); // row-parallel down_proj
            k.Add(x, projected, x);
        }
        _lengths[request] = start + total;
        if (HandOff(x, request)) return null;
        k.RmsNorm(x, _finalNorm!, normed, _c.NormEps);
        var logits = Tensor.Empty(_device, dt, region, _p.VocabShard);
        k.Matmul(tp.Enter(normed, gatheredStorage), _lmHead!, logits);
        return logits;
    }

    // q, k, v for this rank's heads from input (tokens, hidden), rotated at their positions.
    private void ProjectQkv(LayerTensors layer, Tensor input, Tensor positions, Tensor q, Tensor kNew, Tensor vNew)
    {
        var k = _device.Kernels;
        int tokens = input.Dim(0), d = _c.HeadDim;
        k.Matmul(input, layer.Q, q);
        k.Matmul(input, layer.K, kNew);
        k.Matmul(input, layer.V, vNew);
        k.Rope(q.View(tokens, _p.QueryHeads, d), positions, _c.RopeTheta);
        k.Rope(kNew.View(tokens, _p.KvHeads, d), positions, _c.RopeTheta);
    }

    // This rank's columns of the SwiGLU MLP: partial down_proj outputs, summed by the caller's collective.
    private void DenseMlp(LayerTensors layer, Tensor input, Tensor gate, Tensor up, Tensor output)
    {
        var k = _device.Kernels;
        k.Matmul(input, layer.Gate!, gate);
        k.Matmul(input, layer.Up!, up);
        k.SwiGlu(gate, up, gate);
        k.Matmul(gate, layer.Down!, output);
    }

    // x += the MoE FFN of normed (experts here, or spread over the EP group), on the device.
    private void AddExperts(MoeExperts moe, Tensor normed, Tensor x)
    {
        long dropped = 0;
        using var mixed = _p.Ep.Size > 1 ? moe.ForwardExpertParallel(normed, _p.Ep, _p.FirstExpert, out dropped) : moe.Forward(normed);
        DroppedTokens += dropped;
        _device.Kernels.Add(x, mixed, x);
    }

    // Not the last stage: send the hidden states on (true). The last stage goes on to the logits (false).
    private bool HandOff(Tensor x, int request)
    {
        if (_p.LastStage) return false;
        _p.Pp.Send(x, _p.Pp.Rank + 1, tag: request);
        return true;
    }

    /// <summary>Tokens in <paramref name="request"/>'s KV cache.</summary>
    public int LengthOf(int request) => _lengths.GetValueOrDefault(request);

    /// <summary>Drops a finished request's cache.</summary>
    public void Release(int request)
    {
        if (_caches.Remove(request, out var layers)) foreach (var (kc, vc) in layers) { kc.Dispose(); vc.Dispose(); }
        _lengths.Remove(request);
    }

    // LM head: each TP rank has logits for its vocabulary rows; gather them (rank-major) and interleave per token.
    private float[] GatherVocabulary(Tensor logits, int tokens)
    {
        if (_p.Tp.Size == 1) return logits.ToFloats();
        using var gathered = Tensor.Empty(_device, logits.DType, (int)logits.Count * _p.Tp.Size);
        _p.Tp.AllGather(logits, gathered);
        var blocks = gathered.ToFloats();
        int v = _p.VocabShard, vocab = _c.Vocab;
        var full = new float[tokens * vocab];
        for (int r = 0; r < _p.Tp.Size; r++)
            for (int t = 0; t < tokens; t++)
                blocks.AsSpan((r * tokens + t) * v, v).CopyTo(full.AsSpan(t * vocab + r * v));
        return full;
    }

    private (Tensor K, Tensor V)[] Cache(int request)
    {
        if (_caches.TryGetValue(request, out var existing)) return existing;
        var created = _layers.Select(_ => (
            Tensor.Empty(_device, _c.DType, 1, _c.MaxSequence, _p.KvHeads, _c.HeadDim),
            Tensor.Empty(_device, _c.DType, 1, _c.MaxSequence, _p.KvHeads, _c.HeadDim))).ToArray();
        _caches[request] = created;
        return created;
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        foreach (var r in _caches.Keys.ToArray()) Release(r);
        _embedding?.Dispose();
        _finalNorm?.Dispose();
        _lmHead?.Dispose();
        foreach (var l in _layers)
        {
            foreach (var t in l.Tensors()) t.Dispose();
            l.Moe?.Dispose();
        }
    }
}
