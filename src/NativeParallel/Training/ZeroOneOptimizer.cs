using NativeParallel.Comm;
using NativeParallel.Devices;
using NativeParallel.Kernels.Ops;
using NativeParallel.Tensors;

namespace NativeParallel.Training;

/// <summary>
/// DeepSpeed's ZeRO stage 1 over a data-parallel group: the trainer's flat buffers are cut into one equal shard per
/// rank; the gradients are reduce-scattered (each rank gets its shard summed over the group), each rank keeps AdamW's
/// moments for its shard only and updates only its shard of the weights, then the weights are all-gathered. The
/// optimizer memory is divided by the group's size; the model trained is the same.
/// </summary>
internal sealed class ZeroOneOptimizer : IDisposable
{
    private readonly ProcessGroup _group;
    private readonly IDevice _device;
    private readonly LlamaTrainer _trainer;

    public ZeroOneOptimizer(ProcessGroup group, IDevice device, LlamaTrainer trainer)
    {
        if (trainer.Gradients.Count % group.Size != 0)
            throw new ArgumentException($"ZeRO-1 cuts the flat buffers into {group.Size} equal shards; the trainer's {trainer.Gradients.Count} elements are not padded to a multiple");
        _group = group;
        _device = device;
        _trainer = trainer;
        ShardLength = trainer.Gradients.Count / group.Size;
        ShardStart = group.Rank * ShardLength;
        Tensor Zeros(DType t)
        {
            var z = Tensor.Empty(device, t, (int)ShardLength);
            z.FillBytes(0);
            return z;
        }
        GradientShard = Zeros(trainer.DType);
        Moment1 = Zeros(DType.F32);
        Moment2 = Zeros(DType.F32);
    }

    /// <summary>This rank's shard of the flat buffers: [ShardStart, ShardStart + ShardLength).</summary>
    public long ShardStart { get; }

    /// <summary>Elements per shard.</summary>
    public long ShardLength { get; }

    /// <summary>This rank's shard of the gradients, summed over the group (after <see cref="ReduceScatter"/>).</summary>
    public Tensor GradientShard { get; }

    /// <summary>AdamW's first moments of this rank's shard.</summary>
    public Tensor Moment1 { get; }

    /// <summary>AdamW's second moments of this rank's shard.</summary>
    public Tensor Moment2 { get; }

    /// <summary>Bytes of AdamW state this rank holds.</summary>
    public long Bytes => Moment1.Bytes + Moment2.Bytes;

    /// <summary>Each rank's shard of the gradients summed over the group.</summary>
    public void ReduceScatter()
    {
        _group.ReduceScatter(_trainer.Gradients, GradientShard);
    }

    /// <summary>The parts of the trainer's parameters inside this rank's shard: the parameter, its first element in the shard and the count.</summary>
    public IEnumerable<(TrainParameter Parameter, long Start, int Count)> PartsInShard()
    {
        long lo = ShardStart, hi = ShardStart + ShardLength;
        foreach (var p in _trainer.Parameters)
        {
            long start = Math.Max(lo, p.Offset), end = Math.Min(hi, p.Offset + p.Count);
            if (start < end) yield return (p, start, (int)(end - start));
        }
    }

    /// <summary>AdamW on this rank's shard, each part with its own weight-decay rule; then every rank's updated shard to every rank.</summary>
    public void Update(AdamWSettings settings, int step, float gradScale)
    {
        var noDecay = settings with { WeightDecay = 0f };
        foreach (var (p, start, count) in PartsInShard())
        {
            int at = (int)start, local = (int)(start - ShardStart);
            AdamW.Step(_trainer.Masters.Narrow(0, at, count), GradientShard.Narrow(0, local, count), Moment1.Narrow(0, local, count), Moment2.Narrow(0, local, count),
                p.Decay ? settings : noDecay, step, gradScale, p.HasWorkingCopy ? _trainer.Working.Narrow(0, at, count) : null);
        }
        // In place: this rank's shard is its own chunk of the gathered buffer.
        _group.AllGather(_trainer.Masters.Narrow(0, (int)ShardStart, (int)ShardLength), _trainer.Masters);
        if (!ReferenceEquals(_trainer.Working, _trainer.Masters))
            _group.AllGather(_trainer.Working.Narrow(0, (int)ShardStart, (int)ShardLength), _trainer.Working);
    }

    public void Dispose()
    {
        GradientShard.Dispose();
        Moment1.Dispose();
        Moment2.Dispose();
    }
}
