namespace NativeParallel.Comm.Transports;

/// <summary>
/// A single-producer single-consumer byte ring in memory both sides can see (process memory for thread ranks, a
/// mapped file in /dev/shm for process ranks). The producer owns the write index, the consumer the read index,
/// each on its own cache line; publishing is a release store after the copy, observing an acquire load before it,
/// so the hot path has no system call and no lock.
/// </summary>
internal sealed unsafe class SpscRing
{
    /// <summary>
    /// The most bytes one call copies in or out before publishing them: a large message streams through the ring
    /// in runs of this size, so the reader starts on the first run while the writer copies the next, and each run
    /// is read while still in cache, instead of waiting for megabytes that have left it.
    /// </summary>
    public const int MaxRun = 256 << 10;

    /// <summary>Bytes of header before the data: write index line, read index line.</summary>
    public const int HeaderBytes = 128;

    private readonly long* _write;   // bytes ever written
    private readonly long* _read;    // bytes ever read
    private readonly byte* _data;
    private readonly long _capacity;

    /// <summary>Wraps <paramref name="memory"/> (header + capacity bytes); <paramref name="initialize"/> zeroes the indices.</summary>
    public SpscRing(byte* memory, long capacity, bool initialize)
    {
        _write = (long*)memory;
        _read = (long*)(memory + 64);
        _data = memory + HeaderBytes;
        _capacity = capacity;
        if (initialize)
        {
            *_write = 0;
            *_read = 0;
        }
    }

    /// <summary>Bytes a ring of <paramref name="capacity"/> occupies.</summary>
    public static long Footprint(long capacity) => HeaderBytes + capacity;

    public int TryWrite(ReadOnlySpan<byte> source)
    {
        long write = Volatile.Read(ref *_write);
        long read = Volatile.Read(ref *_read);
        long free = _capacity - (write - read);
        int n = (int)Math.Min(Math.Min(free, source.Length), MaxRun);
        if (n <= 0) return 0;
        long offset = write % _capacity;
        int first = (int)Math.Min(n, _capacity - offset);
        source[..first].CopyTo(new Span<byte>(_data + offset, first));
        if (first < n) source[first..n].CopyTo(new Span<byte>(_data, n - first));
        Volatile.Write(ref *_write, write + n);
        return n;
    }

    /// <summary>
    /// Consumes whole elements that have arrived, up to accumulator.Length bytes, handing each contiguous run to
    /// <paramref name="reduce"/> straight from the ring (no copy out). Returns the bytes consumed.
    /// </summary>
    public int TryReadReduce(Span<byte> accumulator, int elementSize, ReduceInto reduce)
    {
        long read = Volatile.Read(ref *_read);
        long write = Volatile.Read(ref *_write);
        long available = Math.Min(Math.Min(write - read, accumulator.Length), MaxRun);
        available -= available % elementSize;
        if (available <= 0) return 0;
        long offset = read % _capacity;
        int run = (int)Math.Min(available, _capacity - offset);
        run -= run % elementSize;
        if (run > 0)
        {
            reduce(accumulator[..run], new ReadOnlySpan<byte>(_data + offset, run));
            Volatile.Write(ref *_read, read + run);
            return run;
        }
        // One element straddles the end of the ring: gather its bytes from both ends.
        Span<byte> element = stackalloc byte[elementSize];
        int tail = (int)(_capacity - offset);
        new ReadOnlySpan<byte>(_data + offset, tail).CopyTo(element);
        new ReadOnlySpan<byte>(_data, elementSize - tail).CopyTo(element[tail..]);
        reduce(accumulator[..elementSize], element);
        Volatile.Write(ref *_read, read + elementSize);
        return elementSize;
    }

    /// <summary>acc = acc op incoming over raw bytes.</summary>
    public delegate void ReduceInto(Span<byte> accumulator, ReadOnlySpan<byte> incoming);

    public int TryRead(Span<byte> destination)
    {
        long read = Volatile.Read(ref *_read);
        long write = Volatile.Read(ref *_write);
        int n = (int)Math.Min(Math.Min(write - read, destination.Length), MaxRun);
        if (n <= 0) return 0;
        long offset = read % _capacity;
        int first = (int)Math.Min(n, _capacity - offset);
        new ReadOnlySpan<byte>(_data + offset, first).CopyTo(destination);
        if (first < n) new ReadOnlySpan<byte>(_data, n - first).CopyTo(destination[first..]);
        Volatile.Write(ref *_read, read + n);
        return n;
    }
}
