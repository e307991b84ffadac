namespace NativeParallel.Devices;

/// <summary>
/// Freed device allocations kept by size for reuse, so a decode step that allocates the same temporaries every
/// token does not pay cuMemAlloc/cuMemFree (a synchronising driver call) each time. Sizes are rounded up to
/// <see cref="Granularity"/>; at most <see cref="Capacity"/> bytes wait in the cache, the rest are released.
/// </summary>
internal sealed class BlockCache(long capacity, Action<ulong> release)
{
    /// <summary>Allocation sizes are rounded up to this many bytes (the driver's own granularity).</summary>
    public const long Granularity = 512;

    private readonly Dictionary<long, Stack<ulong>> _free = new();
    private long _cached;

    /// <summary>Bytes the cache may hold.</summary>
    public long Capacity { get; } = capacity;

    /// <summary>Bytes now held.</summary>
    public long CachedBytes
    {
        get { lock (_free) return _cached; }
    }

    /// <summary>The size an allocation of <paramref name="bytes"/> really takes.</summary>
    public static long RoundUp(long bytes) => (Math.Max(bytes, 1) + Granularity - 1) / Granularity * Granularity;

    /// <summary>A cached block of exactly <paramref name="size"/> (rounded) bytes, if any.</summary>
    public bool TryTake(long size, out ulong pointer)
    {
        lock (_free)
        {
            if (_free.TryGetValue(size, out var stack) && stack.Count > 0)
            {
                pointer = stack.Pop();
                _cached -= size;
                return true;
            }
        }
        pointer = 0;
        return false;
    }

    /// <summary>Keeps a freed block, or releases it when the cache is full.</summary>
    public void Return(long size, ulong pointer)
    {
        lock (_free)
        {
            if (_cached + size <= Capacity)
            {
                if (!_free.TryGetValue(size, out var stack)) _free[size] = stack = new Stack<ulong>();
                stack.Push(pointer);
                _cached += size;
                return;
            }
        }
        release(pointer);
    }

    /// <summary>Releases every cached block (before retrying an allocation that ran out of memory, and at shutdown).</summary>
    public void Flush()
    {
        List<ulong> all;
        lock (_free)
        {
            all = _free.Values.SelectMany(s => s).ToList();
            _free.Clear();
            _cached = 0;
        }
        foreach (ulong p in all) release(p);
    }
}
