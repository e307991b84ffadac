using System.IO.Compression;
using System.Text.RegularExpressions;

namespace NativeParallel.Tests.Packaging;

/// <summary>
/// `./build.sh sample`, what CI proves a user can do: pack the two libraries and the tool, build samples/AllReduce
/// against the packages from the local feed, install the tool from it and run the sample as two ranks under the
/// tool's `launch -n 2`. About a minute here when the Release build is current, two from a fresh clone.
/// </summary>
[Collection(nameof(PackagingCollection))]
public sealed class PackageSampleTests
{
    [Fact]
    public void PackedSampleAllReducesAndRunsAKernelOnTwoRanks()
    {
        var (code, output) = RepositoryCommand.Run(TimeSpan.FromMinutes(8), "bash", null, "build.sh", "sample");
        Assert.True(code == 0, $"./build.sh sample exited {code}:\n{output}");
        for (int rank = 0; rank < 2; rank++)
        {
            Assert.Matches(new Regex($@"^\[rank {rank}\] rank {rank} of 2: all_reduce of 32 f32 on \S+: exact$", RegexOptions.Multiline), output);
            Assert.Matches(new Regex($@"^\[rank {rank}\] rank {rank} of 2: matmul \(4x8 by 8x3\) on \S+: exact$", RegexOptions.Multiline), output);
        }
    }

    [Fact]
    public void PackagesCarryTheLibrariesTheirDocsAndTheTool()
    {
        string packages = Path.Combine(RepositoryCommand.Root, "out", "packages");
        if (!File.Exists(Path.Combine(packages, "NativeParallel.0.1.0.nupkg")))
        {
            var (code, output) = RepositoryCommand.Run(TimeSpan.FromMinutes(8), "bash", null, "build.sh", "pack");
            Assert.True(code == 0, $"./build.sh pack exited {code}:\n{output}");
        }
        Assert.Equal(["NativeParallel.0.1.0.nupkg", "NativeParallel.Cli.0.1.0.nupkg", "NativeParallel.Interop.0.1.0.nupkg"],
            Directory.GetFiles(packages, "*.nupkg").Select(Path.GetFileName).Order(StringComparer.Ordinal));

        using (var library = ZipFile.OpenRead(Path.Combine(packages, "NativeParallel.0.1.0.nupkg")))
        {
            var names = library.Entries.Select(e => e.FullName).ToHashSet();
            Assert.Contains("lib/net10.0/NativeParallel.dll", names);
            Assert.Contains("lib/net10.0/NativeParallel.xml", names);
            string nuspec = Read(library, "NativeParallel.nuspec");
            Assert.Contains("id=\"NativeParallel.Interop\" version=\"0.1.0\"", nuspec);
        }
        using (var interop = ZipFile.OpenRead(Path.Combine(packages, "NativeParallel.Interop.0.1.0.nupkg")))
        {
            Assert.Contains("lib/net10.0/NativeParallel.Interop.xml", interop.Entries.Select(e => e.FullName));
        }
        using (var tool = ZipFile.OpenRead(Path.Combine(packages, "NativeParallel.Cli.0.1.0.nupkg")))
        {
            Assert.Contains("<packageType name=\"DotnetTool\"", Read(tool, "NativeParallel.Cli.nuspec"));
            Assert.Contains("Command Name=\"nativeparallel\"", Read(tool, "tools/net10.0/any/DotnetToolSettings.xml"));
        }
    }

    private static string Read(ZipArchive archive, string name)
    {
        var entry = archive.GetEntry(name) ?? throw new FileNotFoundException($"{name} is not in the package");
        using var reader = new StreamReader(entry.Open());
        return reader.ReadToEnd();
    }
}
