using NativeParallel.Comm.Transports;

namespace NativeParallel.Tests.Comm;

/// <summary>Which transports a group of process ranks takes from its ranks' host identities and the override.</summary>
public sealed class TransportChoiceTests
{
    [Theory]
    [InlineData("a,a,a", null, "shm")]
    [InlineData("a,a,b,b", null, "shm+tcp")]
    [InlineData("a,a,b", null, "shm+tcp")]
    [InlineData("a,b,c", null, "tcp")]
    [InlineData("a,a,b,b", "auto", "shm+tcp")]
    [InlineData("a,a,b,b", "tcp", "tcp")]
    [InlineData("a,a", "TCP", "tcp")]
    [InlineData("a,a", "shm", "shm")]
    [InlineData("a", null, "shm")]
    public void NamesTheTransportsOfTheGroup(string hosts, string? requested, string expected) =>
        Assert.Equal(expected, TransportChoice.Name(hosts.Split(','), requested, "world"));

    [Fact]
    public void SharedMemoryAcrossHostsIsRefusedNamingTheGroupAndTheWayOut()
    {
        var e = Assert.Throws<InvalidOperationException>(() => TransportChoice.Name(["a", "a", "b"], "shm", "bench"));
        Assert.Equal("transport shm was asked for, but the ranks of 'bench' span 2 hosts and memory is shared only within one; " +
                     "use tcp, or leave the transport unset for shm+tcp", e.Message);
    }

    [Fact]
    public void AnUnknownTransportIsRefused()
    {
        var e = Assert.Throws<ArgumentException>(() => TransportChoice.Name(["a"], "rdma", "bench"));
        Assert.StartsWith("unknown transport 'rdma' for 'bench': expected shm or tcp", e.Message);
    }
}
