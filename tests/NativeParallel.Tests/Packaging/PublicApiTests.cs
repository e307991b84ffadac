namespace NativeParallel.Tests.Packaging;

/// <summary>
/// What the packages show their users: the libraries' public types (documented: CS1591 is an error in both
/// projects), and nothing of the CLI, whose dll ships inside the tool package only to run.
/// </summary>
public sealed class PublicApiTests
{
    [Fact]
    public void TheCliExportsNoType()
    {
        var exported = typeof(NativeParallel.Cli.CommandLine).Assembly.GetExportedTypes().Select(t => t.FullName).ToArray();
        Assert.True(exported.Length == 0, $"the CLI exports {string.Join(", ", exported)}: make them internal (the tests see internals)");
    }

    [Fact]
    public void TheLibrariesExportTheirApi()
    {
        // A guard against the opposite mistake: hiding what users build on.
        var library = typeof(NativeParallel.Comm.ProcessGroup).Assembly.GetExportedTypes().Select(t => t.FullName).ToHashSet();
        Assert.Contains("NativeParallel.Comm.ProcessGroup", library);
        Assert.Contains("NativeParallel.Tensors.Tensor", library);
        Assert.Contains("NativeParallel.Devices.DeviceRegistry", library);
        Assert.Contains("NativeParallel.Interop.Cuda", typeof(NativeParallel.Interop.Cuda).Assembly.GetExportedTypes().Select(t => t.FullName));
    }
}
