using NativeParallel.Comm;
using NativeParallel.Devices;
using NativeParallel.Tensors;

namespace NativeParallel.Training;

/// <summary>
/// PyTorch DDP's gradient buckets over a flat gradient buffer: backward produces gradients from the end of the
/// buffer back and reports how far they are final; every whole bucket inside that region is all-reduced at once (an
/// ordered async collective on the data-parallel group) while backward goes on, and what is left at the front goes
/// when backward reaches offset 0. The step waits only for the buckets still in flight.
/// The all-reduces run on a communication stream of their own, ordered by events: each bucket after the compute
/// work that wrote it (the stream current at <see cref="Ready"/>), and the optimizer's stream after every bucket
/// (<see cref="Finish"/>), so on a GPU backward's kernels and the reductions overlap and nothing waits on the host.
/// </summary>
internal sealed class GradientBuckets(ProcessGroup group, IDevice device, Tensor gradients, long bucketElements) : IDisposable
{
    private readonly List<CollectiveWork> _pending = [];
    private readonly IDeviceStream _communication = device.CreateStream();
    private readonly IDeviceEvent _written = device.CreateEvent();
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
            // The reduction reads the bucket after the kernels that wrote it: the communication stream waits for them.
            _written.Record(device.CurrentStream());
            _communication.Wait(_written);
            var bucket = gradients.Narrow(0, (int)start, (int)(_launchedFrom - start));
            using (device.UseStream(_communication)) _pending.Add(group.AllReduceAsync(bucket, bucket));
            _launchedFrom = start;
        }
    }

    /// <summary>Waits for every bucket launched in this step.</summary>
    public void Finish()
    {
        if (_launchedFrom != 0) throw new InvalidOperationException($"backward reported gradients final only from element {_launchedFrom}; the buckets before it were never all-reduced");
        // Every bucket ran on the communication stream, in order: once the host has seen each call issued (a
        // failure is thrown here), the caller's stream (the optimizer) waits on the device for the last one.
        foreach (var work in _pending) work.Wait();
        if (_pending.Count > 0) _pending[^1].Wait(device.CurrentStream());
        LastCount = _pending.Count;
    }

    public void Dispose()
    {
        _written.Dispose();
        _communication.Dispose();
    }
}
