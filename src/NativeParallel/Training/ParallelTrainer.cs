using NativeParallel.Comm;
using NativeParallel.Devices;
using NativeParallel.Diagnostics;
using NativeParallel.Kernels.Ops;
using NativeParallel.Models;
using NativeParallel.Tensors;

namespace NativeParallel.Training;

/// <summary>How a <see cref="ParallelTrainer"/> runs its step.</summary>
/// <param name="MicroBatches">Each replica's rows are cut into this many micro-batches (the pipeline's m; gradient accumulation without a pipeline).</param>
/// <param name="Schedule">The pipeline schedule.</param>
/// <param name="BucketBytes">Data parallelism's all-reduce bucket (DDP's bucket_cap_mb; 25 MiB by default).</param>
/// <param name="Recompute">See <see cref="LlamaTrainer"/>.</param>
/// <param name="DType">f32, or bf16 mixed precision.</param>
/// <param name="Zero">0: every data-parallel rank keeps the whole optimizer state; 1: ZeRO stage 1.</param>
/// <param name="SequenceParallel">With tensor parallelism, Megatron's sequence parallelism (see <see cref="LlamaTrainer"/>).</param>
/// <param name="ExpertParallel">
/// A mixture-of-experts model's experts spread over the data-parallel group (ep = dp, see <see cref="LlamaTrainer"/>):
/// each rank trains its own experts on every rank's routings; the other gradients are all-reduced over the group.
/// </param>
public sealed record ParallelTrainingOptions(int MicroBatches = 1, PipelineScheduleKind Schedule = PipelineScheduleKind.OneForwardOneBackward,
    long BucketBytes = 25L << 20, bool Recompute = false, DType DType = DType.F32, int Zero = 0, bool SequenceParallel = false, bool ExpertParallel = false);

/// <summary>
/// One rank of a training job on a 3-D mesh (<see cref="DeviceMesh"/>: dp replicas × pp stages × tp shards, tensor
/// parallelism innermost), the same code for every layout down to one device:
/// <list type="bullet">
/// <item>data parallelism splits the global batch's rows over the replicas, each rank's loss being its share of the
/// global mean; gradients are all-reduced in buckets during the last micro-batch's backward, or with ZeRO-1
/// reduce-scattered, the optimizer sharded and the weights all-gathered;</item>
/// <item>pipeline parallelism holds a block of layers per stage and runs a schedule written as data
/// (<see cref="PipelineSchedule"/>: GPipe or 1F1B) over m micro-batches, gradients accumulating;</item>
/// <item>tensor parallelism is Megatron's column- and row-parallel layers inside <see cref="LlamaTrainer"/>;</item>
/// <item>expert parallelism (a mixture-of-experts model, ep = dp) spreads the experts over the replicas: each rank's
/// experts see every rank's routings by all-to-all, and only the shared parameters' gradients are all-reduced.</item>
/// </list>
/// The gradient norm is over the whole model: tensor-parallel shards summed over their group, replicated tensors once,
/// the stages' disjoint layers summed, and one copy per data-parallel group, in one all-reduce over the world with the
/// loss. Every layout trains the model one device would train on the same global batch.
/// </summary>
public sealed class ParallelTrainer : IDisposable
{
    private const int GradientTag = 1 << 20;
    private readonly DeviceMesh _mesh;
    private readonly IDevice _device;
    private readonly ParallelTrainingOptions _options;
    private readonly int _globalBatch, _sequence, _rowsPerMicroBatch;
    private readonly PipelineAction[] _training, _forwardOnly;
    private readonly Tensor[] _stageInputs;
    private readonly Tensor? _outputGrad;
    private readonly Tensor _reduced;
    private readonly GradientBuckets? _buckets;
    private readonly Action<long>? _bucketsReady;
    private readonly ZeroOneOptimizer? _zero;
    private readonly int[] _inputs, _targets;

    /// <summary>This rank of <paramref name="mesh"/>; every rank calls it with the same weights and options.</summary>
    public ParallelTrainer(DeviceMesh mesh, IDevice device, LlamaWeights weights, int globalBatch, int sequence, ParallelTrainingOptions? options = null)
    {
        _options = options ??= new ParallelTrainingOptions();
        int dp = mesh.DataParallel, pp = mesh.PipelineParallel, m = options.MicroBatches;
        if (options.Zero is not (0 or 1)) throw new ArgumentException($"ZeRO stage {options.Zero} is not supported (0 or 1)");
        if (m < 1) throw new ArgumentException($"--micro-batches must be at least 1, got {m}");
        if (globalBatch % (dp * m) != 0)
            throw new ArgumentException($"the batch's rows are split over dp={dp} replicas and {m} micro-batches each: --batch {globalBatch} is not a multiple of {dp * m}");
        if (options.BucketBytes < 1) throw new ArgumentException($"bucket size must be positive, got {options.BucketBytes} bytes");
        if (pp > weights.Config.Layers)
            throw new ArgumentException($"pipeline parallelism puts at least one layer on each stage: {weights.Config.Layers} layers cannot fill pp={pp}");
        if (options.ExpertParallel && (dp < 2 || pp > 1 || mesh.TensorParallel > 1 || options.Zero != 0))
            throw new ArgumentException($"expert parallelism in training spreads the experts over the data-parallel ranks alone: give dp=N, N > 1, " +
                $"with pp=1, tp=1 and zero=0 (got dp={dp}, pp={pp}, tp={mesh.TensorParallel}, zero={options.Zero})");
        _mesh = mesh;
        _device = device;
        _globalBatch = globalBatch;
        _sequence = sequence;
        _rowsPerMicroBatch = globalBatch / dp / m;
        var stage = PipelineStage.Of(mesh.PpRank, pp, weights.Config.Layers);
        int slots = PipelineSchedule.InFlight(options.Schedule, pp, mesh.PpRank, m);
        Trainer = new LlamaTrainer(device, weights, _rowsPerMicroBatch, sequence, options.Recompute, options.DType, lossTokens: globalBatch * sequence,
            padTo: options.Zero == 1 ? dp : 1, moments: options.Zero == 0, tensorParallel: mesh.Tp, stage: stage, activationSlots: slots,
            sequenceParallel: options.SequenceParallel, expertParallel: options.ExpertParallel ? mesh.Dp : null);
        if (options.SequenceParallel && mesh.TensorParallel < 2)
            throw new ArgumentException("sequence parallelism cuts tokens over the tensor-parallel group: give tp=N, N > 1");
        _training = PipelineSchedule.Training(options.Schedule, pp, mesh.PpRank, m);
        _forwardOnly = PipelineSchedule.ForwardOnly(pp, mesh.PpRank, m);
        int tokens = _rowsPerMicroBatch * sequence, stageRows = Trainer.StageRows, h = weights.Config.Hidden;
        _stageInputs = stage.IsFirst ? [] : Enumerable.Range(0, slots).Select(_ => Tensor.Empty(device, options.DType, stageRows, h)).ToArray();
        _outputGrad = stage.IsLast ? null : Tensor.Empty(device, options.DType, stageRows, h);
        _reduced = Tensor.Empty(device, DType.F32, 2);
        if (options.Zero == 1) _zero = new ZeroOneOptimizer(mesh.Dp, device, Trainer);
        else if (dp > 1 && !options.ExpertParallel)
        {
            _buckets = new GradientBuckets(mesh.Dp, device, Trainer.Gradients, Math.Max(1, options.BucketBytes / options.DType.SizeOf()));
            _bucketsReady = _buckets.Ready;
        }
        _inputs = new int[tokens];
        _targets = new int[tokens];
    }

    /// <summary>This rank's part of the model.</summary>
    public LlamaTrainer Trainer { get; }

    /// <summary>The mesh this rank belongs to.</summary>
    public DeviceMesh Mesh => _mesh;

    /// <summary>The schedule's actions for this stage, as run by every training step.</summary>
    public IReadOnlyList<PipelineAction> Schedule => _training;

    /// <summary>The pipeline's idle fraction: (p − 1)/(m + p − 1), 0 without a pipeline.</summary>
    public double Bubble => PipelineSchedule.Bubble(_mesh.PipelineParallel, _options.MicroBatches);

    /// <summary>Bytes of AdamW state this rank holds: its part of the model's moments, or with ZeRO-1 its shard's.</summary>
    public long OptimizerBytes => _zero?.Bytes ?? Trainer.OptimizerBytes;

    /// <summary>Bytes of activations this rank holds at its peak: the micro-batches in flight (activation slots) and the received stage inputs.</summary>
    public long ActivationBytes => Trainer.ActivationBytes + _stageInputs.Sum(t => t.Bytes) + (_outputGrad?.Bytes ?? 0);

    /// <summary>Gradient buckets all-reduced in the last step (ZeRO-1: one reduce-scatter).</summary>
    public int BucketsLastStep => _zero is not null ? 1 : _buckets?.LastCount ?? 0;

    /// <summary>AdamW's moments under ZeRO-1: this rank's shard and where it starts in the flat buffers; null otherwise.</summary>
    internal ZeroOneOptimizer? Zero => _zero;

    /// <summary>
    /// One step on the global batch (B·T inputs and targets, the same on every rank): this replica's rows through the
    /// schedule, gradients synchronised over the replicas, the whole model's norm, clipping as
    /// torch.nn.utils.clip_grad_norm_ and AdamW. Returns the global batch's loss on every rank.
    /// </summary>
    public StepResult Step(ReadOnlySpan<int> inputs, ReadOnlySpan<int> targets, AdamWSettings settings, int step, float gradClip)
    {
        CheckBatch(inputs, targets);
        int lastBackward = Array.FindLastIndex(_training, a => a.Op == PipelineOp.Backward);
        bool firstBackward = true;
        double loss = 0;
        _buckets?.Begin();
        for (int i = 0; i < _training.Length; i++)
        {
            var action = _training[i];
            if (action.Op == PipelineOp.Backward)
            {
                // Buckets go while the last micro-batch's backward runs: only then is each gradient final.
                using var traced = Tracer.Phase("backward"); // a trace shows the buckets' all-reduces against it
                Trainer.Backward(i == lastBackward ? _bucketsReady : null, _outputGrad, accumulate: !firstBackward, Slot(action.MicroBatch));
                firstBackward = false;
            }
            else loss += Run(action, inputs, targets);
        }
        _buckets?.Finish();
        SumReplicatedGradients();
        Trainer.SumSequenceParallelGradients();
        _zero?.ReduceScatter();

        // One all-reduce over the world carries the loss (the last stage's, once per tensor-parallel group) and the
        // squared norm (tensor-parallel shards from every rank of their group, replicated tensors from its rank 0;
        // one data-parallel copy, or every rank's ZeRO shard).
        _reduced.FillBytes(0);
        var squares = _reduced.Narrow(0, 0, 1);
        bool tpLead = _mesh.TpRank == 0;
        if (_zero is not null)
        {
            foreach (var (p, start, count) in _zero.PartsInShard())
                if (p.IsTensorParallelShard || tpLead) SumOfSquares.Accumulate(_zero.GradientShard.Narrow(0, (int)(start - _zero.ShardStart), count), squares);
        }
        else
        {
            // One data-parallel copy of what replicas share; every rank's own experts under expert parallelism.
            foreach (var p in Trainer.Parameters)
                if ((_mesh.DpRank == 0 || p.IsExpertShard) && (p.IsTensorParallelShard || tpLead)) SumOfSquares.Accumulate(p.Grad, squares);
        }
        var (lossSum, squareSum) = ReduceOverWorld(Trainer.Stage.IsLast && tpLead ? loss : 0);
        double norm = Math.Sqrt(squareSum);
        float coefficient = TrainingSteps.ClipCoefficient(norm, gradClip);
        if (_zero is not null) _zero.Update(settings, step, coefficient);
        else Trainer.Update(settings, step, coefficient);
        return new StepResult(lossSum, norm, coefficient);
    }

    // Expert parallelism: the gradients the replicas share (all but this rank's experts) summed over the group, each
    // run of consecutive shared parameters in one all-reduce. The buckets are off there, since they cover the whole
    // flat buffer and the experts' gradients are already final on their rank.
    private void SumReplicatedGradients()
    {
        if (!_options.ExpertParallel) return;
        var parameters = Trainer.Parameters;
        for (int i = 0; i < parameters.Count;)
        {
            if (parameters[i].IsExpertShard)
            {
                i++;
                continue;
            }
            int first = i;
            long count = 0;
            for (; i < parameters.Count && !parameters[i].IsExpertShard; i++) count += parameters[i].Count;
            _mesh.Dp.AllReduce(Trainer.Gradients.Narrow(0, (int)parameters[first].Offset, (int)count));
        }
    }

    /// <summary>The global batch's mean loss without an update (validation): every micro-batch forward through the stages.</summary>
    public double Evaluate(ReadOnlySpan<int> inputs, ReadOnlySpan<int> targets)
    {
        CheckBatch(inputs, targets);
        double loss = 0;
        foreach (var action in _forwardOnly) loss += Run(action, inputs, targets);
        _reduced.FillBytes(0);
        return ReduceOverWorld(Trainer.Stage.IsLast && _mesh.TpRank == 0 ? loss : 0).Loss;
    }

    // Runs one action other than a backward; returns the loss share of a forward on the last stage.
    private double Run(PipelineAction action, ReadOnlySpan<int> inputs, ReadOnlySpan<int> targets)
    {
        var pp = _mesh.Pp;
        int previous = pp.Rank - 1, next = pp.Rank + 1, slot = Slot(action.MicroBatch);
        switch (action.Op)
        {
            case PipelineOp.RecvActivation:
                pp.Recv(_stageInputs[slot], previous, action.MicroBatch);
                return 0;
            case PipelineOp.Forward:
            {
                using var traced = Tracer.Phase("forward");
                Load(inputs, targets, action.MicroBatch);
                return Trainer.Forward(_inputs, _targets, Trainer.Stage.IsFirst ? null : _stageInputs[slot], slot);
            }
            case PipelineOp.SendActivation:
                pp.Send(Trainer.StageOutputOf(slot), next, action.MicroBatch);
                return 0;
            case PipelineOp.RecvGradient:
                pp.Recv(_outputGrad!, next, GradientTag + action.MicroBatch);
                return 0;
            case PipelineOp.SendGradient:
                pp.Send(Trainer.StageInputGrad, previous, GradientTag + action.MicroBatch);
                return 0;
            case PipelineOp.SendActivationRecvGradient:
                pp.SendRecv(Trainer.StageOutputOf(slot), next, action.MicroBatch, _outputGrad!, next, GradientTag + action.Other);
                return 0;
            case PipelineOp.SendGradientRecvActivation:
                pp.SendRecv(Trainer.StageInputGrad, previous, GradientTag + action.MicroBatch, _stageInputs[Slot(action.Other)], previous, action.Other);
                return 0;
            default:
                throw new InvalidOperationException($"pipeline action {action} cannot run here");
        }
    }

    // Micro-batches leave in the order they came (both schedules), so micro-batch i can take slot i mod slots.
    private int Slot(int microBatch) => microBatch % Trainer.ActivationSlots;

    private (double Loss, double Squares) ReduceOverWorld(double loss)
    {
        _reduced.Narrow(0, 1, 1).CopyFromHost(BitConverter.GetBytes((float)loss));
        _mesh.World.AllReduce(_reduced);
        var values = _reduced.ToFloats();
        return (values[1], values[0]);
    }

    private void CheckBatch(ReadOnlySpan<int> inputs, ReadOnlySpan<int> targets)
    {
        int n = _globalBatch * _sequence;
        if (inputs.Length != n || targets.Length != n)
            throw new ArgumentException($"a global batch is B·T = {_globalBatch}·{_sequence} = {n} inputs and targets; got {inputs.Length} and {targets.Length}");
    }

    // This replica's rows of the global batch, micro-batch by micro-batch.
    private void Load(ReadOnlySpan<int> inputs, ReadOnlySpan<int> targets, int microBatch)
    {
        int perMicroBatch = _rowsPerMicroBatch * _sequence;
        int start = (_mesh.DpRank * _options.MicroBatches + microBatch) * perMicroBatch;
        inputs.Slice(start, perMicroBatch).CopyTo(_inputs);
        targets.Slice(start, perMicroBatch).CopyTo(_targets);
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        Trainer.Dispose();
        _buckets?.Dispose();
        foreach (var t in _stageInputs) t.Dispose();
        _outputGrad?.Dispose();
        _reduced.Dispose();
        _zero?.Dispose();
    }
}
