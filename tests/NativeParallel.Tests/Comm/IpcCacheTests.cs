using NativeParallel.Comm.Transports;

namespace NativeParallel.Tests.Comm;

/// <summary>
/// The caches that keep CUDA IPC exports and opens off the device-direct hot path (<see cref="CudaIpcPeers"/>),
/// with fake driver calls: reuse of a buffer costs no driver call, an allocation freed and made again at the same
/// address never gets the old export or mapping, and both caches stay bounded.
/// </summary>
public sealed class IpcCacheTests
{
    private static byte[] HandleOf(int allocation)
    {
        var handle = new byte[64];
        BitConverter.TryWriteBytes(handle, allocation);
        return handle;
    }

    [Fact]
    public void ExportsAreMadeOncePerAllocationAndAReallocationAtTheSameAddressGetsAFreshOne()
    {
        int made = 0;
        var cache = new IpcExportCache(4, start => HandleOf(++made));
        var first = cache.Handle(bufferId: 1, start: 0x1000).ToArray();
        Assert.Equal(first, cache.Handle(1, 0x1000).ToArray());
        Assert.Equal(1, cache.Exports);
        // Freed and allocated again at the same address: the driver gives it a new buffer id.
        var again = cache.Handle(bufferId: 2, start: 0x1000).ToArray();
        Assert.NotEqual(first, again);
        Assert.Equal(2, cache.Exports);
        for (ulong id = 3; id < 20; id++) cache.Handle(id, 0x1000 * id);
        Assert.InRange(cache.Count, 1, 4);
    }

    [Fact]
    public void OpensAreMadeOncePerHandleAndTheCacheClosesOnlyMappingsNotInUse()
    {
        var open = new Dictionary<ulong, int>();
        ulong next = 0x10_0000;
        int synchronized = 0;
        var cache = new IpcMappingCache(3,
            handle => { ulong start = next += 0x1000; open[start] = BitConverter.ToInt32(handle); return start; },
            beforeClose: () => synchronized++,
            close: start => Assert.True(open.Remove(start)));

        cache.BeginUse();
        ulong a = cache.Open(HandleOf(1));
        Assert.Equal(a, cache.Open(HandleOf(1)));
        Assert.Equal(1, cache.Opens);

        // A peer's buffer freed and made again (at whatever address): a new handle, a new mapping, never the old one.
        cache.BeginUse();
        ulong b = cache.Open(HandleOf(2));
        Assert.NotEqual(a, b);
        cache.BeginUse();
        ulong c = cache.Open(HandleOf(3));
        // Full: the next new handle closes what this exchange has not used, after the device has finished with it.
        cache.BeginUse();
        Assert.Equal(c, cache.Open(HandleOf(3)));
        ulong d = cache.Open(HandleOf(4));
        Assert.Equal(1, synchronized);
        Assert.Equal(2, cache.Closes);
        Assert.Equal(new[] { c, d }.Order(), open.Keys.Order());
        Assert.Equal(2, cache.Count);
        // A closed handle seen again is opened again.
        cache.BeginUse();
        Assert.NotEqual(a, cache.Open(HandleOf(1)));
        Assert.Equal(5, cache.Opens);
        Assert.Equal(3, cache.Drain().Length);
        Assert.Equal(0, cache.Count);
    }
}
