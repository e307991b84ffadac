using NativeParallel.Devices;

namespace NativeParallel.Tests.Tensors;

/// <summary>The CUDA device's cache of freed blocks: reuse by rounded size, a byte cap, and a flush.</summary>
public sealed class BlockCacheTests
{
    [Fact]
    public void FreedBlocksAreReusedBySizeUpToTheCap()
    {
        var released = new List<ulong>();
        var cache = new BlockCache(capacity: 2048, released.Add);
        Assert.Equal(512, BlockCache.RoundUp(0));
        Assert.Equal(512, BlockCache.RoundUp(512));
        Assert.Equal(1024, BlockCache.RoundUp(513));
        cache.Return(1024, 0x1000);
        cache.Return(1024, 0x2000);
        cache.Return(512, 0x3000); // 2560 bytes would exceed the cap: released at once
        Assert.Equal([0x3000ul], released);
        Assert.Equal(2048, cache.CachedBytes);
        Assert.True(cache.TryTake(1024, out ulong p));
        Assert.Equal(0x2000ul, p); // last freed, first reused
        Assert.False(cache.TryTake(512, out _));
        cache.Flush();
        Assert.Equal([0x3000ul, 0x1000ul], released);
        Assert.Equal(0, cache.CachedBytes);
    }
}
