using NativeParallel.Comm;
using NativeParallel.Devices;
using NativeParallel.Tensors;

namespace NativeParallel.Training;

/// <summary>
/// PyTorch DDP's gradient buckets over a flat gradient buffer: backward produces gradients from the end of the
/// buffer back and reports how far they are final; every whole bucket inside that region is all-reduced at once (an
/// ordered async collective on the data-parallel group) while backward goes on, and what is left at the front goes
/// when backward reaches offset 0. The step waits only for the buckets still in flight.
/// </summary>
internal sealed class GradientBuckets(ProcessGroup group, IDevice device, Tensor gradients, long bucketElements)
{
    private readonly List<Task> _pending = [];
    private long _launchedFrom;

    /// <summary>Buckets all-reduced in the last step.</summary>
    public int LastCount { get; private set; }

    /// <summary>Starts a step: nothing launched yet.</summary>
    public void Begin()
    {
        _pending.Clear();
        _launchedFrom = gradients.Count;
    }

    /// <summary>Every gradient from <paramref name="readyFrom"/> to the end is final: launch the whole buckets inside it (at 0, the rest).</summary>
    public void Ready(long readyFrom)
    {
        while (_launchedFrom > 0 && (_launchedFrom - readyFrom >= bucketElements || readyFrom == 0))
        {
            long start = Math.Max(0, _launchedFrom - bucketElements);
            if (start < readyFrom) break;
            // The collective reads the bucket from another thread: the kernels that wrote it must have finished.
            TrainingSteps.FinishQueuedWork(device);
            var bucket = gradients.Narrow(0, (int)start, (int)(_launchedFrom - start));
            _pending.Add(group.AllReduceAsync(bucket, bucket));
            _launchedFrom = start;
        }
    }

    /// <summary>Waits for every bucket launched in this step.</summary>
    public void Finish()
    {
        if (_launchedFrom != 0) throw new InvalidOperationException($"backward reported gradients final only from element {_launchedFrom}; the buckets before it were never all-reduced");
        Task.WaitAll(_pending);
        LastCount = _pending.Count;
    }
}
