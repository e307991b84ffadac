using NativeParallel.Devices;

namespace NativeParallel.Tests.Tensors;

/// <summary>The CUDA device's cache of freed blocks: reuse by rounded size and by stream, a byte cap, and a flush.</summary>
public sealed class BlockCacheTests
{
    private sealed class Fence : BlockCache.IFence
    {
        public bool Passed { get; set; }
        public bool Disposed { get; private set; }
        public void Dispose() => Disposed = true;
    }

    private static readonly object StreamA = new(), StreamB = new();

    [Fact]
    public void FreedBlocksAreReusedBySizeUpToTheCap()
    {
        var released = new List<ulong>();
        var cache = new BlockCache(capacity: 2048, released.Add);
        Assert.Equal(512, BlockCache.RoundUp(0));
        Assert.Equal(512, BlockCache.RoundUp(512));
        Assert.Equal(1024, BlockCache.RoundUp(513));
        cache.Return(1024, 0x1000, StreamA, null);
        cache.Return(1024, 0x2000, StreamA, null);
        var dropped = new Fence();
        cache.Return(512, 0x3000, StreamA, dropped); // 2560 bytes would exceed the cap: released at once
        Assert.Equal([0x3000ul], released);
        Assert.True(dropped.Disposed);
        Assert.Equal(2048, cache.CachedBytes);
        Assert.True(cache.TryTake(1024, StreamA, out ulong p));
        Assert.Equal(0x2000ul, p); // last freed, first reused
        Assert.False(cache.TryTake(512, StreamA, out _));
        cache.Flush();
        Assert.Equal([0x3000ul, 0x1000ul], released);
        Assert.Equal(0, cache.CachedBytes);
    }

    [Fact]
    public void AnotherStreamTakesABlockOnlyOnceItsFenceHasPassed()
    {
        var cache = new BlockCache(capacity: 1 << 20, _ => { });
        var fence = new Fence();
        cache.Return(512, 0x1000, StreamA, fence);
        // Stream A's queued work may still use the block: stream B must not get it yet.
        Assert.False(cache.TryTake(512, StreamB, out _));
        fence.Passed = true;
        Assert.True(cache.TryTake(512, StreamB, out ulong p));
        Assert.Equal(0x1000ul, p);
        Assert.True(fence.Disposed); // the fence's event goes back for reuse with the block

        // The freeing stream itself takes its block back at once: its later work follows in order.
        var pending = new Fence();
        cache.Return(512, 0x2000, StreamA, pending);
        Assert.True(cache.TryTake(512, StreamA, out p));
        Assert.Equal(0x2000ul, p);
    }
}
