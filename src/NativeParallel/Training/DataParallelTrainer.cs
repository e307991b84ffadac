using NativeParallel.Comm;
using NativeParallel.Devices;
using NativeParallel.Kernels.Ops;
using NativeParallel.Models;
using NativeParallel.Tensors;

namespace NativeParallel.Training;

/// <summary>
/// Data parallelism for training, as PyTorch's DDP does it: every rank of <see cref="ProcessGroup"/> holds the whole
/// model; the global batch of B rows is split into B/dp rows per rank; each rank's loss is its share of the global
/// mean, so the sum of the ranks' gradients is the global batch's gradient. Gradients are all-reduced in buckets of
/// the flat gradient buffer, each started (as an ordered async collective) as soon as backward has finished every
/// gradient in it, so communication overlaps the rest of backward; the step waits only for the last bucket. Then
/// every rank computes the same norm and takes the same AdamW step, so the replicas stay bitwise identical.
/// With ZeRO stage 1 (<c>zero: 1</c>), DeepSpeed's optimizer-state sharding: the flat buffers are cut into one equal
/// shard per rank; gradients are reduce-scattered (each rank gets its shard summed over ranks), each rank keeps
/// AdamW's moments for its shard only and updates only its shard of the weights, then the weights are all-gathered.
/// The optimizer memory is divided by the degree; the model trained is the same.
/// </summary>
public sealed class DataParallelTrainer : IDisposable
{
    private readonly ProcessGroup _group;
    private readonly IDevice _device;
    private readonly int _globalBatch, _sequence, _localRows;
    private readonly long _bucketElements;
    private readonly int[] _localInputs, _localTargets;
    private readonly Tensor _loss;
    private readonly int _zero;
    private readonly long _shardStart, _shardLength;
    private readonly Tensor? _gradShard, _m, _v, _normTotal;

    /// <summary>A replica for rank <c>group.Rank</c> of a data-parallel group.</summary>
    /// <param name="group">The data-parallel group (its size is the degree).</param>
    /// <param name="device">This rank's device.</param>
    /// <param name="weights">The starting weights, the same on every rank.</param>
    /// <param name="globalBatch">B of the whole step, a multiple of the group size.</param>
    /// <param name="sequence">T.</param>
    /// <param name="bucketBytes">Bucket size for the gradient all-reduce (DDP's bucket_cap_mb; 25 MiB by default).</param>
    /// <param name="recompute">See <see cref="LlamaTrainer"/>.</param>
    /// <param name="dtype">See <see cref="LlamaTrainer"/>.</param>
    /// <param name="zero">0: every rank keeps the whole optimizer state; 1: ZeRO stage 1 (moments and updates sharded).</param>
    public DataParallelTrainer(ProcessGroup group, IDevice device, LlamaWeights weights, int globalBatch, int sequence,
        long bucketBytes = 25L << 20, bool recompute = false, DType dtype = DType.F32, int zero = 0)
    {
        if (zero is not (0 or 1)) throw new ArgumentException($"ZeRO stage {zero} is not supported (0 or 1)");
        if (globalBatch % group.Size != 0)
            throw new ArgumentException($"data parallelism splits the batch's rows over ranks: --batch {globalBatch} is not a multiple of dp={group.Size}");
        if (bucketBytes < 1) throw new ArgumentException($"bucket size must be positive, got {bucketBytes} bytes");
        _group = group;
        _device = device;
        _globalBatch = globalBatch;
        _sequence = sequence;
        _localRows = globalBatch / group.Size;
        _zero = zero;
        Trainer = new LlamaTrainer(device, weights, _localRows, sequence, recompute, dtype, lossTokens: globalBatch * sequence,
            padTo: group.Size, moments: zero == 0);
        if (zero == 1)
        {
            _shardLength = Trainer.Gradients.Count / group.Size;
            _shardStart = group.Rank * _shardLength;
            Tensor Zeros(DType t, int count)
            {
                var z = Tensor.Empty(device, t, count);
                z.FillBytes(0);
                return z;
            }
            _gradShard = Zeros(dtype, (int)_shardLength);
            _m = Zeros(DType.F32, (int)_shardLength);
            _v = Zeros(DType.F32, (int)_shardLength);
            _normTotal = Zeros(DType.F32, 1);
        }
        _bucketElements = Math.Max(1, bucketBytes / dtype.SizeOf());
        _localInputs = new int[_localRows * sequence];
        _localTargets = new int[_localRows * sequence];
        _loss = Tensor.Empty(CpuDevice.Instance, DType.F32, 1);
    }

    /// <summary>This rank's replica.</summary>
    public LlamaTrainer Trainer { get; }

    /// <summary>Bytes of AdamW state this rank holds: the whole model's moments, or with ZeRO-1 its shard's.</summary>
    public long OptimizerBytes => _zero == 1 ? _m!.Bytes + _v!.Bytes : Trainer.OptimizerBytes;

    /// <summary>Gradient buckets all-reduced in the last step.</summary>
    public int BucketsLastStep { get; private set; }

    /// <summary>
    /// One step on the global batch (B·T inputs and targets, the same on every rank; this rank takes its rows):
    /// forward and backward on its rows with bucketed all-reduces overlapping backward, then the global norm, clipping
    /// and AdamW exactly as <see cref="LlamaTrainer.Step"/>. Returns the global batch's loss.
    /// </summary>
    public StepResult Step(ReadOnlySpan<int> inputs, ReadOnlySpan<int> targets, AdamWSettings settings, int step, float gradClip)
    {
        int n = _globalBatch * _sequence, local = _localRows * _sequence;
        if (inputs.Length != n || targets.Length != n)
            throw new ArgumentException($"a global batch is B·T = {_globalBatch}·{_sequence} = {n} inputs and targets; got {inputs.Length} and {targets.Length}");
        inputs.Slice(_group.Rank * local, local).CopyTo(_localInputs);
        targets.Slice(_group.Rank * local, local).CopyTo(_localTargets);

        double localLoss = Trainer.Forward(_localInputs, _localTargets);
        if (_zero == 1) return ShardedStep(localLoss, settings, step, gradClip);
        var gradients = Trainer.Gradients;
        var pending = new List<Task>();
        long launchedFrom = gradients.Count;  // buckets cover [launchedFrom, end), from the end of the buffer back
        void Launch(long readyFrom)
        {
            // Whole buckets inside the ready region, and at the very end whatever is left.
            while (launchedFrom > 0 && (launchedFrom - readyFrom >= _bucketElements || readyFrom == 0))
            {
                long start = Math.Max(0, launchedFrom - _bucketElements);
                if (start < readyFrom) break;
                TrainingSteps.FinishQueuedWork(_device);
                var bucket = gradients.Narrow(0, (int)start, (int)(launchedFrom - start));
                pending.Add(_group.AllReduceAsync(bucket, bucket));
                launchedFrom = start;
            }
        }
        Trainer.Backward(Launch);
        Task.WaitAll(pending);
        BucketsLastStep = pending.Count;

        // The global loss: the ranks' shares of the global mean, summed.
        double loss = GlobalLoss(localLoss);

        double norm = Trainer.GradientNorm();
        float coefficient = TrainingSteps.ClipCoefficient(norm, gradClip);
        Trainer.Update(settings, step, coefficient);
        return new StepResult(loss, norm, coefficient);
    }

    // ZeRO-1: reduce-scatter the gradients, the norm from every rank's shard, AdamW on this rank's shard, all-gather.
    private StepResult ShardedStep(double localLoss, AdamWSettings settings, int step, float gradClip)
    {
        Trainer.Backward();
        TrainingSteps.FinishQueuedWork(_device);
        _group.ReduceScatter(Trainer.Gradients, _gradShard!);
        BucketsLastStep = 1;
        double loss = GlobalLoss(localLoss);

        _normTotal!.FillBytes(0);
        SumOfSquares.Accumulate(_gradShard!, _normTotal);
        _group.AllReduce(_normTotal);
        double norm = Math.Sqrt(_normTotal.ToFloats()[0]);
        float coefficient = TrainingSteps.ClipCoefficient(norm, gradClip);

        // Each parameter's part inside this rank's shard, with its own weight-decay rule.
        var noDecay = settings with { WeightDecay = 0f };
        long lo = _shardStart, hi = _shardStart + _shardLength;
        foreach (var p in Trainer.Parameters)
        {
            long start = Math.Max(lo, p.Offset), end = Math.Min(hi, p.Offset + p.Count);
            if (start >= end) continue;
            int at = (int)start, local = (int)(start - lo), count = (int)(end - start);
            AdamW.Step(Trainer.Masters.Narrow(0, at, count), _gradShard!.Narrow(0, local, count), _m!.Narrow(0, local, count), _v!.Narrow(0, local, count),
                p.Decay ? settings : noDecay, step, coefficient, p.HasWorkingCopy ? Trainer.Working.Narrow(0, at, count) : null);
        }
        TrainingSteps.FinishQueuedWork(_device);
        // Every rank's updated shard to every rank (in place: this rank's shard is its own chunk of the buffer).
        _group.AllGather(Trainer.Masters.Narrow(0, (int)lo, (int)_shardLength), Trainer.Masters);
        if (!ReferenceEquals(Trainer.Working, Trainer.Masters))
            _group.AllGather(Trainer.Working.Narrow(0, (int)lo, (int)_shardLength), Trainer.Working);
        return new StepResult(loss, norm, coefficient);
    }

    private double GlobalLoss(double localLoss)
    {
        _loss.CopyFromHost(BitConverter.GetBytes((float)localLoss));
        _group.AllReduce(_loss);
        return _loss.ToFloats()[0];
    }

    /// <summary>The global batch's mean loss without an update (validation): every rank its rows, the shares summed.</summary>
    public double Evaluate(ReadOnlySpan<int> inputs, ReadOnlySpan<int> targets)
    {
        int local = _localRows * _sequence;
        inputs.Slice(_group.Rank * local, local).CopyTo(_localInputs);
        targets.Slice(_group.Rank * local, local).CopyTo(_localTargets);
        return GlobalLoss(Trainer.Forward(_localInputs, _localTargets));
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        Trainer.Dispose();
        _loss.Dispose();
        _gradShard?.Dispose();
        _m?.Dispose();
        _v?.Dispose();
        _normTotal?.Dispose();
    }
}
