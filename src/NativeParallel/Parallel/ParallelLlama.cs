using NativeParallel.Devices;
using NativeParallel.Models;
using NativeParallel.Parallel.Layers;
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
/// It is built from layer objects (Parallel/Layers: the embedding, decoder layers of attention and MLP or MoE, the
/// LM head), each owning its shard and running over a <c>ForwardPass</c> that says where the tokens sit; one layer
/// loop serves every layout, and the single device is its one-rank case (<see cref="LlamaModel"/>).
/// </summary>
public sealed class ParallelLlama : IDisposable
{
    private readonly IDevice _device;
    private readonly ParallelLayout _p;
    private readonly LlamaConfig _c;
    private readonly VocabParallelEmbedding? _embedding;
    private readonly DecoderLayer[] _layers;
    private readonly LmHead? _head;
    private readonly Dictionary<int, (Tensor K, Tensor V)[]> _caches = new();
    private readonly Dictionary<int, int> _lengths = new();

    /// <summary>Uploads this rank's shard of <paramref name="weights"/> to <paramref name="device"/>.</summary>
    public ParallelLlama(IDevice device, LlamaWeights weights, ParallelLayout layout)
    {
        _device = device;
        _p = layout;
        _c = weights.Config;
        var dt = _c.DType;
        int h = _c.Hidden, d = _c.HeadDim;
        Tensor Up(float[] values, params int[] shape) => Tensor.FromFloats(device, values, dt, shape);
        RmsNormLayer Norm(float[] values) => new(device, Up(values, h), _c.NormEps);
        if (layout.FirstStage)
            _embedding = new VocabParallelEmbedding(device, Up(ShardedWeights.Rows(weights.Embedding, h, layout.FirstVocab, layout.FirstVocab + layout.VocabShard), layout.VocabShard, h), layout.FirstVocab);
        if (layout.LastStage)
            _head = new LmHead(device, Norm(weights.FinalNorm), Up(ShardedWeights.Rows(weights.LmHead, h, layout.FirstVocab, layout.FirstVocab + layout.VocabShard), layout.VocabShard, h));
        _layers = Enumerable.Range(layout.FirstLayer, layout.LayerCount).Select(i =>
        {
            var l = ShardedWeights.Layer(weights.Layers[i], layout);
            int qd = layout.QueryHeads * d, kvd = layout.KvHeads * d;
            IFeedForward ffn = _c.Experts > 0
                ? new MoeLayer(device, new MoeExperts(device, _c, l, Enumerable.Range(layout.FirstExpert, layout.ExpertsPerRank)))
                : new MlpLayer(device, Up(l.Gate, layout.FfnShard, h), Up(l.Up, layout.FfnShard, h), Up(l.Down, h, layout.FfnShard));
            return new DecoderLayer(Norm(l.InputNorm), new AttentionLayer(device, Up(l.Q, qd, h), Up(l.K, kvd, h), Up(l.V, kvd, h), Up(l.O, h, qd)),
                Norm(l.PostNorm), ffn);
        }).ToArray();
    }

    /// <summary>Bytes of weights on this rank.</summary>
    public long WeightBytes => (_embedding?.WeightBytes ?? 0) + _layers.Sum(l => l.WeightBytes) + (_head?.WeightBytes ?? 0);

    /// <summary>MoE routings this rank's experts dropped for lack of capacity (expert parallelism).</summary>
    public long DroppedTokens => _layers.Sum(l => (l.FeedForward as MoeLayer)?.DroppedTokens ?? 0);

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
        using var pass = new ForwardPass(_device, _p, start, total);
        region = pass.RegionTokens;
        split = pass.TokenSplit;
        var caches = Cache(request);
        using var x = Tensor.Empty(_device, _c.DType, pass.Local, _c.Hidden);
        if (_embedding is { } embedding) embedding.Forward(pass, ids, x);
        else _p.Pp.Recv(x, _p.Pp.Rank - 1, tag: request);
        for (int li = 0; li < _layers.Length; li++) _layers[li].Forward(pass, x, caches[li]);
        _lengths[request] = start + total;
        if (HandOff(x, request)) return null;
        return _head!.Forward(pass, x);
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
        foreach (var l in _layers) l.Dispose();
        _head?.Dispose();
    }
}
