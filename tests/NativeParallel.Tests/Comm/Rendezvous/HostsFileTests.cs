using System.Net;
using NativeParallel.Comm.Rendezvous;

namespace NativeParallel.Tests.Comm.Rendezvous;

/// <summary>NATIVEPARALLEL_HOSTS_FILE's format: /etc/hosts lines, comments, aliases, malformed lines named.</summary>
public sealed class HostsFileTests : IDisposable
{
    private readonly string _path = Path.Combine(Path.GetTempPath(), $"np-hostsfile-{Guid.NewGuid():N}");

    public void Dispose() => File.Delete(_path);

    [Fact]
    public void FindsANameAmongAliasesIgnoringCommentsAndCase()
    {
        File.WriteAllText(_path, "# cluster nodes\n\n10.1.0.1\tgpu-a01 a01   # first\n10.1.0.2 gpu-a02\nfd00::3 gpu-a03\n10.1.0.9 GPU-A02\n");
        Assert.Equal([IPAddress.Parse("10.1.0.1")], HostsFile.Lookup(_path, "a01"));
        Assert.Equal([IPAddress.Parse("10.1.0.2"), IPAddress.Parse("10.1.0.9")], HostsFile.Lookup(_path, "gpu-a02"));
        Assert.Equal([IPAddress.Parse("fd00::3")], HostsFile.Lookup(_path, "gpu-a03"));
        Assert.Empty(HostsFile.Lookup(_path, "first"));
        Assert.Empty(HostsFile.Lookup(_path, "gpu-b01"));
    }

    [Fact]
    public void AMalformedLineIsNamedWithTheFileAndLineNumber()
    {
        File.WriteAllText(_path, "10.1.0.1 a\nnot-an-address b\n");
        var e = Assert.Throws<InvalidDataException>(() => HostsFile.Lookup(_path, "a"));
        Assert.Equal($"NATIVEPARALLEL_HOSTS_FILE={_path}: line 2 'not-an-address b' is not 'ADDRESS NAME [NAME...]'", e.Message);
    }

    [Fact]
    public void AMissingFileSaysSo()
    {
        var e = Assert.Throws<InvalidDataException>(() => HostsFile.Lookup(_path, "a"));
        Assert.StartsWith($"NATIVEPARALLEL_HOSTS_FILE={_path}: cannot be read", e.Message);
    }
}
