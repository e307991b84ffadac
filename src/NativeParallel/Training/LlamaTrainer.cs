using NativeParallel.Comm;
using NativeParallel.Devices;
using NativeParallel.Kernels;
using NativeParallel.Kernels.Ops;
using NativeParallel.Models;
using NativeParallel.Parallel.Layers;
using NativeParallel.Tensors;

namespace NativeParallel.Training;

/// <summary>
/// Trains a Llama-style decoder (dense, or with Mixtral-style mixture-of-experts FFNs whose router and experts are
/// trained parameters) on one device, llm.c style: an explicit forward that keeps what backward
/// reads, an explicit backward written op by op (the transpose of the forward, in reverse), the global gradient norm
/// with torch's clipping, and AdamW. Master weights and AdamW moments are f32 on the device; weights as forward reads
/// them, activations and gradients are in the training dtype (f32, or bf16 as llm.c's mixed precision keeps them,
/// with the log-sum-exps and losses in f32). Every batch is B rows of T tokens, each row its own causal sequence
/// starting at position 0. Loss: mean cross-entropy over all B·T targets. The model is built from the same layer
/// objects as inference (Parallel/Layers: the vocabulary-parallel embedding, decoder layers of attention and MLP, the
/// LM head), here holding views of the flat parameter and gradient buffers, each with a forward that keeps what its
/// backward reads; a <c>TrainingPass</c> carries the batch's shape, the tensor-parallel region and backward's scratch.
/// </summary>
public sealed class LlamaTrainer : IDisposable
{
    private readonly LlamaConfig _c;
    private readonly int _batch, _seq, _tokens, _lossTokens, _vocabStart, _vocabLocal;
    private readonly ProcessGroup? _tp, _ep;
    private readonly int _firstExpert;
    // Null on pipeline stages that do not hold them (the embedding on stage 0, norm and head on the last).
    private readonly TrainParameter? _embedding, _finalNorm, _lmHead;
    private readonly int _firstLayer;
    private readonly LayerParameters[] _layers;
    // The model as layer objects over views of the parameter buffers.
    private readonly TrainingPass _pass;
    private readonly VocabParallelEmbedding? _embeddingLayer;
    private readonly DecoderLayer[] _decoders;
    private readonly LmHead? _head;
    private readonly ActivationSlot[] _slots;
    private ActivationSlot _slot;
    private readonly List<Tensor> _buffers = [];
    private readonly Tensor _normTotal, _rowMax, _rowSums;
    private readonly int[] _hostIds, _hostTargets;

    // FeedForward: a dense layer's gate, up and down; a MoE layer's router, then each expert's w1 (gate), w3 (up) and
    // w2 (down), in Hugging Face order.
    private sealed record LayerParameters(TrainParameter InputNorm, TrainParameter Q, TrainParameter K, TrainParameter V, TrainParameter O,
        TrainParameter PostNorm, TrainParameter[] FeedForward);

    // Everything one micro-batch's backward reads: its tokens and targets, each layer's activations, the stage output,
    // and on the last stage the final norm's output and the logits (dlogits after forward). A pipeline keeps one slot
    // per micro-batch in flight (GPipe: all m; 1F1B: at most the stages after this one); a plain step uses one.
    // LocalIds: under tensor parallelism, each id minus this rank's first vocabulary row, or −1 where another rank
    // holds it (the embedding kernels give a zero row and skip it in backward); Ids itself otherwise.
    private sealed record ActivationSlot(Tensor Ids, Tensor LocalIds, Tensor Targets, DecoderActivations[] Layers, Tensor Final, Tensor FinalNormed, Tensor Logits,
        Tensor Losses);

    /// <summary>Uploads <paramref name="weights"/> (an f32 model, dense or MoE) and allocates every buffer for batches of <paramref name="batch"/> × <paramref name="sequence"/>.</summary>
    /// <remarks>
    /// With <paramref name="recompute"/>, each layer keeps only its input and its mid-layer residual; backward runs the
    /// layer's forward again (norms, q/k/v, RoPE, attention, gate/up, SwiGLU) into one shared set of buffers before
    /// its own backward. The kernels are deterministic, so the gradients are bitwise those of the run without it.
    /// </remarks>
    /// <param name="device">Where everything lives.</param>
    /// <param name="weights">The starting weights (their values become the f32 masters).</param>
    /// <param name="batch">B, rows per batch (this rank's share under data parallelism).</param>
    /// <param name="sequence">T, tokens per row.</param>
    /// <param name="recompute">Recompute activations in backward instead of keeping them.</param>
    /// <param name="dtype">f32, or bf16 mixed precision.</param>
    /// <param name="lossTokens">The token count the loss is a mean over: B·T alone; the global batch's B·T when this trainer is one data-parallel replica, so that summing the replicas' gradients gives the global batch's.</param>
    /// <param name="padTo">The flat buffers' length is rounded up to a multiple of this (ZeRO-1 cuts them into equal shards, one per rank); the padding is zero and belongs to no parameter.</param>
    /// <param name="moments">False when the AdamW moments live elsewhere (ZeRO-1 keeps only its shard of them).</param>
    /// <param name="tensorParallel">
    /// Megatron tensor parallelism over this group: this rank holds query and KV heads [r·H/tp, (r+1)·H/tp) of q/k/v
    /// (column-parallel) and the matching input columns of o (row-parallel), and MLP columns of gate/up with the
    /// matching rows of down; the partial outputs of o and down are all-reduced (Megatron's g), the gradient of each
    /// column-parallel block's input is all-reduced in backward (f's conjugate). Norms, embedding and LM head are
    /// replicated. Null or a group of one: the whole model.
    /// </param>
    /// <param name="stage">
    /// Pipeline parallelism: this trainer is one stage, holding layers [FirstLayer, FirstLayer + Layers), the embedding
    /// only on the first stage and the final norm, LM head and loss only on the last. Null: the whole model.
    /// </param>
    /// <param name="sequenceParallel">
    /// With tensor parallelism, Megatron's sequence parallelism: the residual stream, the norms and their outputs are
    /// cut by tokens over the group (rank r holds rows [r·n/tp, (r+1)·n/tp) of the B·T tokens); each column-parallel
    /// block's input is all-gathered before it (and again in backward, for the weight gradients) and each
    /// row-parallel block's output reduce-scattered after it, in place of Megatron's all-reduces; the norms' weight
    /// gradients are summed over the group by <see cref="SumSequenceParallelGradients"/>.
    /// </param>
    /// <param name="expertParallel">
    /// Expert parallelism over this group (a mixture-of-experts model; the group is the data-parallel one, each rank
    /// training its own rows): rank r holds experts [r·E/ep, (r+1)·E/ep) of every MoE layer and trains them on every
    /// rank's routings, which travel by all-to-all there and back (backward makes the journey in reverse); router,
    /// attention, norms, embedding and head are whole on every rank. Null or a group of one: every expert here.
    /// </param>
    /// <param name="activationSlots">How many micro-batches' activations are kept at once (a pipeline schedule's micro-batches in flight); each <see cref="Forward(ReadOnlySpan{int}, ReadOnlySpan{int}, Tensor?, int)"/> and <see cref="Backward(Action{long}?, Tensor?, bool, int)"/> names its slot.</param>
    public LlamaTrainer(IDevice device, LlamaWeights weights, int batch, int sequence, bool recompute = false, DType dtype = DType.F32, int? lossTokens = null,
        int padTo = 1, bool moments = true, ProcessGroup? tensorParallel = null, PipelineStage? stage = null, int activationSlots = 1,
        bool sequenceParallel = false, ProcessGroup? expertParallel = null)
    {
        if (activationSlots < 1) throw new ArgumentException($"at least one activation slot is needed, got {activationSlots}");
        _c = weights.Config;
        if (dtype is not (DType.F32 or DType.BF16)) throw new NotSupportedException($"training runs in f32 or bf16, not {dtype.Name()}");
        DType = dtype;
        if (batch < 1 || sequence < 1) throw new ArgumentException($"batch ({batch}) and sequence ({sequence}) must be at least 1");
        _batch = batch;
        _seq = sequence;
        _tokens = checked(batch * sequence);
        _tp = tensorParallel is { Size: > 1 } ? tensorParallel : null;
        int tp = _tp?.Size ?? 1, rank = _tp?.Rank ?? 0;
        if (_c.Experts > 0 && _tp is not null)
            throw new NotSupportedException($"tensor parallelism (tp={tp}) does not split a mixture-of-experts model's experts: train it with dp, pp or ep (tp=1)");
        _ep = expertParallel is { Size: > 1 } ? expertParallel : null;
        if (_ep is not null && (_c.Experts == 0 || _c.Experts % _ep.Size != 0))
            throw new ArgumentException($"expert parallelism (ep={_ep.Size}) splits a mixture-of-experts model's experts: the model has {_c.Experts}, which ep must divide");
        int expertsHere = _ep is null ? _c.Experts : _c.Experts / _ep.Size;
        _firstExpert = _ep is null ? 0 : _ep.Rank * expertsHere;
        if (_c.Heads % tp != 0 || _c.KvHeads % tp != 0 || _c.Ffn % tp != 0)
            throw new ArgumentException($"tensor parallelism splits heads and MLP columns: tp={tp} must divide heads ({_c.Heads}), kv heads ({_c.KvHeads}) and ffn ({_c.Ffn})");
        // Vocabulary parallelism (Megatron's): embedding and LM head rows cut into tp blocks of ceil(V/tp), the last
        // one shorter, so a vocabulary such as GPT-2's 50257 needs no padding.
        int vocabChunk = (_c.Vocab + tp - 1) / tp;
        _vocabStart = Math.Min(_c.Vocab, rank * vocabChunk);
        _vocabLocal = Math.Min(_c.Vocab, _vocabStart + vocabChunk) - _vocabStart;
        if ((tp - 1) * vocabChunk >= _c.Vocab)
            throw new ArgumentException($"tensor parallelism splits the vocabulary: {_c.Vocab} rows in blocks of {vocabChunk} leave a rank of tp={tp} without any");
        bool sp = sequenceParallel && _tp is not null;
        if (sp && _tokens % tp != 0)
            throw new ArgumentException($"sequence parallelism cuts the B·T = {_tokens} tokens of a micro-batch over tp={tp} ranks: they do not divide");
        int n = _tokens, rows = sp ? _tokens / tp : _tokens, h = _c.Hidden, d = _c.HeadDim, qd = _c.Heads / tp * d, kvd = _c.KvHeads / tp * d, f = _c.Ffn / tp, vocab = _c.Vocab, vl = _vocabLocal;
        Stage = stage ?? new PipelineStage(0, _c.Layers, IsFirst: true, IsLast: true);
        if (Stage.FirstLayer < 0 || Stage.Layers < 0 || Stage.FirstLayer + Stage.Layers > _c.Layers)
            throw new ArgumentException($"pipeline stage layers [{Stage.FirstLayer}, {Stage.FirstLayer + Stage.Layers}) are outside the model's {_c.Layers}");
        _firstLayer = Stage.FirstLayer;
        long localParameters = (Stage.IsFirst ? (long)vl * h : 0) + (Stage.IsLast ? (long)vl * h + h : 0) +
            Stage.Layers * (2L * h + 2L * qd * h + 2L * kvd * h + (_c.Experts == 0 ? 3L * f * h : (long)_c.Experts * h + expertsHere * 3L * f * h));

        _lossTokens = lossTokens ?? _tokens;
        if (_lossTokens < _tokens) throw new ArgumentException($"the loss is a mean over at least this batch's {_tokens} tokens, got {_lossTokens}");
        // Every parameter is a view of flat buffers in one order: masters, working copy, gradients, moments. The
        // gradients are zeroed at once and all-reduced in contiguous buckets by data parallelism (backward produces
        // them from the end of the buffer back); ZeRO-1 cuts every buffer into the same equal shards.
        if (padTo < 1) throw new ArgumentException($"padTo must be at least 1, got {padTo}");
        int flat = checked((int)((localParameters + padTo - 1) / padTo * padTo));
        Tensor Flat(DType t)
        {
            var buffer = Tensor.Empty(device, t, flat);
            buffer.FillBytes(0);
            return buffer;
        }
        Masters = Flat(DType.F32);
        Working = dtype == DType.F32 ? Masters : Flat(dtype);
        Gradients = Flat(dtype);
        Moment1 = moments ? Flat(DType.F32) : null;
        Moment2 = moments ? Flat(DType.F32) : null;
        int offset = 0;
        TrainParameter P(string name, float[] values, ShardPlacement placement, params int[] shape) => Parameter(name, values, placement, false, shape);
        TrainParameter Expert(string name, float[] values, params int[] shape) => Parameter(name, values, ShardPlacement.Whole(shape[0], shape[1]), _ep is not null, shape);
        TrainParameter Parameter(string name, float[] values, ShardPlacement placement, bool expertShard, int[] shape)
        {
            int count = shape.Aggregate(1, (a, b) => a * b);
            if (values.Length != count) throw new ArgumentException($"{name}: {values.Length} values for shape [{string.Join(", ", shape)}]");
            Tensor Slice(Tensor buffer) => buffer.Narrow(0, offset, count).View(shape);
            var value = Slice(Masters);
            value.CopyFromHost(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()));
            var working = value;
            if (dtype != DType.F32)
            {
                working = Slice(Working);
                using var rounded = Tensor.FromFloats(device, values, dtype, shape);
                rounded.CopyTo(working);
            }
            var parameter = new TrainParameter(name, offset, value, working, Slice(Gradients),
                Moment1 is null ? null : Slice(Moment1), Moment2 is null ? null : Slice(Moment2), placement) { IsExpertShard = expertShard };
            offset += count;
            return parameter;
        }
        var whole = ShardPlacement.Whole;
        var vocabBlock = ShardPlacement.RowBlock(vocab, h, _vocabStart, vl);
        _embedding = Stage.IsFirst ? P("model.embed_tokens.weight", Shards.Rows(weights.Embedding, h, _vocabStart, vl), vocabBlock, vl, h) : null;
        _layers = new LayerParameters[Stage.Layers];
        for (int l = 0; l < Stage.Layers; l++)
        {
            var w = weights.Layers[_firstLayer + l];
            string p = $"model.layers.{_firstLayer + l}.";
            // This rank's shard: rows of the column-parallel weights, columns of the row-parallel ones.
            // Allocated in Parameters order (the flat buffers' order, which buckets, ZeRO shards and the runs of
            // shared gradients rely on): the attention half, then the feed-forward's.
            var inputNorm = P(p + "input_layernorm.weight", w.InputNorm, whole(1, h), h);
            var q = P(p + "self_attn.q_proj.weight", Shards.Rows(w.Q, h, rank * qd, qd), ShardPlacement.RowBlock(qd * tp, h, rank * qd, qd), qd, h);
            var k = P(p + "self_attn.k_proj.weight", Shards.Rows(w.K, h, rank * kvd, kvd), ShardPlacement.RowBlock(kvd * tp, h, rank * kvd, kvd), kvd, h);
            var v = P(p + "self_attn.v_proj.weight", Shards.Rows(w.V, h, rank * kvd, kvd), ShardPlacement.RowBlock(kvd * tp, h, rank * kvd, kvd), kvd, h);
            var o = P(p + "self_attn.o_proj.weight", Shards.Columns(w.O, h, qd * tp, rank * qd, qd), ShardPlacement.ColumnBlock(h, qd * tp, rank * qd, qd), h, qd);
            var postNorm = P(p + "post_attention_layernorm.weight", w.PostNorm, whole(1, h), h);
            string moe = p + "block_sparse_moe.";
            TrainParameter[] feedForward = _c.Experts == 0
                ? [P(p + "mlp.gate_proj.weight", Shards.Rows(w.Gate, h, rank * f, f), ShardPlacement.RowBlock(f * tp, h, rank * f, f), f, h),
                    P(p + "mlp.up_proj.weight", Shards.Rows(w.Up, h, rank * f, f), ShardPlacement.RowBlock(f * tp, h, rank * f, f), f, h),
                    P(p + "mlp.down_proj.weight", Shards.Columns(w.Down, h, f * tp, rank * f, f), ShardPlacement.ColumnBlock(h, f * tp, rank * f, f), h, f)]
                : [P(moe + "gate.weight", w.Router, whole(_c.Experts, h), _c.Experts, h),
                    .. Enumerable.Range(_firstExpert, expertsHere).SelectMany(e => new[]
                    {
                        Expert($"{moe}experts.{e}.w1.weight", w.Experts[e].Gate, f, h),
                        Expert($"{moe}experts.{e}.w3.weight", w.Experts[e].Up, f, h),
                        Expert($"{moe}experts.{e}.w2.weight", w.Experts[e].Down, h, f),
                    })];
            _layers[l] = new LayerParameters(inputNorm, q, k, v, o, postNorm, feedForward);
        }
        _finalNorm = Stage.IsLast ? P("model.norm.weight", weights.FinalNorm, whole(1, h), h) : null;
        _lmHead = Stage.IsLast ? P("lm_head.weight", Shards.Rows(weights.LmHead, h, _vocabStart, vl), vocabBlock, vl, h) : null;
        Parameters = [.. new[] { _embedding }.OfType<TrainParameter>(),
            .. _layers.SelectMany(l => new[] { l.InputNorm, l.Q, l.K, l.V, l.O, l.PostNorm }.Concat(l.FeedForward)),
            .. new[] { _finalNorm, _lmHead }.OfType<TrainParameter>()];
        if (offset != localParameters) throw new InvalidOperationException($"parameter tensors hold {offset} elements, the config counts {localParameters}");
        // Buckets, ZeRO shards and checkpoints read contiguous ranges of the flat buffers as runs of Parameters.
        long expectedOffset = 0;
        foreach (var parameter in Parameters)
        {
            if (parameter.Offset != expectedOffset)
                throw new InvalidOperationException($"{parameter.Name} sits at element {parameter.Offset} of the flat buffers, not {expectedOffset}: parameters must be allocated in Parameters order");
            expectedOffset += parameter.Count;
        }

        // The layers, over views of the buffers: forward reads the working copies, backward accumulates the gradients.
        static LayerWeight W(TrainParameter p) => new(p.Working, p.Grad);
        RmsNormLayer Norm(TrainParameter p) => new(device, W(p), _c.NormEps);
        _embeddingLayer = _embedding is null ? null : new VocabParallelEmbedding(device, W(_embedding), _vocabStart);
        _decoders = _layers.Select(l => new DecoderLayer(Norm(l.InputNorm), new AttentionLayer(device, W(l.Q), W(l.K), W(l.V), W(l.O)),
            Norm(l.PostNorm), FeedForwardOf(device, l.FeedForward))).ToArray();
        _head = _finalNorm is null || _lmHead is null ? null : new LmHead(device, Norm(_finalNorm), W(_lmHead));

        // Activations in the training dtype; F32 for what stays f32 whatever it is (log-sum-exps, losses, the norm).
        Tensor Allocate(DType t, int[] shape) => Keep(Tensor.Empty(device, t, shape));
        Tensor F(params int[] shape) => Allocate(dtype, shape);
        Tensor F32(params int[] shape) => Allocate(DType.F32, shape);
        Tensor I(int count) => Allocate(DType.I32, [count]);
        long before = BufferBytes();
        _pass = new TrainingPass(device, _c, _tp, sp, batch, sequence, dtype, Allocate, _ep?.Size ?? 1);
        _normTotal = F32(1);
        _rowMax = F32(_tp is null ? 0 : n);
        _rowSums = F32(_tp is null ? 0 : 2 * n);
        ScratchBytes = BufferBytes() - before;
        before = BufferBytes();
        Recompute = recompute;
        // Recompute: one set of everything but the residual stream, shared by the layers and the slots; each layer
        // of each slot keeps its input and mid.
        var shared = recompute && Stage.Layers > 0 ? _decoders[0].Keep(_pass) : null;
        ActivationSlot Slot(int index)
        {
            var layers = new DecoderActivations[Stage.Layers];
            for (int l = 0; l < Stage.Layers; l++)
                layers[l] = shared is null ? _decoders[l].Keep(_pass) : l == 0 && index == 0 ? shared : _decoders[l].Keep(_pass, shared);
            var ids = I(n);
            return new ActivationSlot(ids, _tp is null ? ids : I(n), I(n), layers, F(rows, h), Stage.IsLast ? F(rows, h) : F(0), Stage.IsLast ? F(n, vl) : F(0), F32(n));
        }
        _slots = Enumerable.Range(0, activationSlots).Select(Slot).ToArray();
        _slot = _slots[0];
        ActivationBytes = BufferBytes() - before;
        _hostIds = new int[n];
        _hostTargets = new int[n];
    }

    // A dense layer's SwiGLU MLP, or a MoE layer's router and experts (every expert on this device).
    private IFeedForward FeedForwardOf(IDevice device, TrainParameter[] p)
    {
        static LayerWeight W(TrainParameter p) => new(p.Working, p.Grad);
        if (_c.Experts == 0) return new MlpLayer(device, W(p[0]), W(p[1]), W(p[2]));
        var experts = new Dictionary<int, (LayerWeight, LayerWeight, LayerWeight)>();
        for (int i = 0; 1 + 3 * i < p.Length; i++) experts[_firstExpert + i] = (W(p[1 + 3 * i]), W(p[2 + 3 * i]), W(p[3 + 3 * i]));
        return new MoeLayer(device, new MoeExperts(device, _c, W(p[0]), experts), _ep, _firstExpert);
    }

    /// <summary>The model shape.</summary>
    public LlamaConfig Config => _c;

    /// <summary>
    /// Routings the MoE layers' experts dropped for capacity in the last forward of the current activation slot
    /// (each expert keeps its first ceil(capacity factor × routings / experts) in slot order); 0 for a dense model.
    /// </summary>
    public long DroppedRoutings => _slot.Layers.Sum(l => l.FeedForward switch
    {
        MoeActivations m => m.Dropped,
        MoeParallelActivations m => m.Dropped,
        _ => 0,
    });

    /// <summary>The expert-parallel group this trainer's experts are spread over; null when every expert is here.</summary>
    public ProcessGroup? ExpertParallel => _ep;

    /// <summary>The training dtype: of the weights forward reads, the activations and the gradients.</summary>
    public DType DType { get; }

    /// <summary>Whether backward recomputes each layer's activations instead of keeping them.</summary>
    public bool Recompute { get; }

    /// <summary>Every trained tensor, in Hugging Face order (embedding, layers, final norm, LM head).</summary>
    public IReadOnlyList<TrainParameter> Parameters { get; }

    /// <summary>Bytes of parameters (f32 masters and, for bf16 training, their bf16 working copies).</summary>
    public long ParameterBytes => Masters.Bytes + (ReferenceEquals(Working, Masters) ? 0 : Working.Bytes);

    /// <summary>Every parameter's f32 master value, one flat buffer in <see cref="Parameters"/> order (padded with zeros to a multiple of padTo).</summary>
    public Tensor Masters { get; }

    /// <summary>What forward reads, flat: <see cref="Masters"/> itself, or its bf16 copy.</summary>
    public Tensor Working { get; }

    /// <summary>Every parameter's gradient, one flat buffer in <see cref="Parameters"/> order (each <see cref="TrainParameter.Grad"/> is a view of it).</summary>
    public Tensor Gradients { get; }

    /// <summary>AdamW's first moments, flat (null when ZeRO-1 shards them).</summary>
    public Tensor? Moment1 { get; }

    /// <summary>AdamW's second moments, flat (null when ZeRO-1 shards them).</summary>
    public Tensor? Moment2 { get; }

    /// <summary>Bytes of gradients.</summary>
    public long GradientBytes => Gradients.Bytes;

    /// <summary>Bytes of optimizer state (AdamW's two moments).</summary>
    public long OptimizerBytes => (Moment1?.Bytes ?? 0) + (Moment2?.Bytes ?? 0);

    /// <summary>Bytes of activations kept from forward for backward (logits included), every slot together: the peak a step holds.</summary>
    public long ActivationBytes { get; }

    /// <summary>How many micro-batches' activations are kept at once.</summary>
    public int ActivationSlots => _slots.Length;

    /// <summary>Bytes of backward's scratch (gradients of activations, reused layer to layer).</summary>
    public long ScratchBytes { get; }

    /// <summary>
    /// Runs forward on (inputs, targets), B·T each, and returns Σ cross-entropy / lossTokens (the mean over the batch,
    /// or this replica's share of the global batch's mean); leaves dlogits for <see cref="Backward(Action{long}?)"/>.
    /// </summary>
    public double Forward(ReadOnlySpan<int> inputs, ReadOnlySpan<int> targets) => Forward(inputs, targets, stageInput: null);

    /// <summary>
    /// A pipeline stage's forward: the first stage embeds <paramref name="inputs"/>, the others start from
    /// <paramref name="stageInput"/> (tokens, hidden), the previous stage's output. The last stage returns its loss
    /// share; the others return 0 and leave their output in <see cref="StageOutput"/>.
    /// </summary>
    public double Forward(ReadOnlySpan<int> inputs, ReadOnlySpan<int> targets, Tensor? stageInput, int slot = 0)
    {
        _slot = SlotAt(slot);
        Upload(inputs, targets);
        var (saved, final) = (_slot.Layers, _slot.Final);
        var first = saved.Length > 0 ? saved[0].Input : final;
        if (_embeddingLayer is not null) _embeddingLayer.Forward(_pass, _slot.LocalIds, first);
        else (stageInput ?? throw new ArgumentException("a pipeline stage after the first needs the previous stage's output")).CopyTo(first);
        for (int l = 0; l < _decoders.Length; l++) _decoders[l].Forward(_pass, saved[l], l + 1 < saved.Length ? saved[l + 1].Input : final);
        if (_head is null) return 0;
        _head.Forward(_pass, final, _slot.FinalNormed, _slot.Logits);
        // The logits become dlogits in place: probabilities are never stored.
        if (_tp is null) CrossEntropy.Run(_slot.Logits, _slot.Targets, _slot.Losses, _slot.Logits, 1f / _lossTokens);
        else
            CrossEntropyVocabParallel.Run(_slot.Logits, _slot.Targets, _vocabStart, _c.Vocab, _rowMax, _rowSums, _slot.Losses, _slot.Logits, 1f / _lossTokens,
                t => SumOverTensorParallel(t, ReduceOp.Max), t => SumOverTensorParallel(t));
        double sum = 0;
        foreach (float loss in _slot.Losses.ToFloats()) sum += loss;
        return sum / _lossTokens;
    }

    /// <summary>Backward of the last <see cref="Forward(ReadOnlySpan{int}, ReadOnlySpan{int})"/>: every parameter's gradient, zeroed first.</summary>
    /// <param name="gradientsReady">
    /// Called as backward goes, with an offset into <see cref="Gradients"/> from which every gradient to the end is
    /// final (the LM head and final norm first, then each layer from the last, then the embedding: offset 0).
    /// Data parallelism starts all-reducing those buckets while backward goes on.
    /// </param>
    public void Backward(Action<long>? gradientsReady = null) => Backward(gradientsReady, stageOutputGrad: null, accumulate: false);

    /// <summary>
    /// A pipeline stage's backward: the last stage starts from its loss, the others from <paramref name="stageOutputGrad"/>
    /// (∂loss/∂<see cref="StageOutput"/>, from the next stage); every stage but the first leaves ∂loss/∂(its input) in
    /// <see cref="StageInputGrad"/>. With <paramref name="accumulate"/> the gradients add to what earlier micro-batches left.
    /// </summary>
    public void Backward(Action<long>? gradientsReady, Tensor? stageOutputGrad, bool accumulate, int slot = 0)
    {
        _slot = SlotAt(slot);
        if (!accumulate) Gradients.FillBytes(0);
        if (_head is not null)
        {
            _head.Backward(_pass, _slot.Final, _slot.FinalNormed, _slot.Logits);
            gradientsReady?.Invoke(OffsetOf(_finalNorm!));
        }
        else (stageOutputGrad ?? throw new ArgumentException("a pipeline stage before the last needs the gradient of its output")).CopyTo(_pass.Dx);
        for (int l = _decoders.Length - 1; l >= 0; l--)
        {
            var a = _slot.Layers[l];
            // Recomputation runs the layer's forward again, but for its residual adds (input and mid are kept).
            if (Recompute) _decoders[l].Forward(_pass, a, output: null);
            _decoders[l].Backward(_pass, a);
            gradientsReady?.Invoke(OffsetOf(_layers[l].InputNorm));
        }
        _embeddingLayer?.Backward(_pass, _slot.LocalIds);
        gradientsReady?.Invoke(0);
    }

    /// <summary>Which part of the model this trainer holds (the whole model unless it is a pipeline stage).</summary>
    public PipelineStage Stage { get; }

    /// <summary>A pipeline stage's output after <see cref="Forward(ReadOnlySpan{int}, ReadOnlySpan{int}, Tensor?, int)"/> (of the slot it used): (tokens, hidden), the next stage's input.</summary>
    public Tensor StageOutput => _slot.Final;

    /// <summary>The stage output kept in activation slot <paramref name="slot"/> (the micro-batch forward last ran there).</summary>
    public Tensor StageOutputOf(int slot) => SlotAt(slot).Final;

    /// <summary>∂loss/∂(stage input) after a stage's backward, (tokens, hidden): what goes to the previous stage.</summary>
    public Tensor StageInputGrad => _pass.Dx;

    /// <summary>
    /// Under sequence parallelism each rank's norm-weight gradients cover its own tokens only: sums them over the
    /// tensor-parallel group (once per step, after every micro-batch's backward). Nothing otherwise.
    /// </summary>
    public void SumSequenceParallelGradients()
    {
        if (!SequenceParallel) return;
        foreach (var p in Parameters)
            if (!p.IsTensorParallelShard) _tp!.AllReduce(p.Grad);
    }

    /// <summary>Whether the residual stream is cut by tokens over the tensor-parallel group.</summary>
    public bool SequenceParallel => _pass.Region.TokenSliced;

    /// <summary>Token rows of the residual stream on this rank (a pipeline stage's input and output): B·T, or B·T/tp under sequence parallelism.</summary>
    public int StageRows => _pass.Rows;

    // Megatron's all-reduce over the tensor-parallel group, in place (the cross-entropy's statistics).
    private void SumOverTensorParallel(Tensor t, ReduceOp op = ReduceOp.Sum)
    {
        if (_tp is null) return;
        _tp.AllReduce(t, op);
    }

    /// <summary>The ranks of the tensor-parallel group, 1 without one.</summary>
    public int TensorParallelSize => _tp?.Size ?? 1;

    // Where a parameter's gradient starts in the flat buffer.
    private static long OffsetOf(TrainParameter p) => p.Offset;

    /// <summary>
    /// ‖all gradients‖₂ of the whole model held here (the norm torch.nn.utils.clip_grad_norm_ computes), reduced on the
    /// device. A tensor-parallel shard holds part of the model: <see cref="ParallelTrainer"/> computes the norm over
    /// every rank's part (shards, replicated tensors, stages and replicas in one all-reduce).
    /// </summary>
    public double GradientNorm()
    {
        if (_tp is not null)
            throw new InvalidOperationException($"this trainer is one of {_tp.Size} tensor-parallel shards; its gradients are part of the model's: train it through ParallelTrainer");
        _normTotal.FillBytes(0);
        foreach (var p in Parameters) SumOfSquares.Accumulate(p.Grad, _normTotal);
        return Math.Sqrt(_normTotal.ToFloats()[0]);
    }

    /// <summary>
    /// One AdamW update of every parameter (<paramref name="step"/> ≥ 1 for bias correction); gradients are scaled by
    /// <paramref name="gradScale"/> (the clip coefficient). Weight decay applies to 2-D tensors only.
    /// </summary>
    public void Update(AdamWSettings settings, int step, float gradScale)
    {
        var noDecay = settings with { WeightDecay = 0f };
        foreach (var p in Parameters)
        {
            if (p.M is null || p.V is null) throw new InvalidOperationException("this trainer's AdamW moments are sharded (ZeRO-1): its data-parallel trainer updates it");
            AdamW.Step(p.Value, p.Grad, p.M, p.V, p.Decay ? settings : noDecay, step, gradScale, p.HasWorkingCopy ? p.Working : null);
        }
    }

    /// <summary>
    /// A whole single-device training step (a tensor-parallel shard steps through <see cref="ParallelTrainer"/>): forward, backward, the gradient norm, clipping as torch.nn.utils.clip_grad_norm_
    /// (coefficient min(1, clip / (norm + 1e-6)); <paramref name="gradClip"/> 0 turns it off) and the AdamW update.
    /// </summary>
    public StepResult Step(ReadOnlySpan<int> inputs, ReadOnlySpan<int> targets, AdamWSettings settings, int step, float gradClip)
    {
        double loss = Forward(inputs, targets);
        Backward();
        SumSequenceParallelGradients();
        double norm = GradientNorm();
        float coefficient = TrainingSteps.ClipCoefficient(norm, gradClip);
        Update(settings, step, coefficient);
        return new StepResult(loss, norm, coefficient);
    }


    private void Upload(ReadOnlySpan<int> inputs, ReadOnlySpan<int> targets)
    {
        if (inputs.Length != _tokens || targets.Length != _tokens)
            throw new ArgumentException($"a batch is B·T = {_batch}·{_seq} = {_tokens} inputs and targets; got {inputs.Length} and {targets.Length}");
        for (int i = 0; i < _tokens; i++)
        {
            if ((uint)inputs[i] >= (uint)_c.Vocab || (uint)targets[i] >= (uint)_c.Vocab)
                throw new ArgumentException($"token {Math.Max(inputs[i], targets[i])} at batch position {i} is outside the model's vocabulary of {_c.Vocab}");
        }
        inputs.CopyTo(_hostIds);
        targets.CopyTo(_hostTargets);
        _slot.Ids.CopyFromHost(System.Runtime.InteropServices.MemoryMarshal.AsBytes(_hostIds.AsSpan()));
        if (!ReferenceEquals(_slot.LocalIds, _slot.Ids))
        {
            for (int i = 0; i < _tokens; i++)
                _hostIds[i] = (uint)(_hostIds[i] - _vocabStart) < (uint)_vocabLocal ? _hostIds[i] - _vocabStart : -1;
            _slot.LocalIds.CopyFromHost(System.Runtime.InteropServices.MemoryMarshal.AsBytes(_hostIds.AsSpan()));
        }
        _slot.Targets.CopyFromHost(System.Runtime.InteropServices.MemoryMarshal.AsBytes(_hostTargets.AsSpan()));
    }

    private ActivationSlot SlotAt(int slot) => (uint)slot < (uint)_slots.Length ? _slots[slot]
        : throw new ArgumentOutOfRangeException(nameof(slot), $"activation slot {slot} does not exist: this trainer keeps {_slots.Length}");

    private Tensor Keep(Tensor t)
    {
        _buffers.Add(t);
        return t;
    }

    private long BufferBytes() => _buffers.Sum(b => b.Bytes);

    /// <inheritdoc/>
    public void Dispose()
    {
        Masters.Dispose();
        if (!ReferenceEquals(Working, Masters)) Working.Dispose();
        Gradients.Dispose();
        Moment1?.Dispose();
        Moment2?.Dispose();
        foreach (var b in _buffers) b.Dispose();
    }
}

/// <summary>What one training step measured: the mean loss before the update, the gradient norm before clipping, and the clip coefficient applied.</summary>
public readonly record struct StepResult(double Loss, double GradNorm, float ClipCoefficient);

/// <summary>A pipeline stage: layers [FirstLayer, FirstLayer + Layers); the first stage embeds, the last holds the head and the loss.</summary>
public sealed record PipelineStage(int FirstLayer, int Layers, bool IsFirst, bool IsLast)
{
    /// <summary>Stage <paramref name="index"/> of <paramref name="stages"/> over <paramref name="layers"/> layers, as even as they split (earlier stages take the remainder).</summary>
    public static PipelineStage Of(int index, int stages, int layers)
    {
        if (stages < 1 || index < 0 || index >= stages) throw new ArgumentException($"stage {index} of {stages}");
        if (layers < stages) throw new ArgumentException($"pipeline parallelism puts at least one layer on each stage: {layers} layers cannot fill pp={stages}");
        int baseCount = layers / stages, extra = layers % stages;
        int first = index * baseCount + Math.Min(index, extra);
        return new PipelineStage(first, baseCount + (index < extra ? 1 : 0), index == 0, index == stages - 1);
    }
}
