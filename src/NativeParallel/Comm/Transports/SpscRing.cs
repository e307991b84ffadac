using System.Runtime.CompilerServices;

namespace NativeParallel.Comm.Transports;

/// <summary>
/// A single-producer single-consumer byte ring in memory both sides can see (process memory for thread ranks, a
/// mapped file in /dev/shm for process ranks). The producer owns the write index, the consumer the read index,
/// each on its own cache line; publishing is a release store after the copy, observing an acquire load before it,
/// so the hot path has no system call and no lock.
/// </summary>
internal sealed unsafe class SpscRing
{
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
        int n = (int)Math.Min(free, source.Length);
        if (n <= 0) return 0;
        long offset = write % _capacity;
        int first = (int)Math.Min(n, _capacity - offset);
        source[..first].CopyTo(new Span<byte>(_data + offset, first));
        if (first < n) source[first..n].CopyTo(new Span<byte>(_data, n - first));
        Volatile.Write(ref *_write, write + n);
        return n;
    }

    public int TryRead(Span<byte> destination)
    {
        long read = Volatile.Read(ref *_read);
        long write = Volatile.Read(ref *_write);
        int n = (int)Math.Min(write - read, destination.Length);
        if (n <= 0) return 0;
        long offset = read % _capacity;
        int first = (int)Math.Min(n, _capacity - offset);
        new ReadOnlySpan<byte>(_data + offset, first).CopyTo(destination);
        if (first < n) new ReadOnlySpan<byte>(_data, n - first).CopyTo(destination[first..]);
        Volatile.Write(ref *_read, read + n);
        return n;
    }
}
