namespace NativeParallel.Devices;

/// <summary>
/// Freed device allocations kept by size for reuse, so a decode step that allocates the same temporaries every
/// token does not pay cuMemAlloc/cuMemFree (a synchronising driver call) each time. Sizes are rounded up to
/// <see cref="Granularity"/>; at most <see cref="Capacity"/> bytes wait in the cache, the rest are released.
/// </summary>
/// <remarks>
/// A block remembers the stream that freed it (the stream that last used it) and a fence recorded there at the
/// free. The same stream may take it back at once: its later work follows the earlier in stream order. Another
/// stream takes it only once the fence has passed, so work still queued on the first stream never sees its memory
/// overwritten by the second (the rule of PyTorch's caching allocator, without its per-use bookkeeping).
/// </remarks>
internal sealed class BlockCache(long capacity, Action<ulong> release)
{
    /// <summary>Allocation sizes are rounded up to this many bytes (the driver's own granularity).</summary>
    public const long Granularity = 512;

    /// <summary>A point in a stream's work: passed once everything issued before it has finished.</summary>
    public interface IFence : IDisposable
    {
        /// <summary>True once the stream's work up to the fence has finished (never blocks).</summary>
        bool Passed { get; }
    }

    private readonly record struct Block(ulong Pointer, object Stream, IFence? Fence);

    private readonly Dictionary<long, List<Block>> _free = new();
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

    /// <summary>
    /// A cached block of exactly <paramref name="size"/> (rounded) bytes that <paramref name="stream"/> may use now:
    /// one it freed itself, or one whose fence has passed.
    /// </summary>
    public bool TryTake(long size, object stream, out ulong pointer)
    {
        IFence? spent = null;
        lock (_free)
        {
            pointer = 0;
            if (!_free.TryGetValue(size, out var blocks)) return false;
            // This stream's own blocks first (newest: likeliest still in the L2), then the oldest of the others
            // whose fence has passed.
            int found = -1;
            for (int i = blocks.Count - 1; i >= 0 && found < 0; i--)
                if (ReferenceEquals(blocks[i].Stream, stream)) found = i;
            for (int i = 0; i < blocks.Count && found < 0; i++)
                if (blocks[i].Fence is null || blocks[i].Fence!.Passed) found = i;
            if (found < 0) return false;
            var block = blocks[found];
            blocks.RemoveAt(found);
            _cached -= size;
            pointer = block.Pointer;
            spent = block.Fence;
        }
        spent?.Dispose();
        return true;
    }

    /// <summary>Keeps a block freed on <paramref name="stream"/> with its <paramref name="fence"/>, or releases it when the cache is full.</summary>
    public void Return(long size, ulong pointer, object stream, IFence? fence)
    {
        lock (_free)
        {
            if (_cached + size <= Capacity)
            {
                if (!_free.TryGetValue(size, out var blocks)) _free[size] = blocks = new List<Block>();
                blocks.Add(new Block(pointer, stream, fence));
                _cached += size;
                return;
            }
        }
        fence?.Dispose();
        release(pointer); // the driver's free synchronises by itself
    }

    /// <summary>Releases every cached block (before retrying an allocation that ran out of memory, and at shutdown; the caller synchronises first).</summary>
    public void Flush()
    {
        List<Block> all;
        lock (_free)
        {
            all = _free.Values.SelectMany(s => s).ToList();
            _free.Clear();
            _cached = 0;
        }
        foreach (var block in all)
        {
            block.Fence?.Dispose();
            release(block.Pointer);
        }
    }
}
