using System.Text.RegularExpressions;

namespace NativeParallel.Tests.Packaging;

/// <summary>
/// The C API as its hosts use it: `./build.sh native` publishes libnativeparallel.so (NativeAOT, about 1.5 minutes
/// here), gcc compiles tests/c/collectives_test.c against the header into out/native/, and the program runs 3 ranks
/// as processes, each checking every collective exactly and that mistakes and an exited peer come back as codes
/// with messages. samples/python/allreduce.py does the same through ctypes. The three take about 1 min 45 s here.
/// </summary>
[Collection(nameof(PackagingCollection))]
public sealed class CApiTests
{
    private static readonly Lazy<string> Library = new(BuildLibrary);
    private static readonly Lazy<string> Program = new(CompileProgram);

    private static string BuildLibrary()
    {
        var (code, output) = RepositoryCommand.Run(TimeSpan.FromMinutes(8), "bash", null, "build.sh", "native");
        Assert.True(code == 0, $"./build.sh native exited {code}:\n{output}");
        return Path.Combine(RepositoryCommand.Root, "out", "native");
    }

    // Beside the library in out/native/, as the header's comment builds it.
    private static string CompileProgram()
    {
        string native = Library.Value, program = Path.Combine(native, "collectives_test");
        var (built, compiler) = RepositoryCommand.Run(TimeSpan.FromMinutes(2), "gcc", null, "-std=c11", "-Wall", "-Wextra", "-Werror",
            "-I", Path.Combine(native, "include"), "tests/c/collectives_test.c", "-L", Path.Combine(native, "lib"), "-lnativeparallel",
            $"-Wl,-rpath,{Path.Combine(native, "lib")}", "-o", program);
        Assert.True(built == 0, $"gcc failed:\n{compiler}");
        return program;
    }

    private static readonly string[] Checks =
    [
        "all_reduce f32 sum", "all_reduce i32 max in place", "all_reduce i64 sum", "all_reduce bf16 sum", "all_gather f32",
        "reduce_scatter f32 sum", "broadcast f32 from rank 1", "send/recv ring i32", "errors as codes with messages", "destroy",
    ];

    [Fact]
    public void CProgramChecksEveryCollectiveOnThreeProcesses()
    {
        Hardware.RequireGcc();
        var (code, output) = RepositoryCommand.Run(TimeSpan.FromMinutes(3), Program.Value, null, "3");
        Assert.True(code == 0, $"collectives_test exited {code}:\n{output}");
        Assert.Contains("collectives_test: 3 ranks ok (libnativeparallel 100)", output);
        foreach (string check in Checks)
            for (int rank = 0; rank < 3; rank++)
                Assert.Contains($"rank {rank}: {check} ok", output);
    }

    [Fact]
    public void AnExitedPeerIsARemoteErrorNotAnAbort()
    {
        Hardware.RequireGcc();
        // About 10 s: rank 0 gives the exited rank that long to say goodbye at the store before it closes it.
        var (code, output) = RepositoryCommand.Run(TimeSpan.FromMinutes(3), Program.Value, null, "3", "--peer-exits");
        Assert.True(code == 0, $"collectives_test --peer-exits exited {code}:\n{output}");
        for (int rank = 0; rank < 2; rank++)
        {
            Assert.Matches(new Regex($@"rank {rank}: exited peer -> remote process exited.*: npAllReduce: all_reduce #1 in group 'npComm' failed on rank {rank} of 3"), output);
            Assert.Contains($"rank {rank}: exited peer as npRemoteError ok", output);
        }
    }

    [Fact]
    public void PythonSampleChecksTheCollectivesThroughCtypes()
    {
        if (!RepositoryCommand.OnPath("python3")) Assert.Skip("python3 is not installed: the ctypes sample needs it");
        string library = Path.Combine(Library.Value, "lib", "libnativeparallel.so");
        var (code, output) = RepositoryCommand.Run(TimeSpan.FromMinutes(3), "python3", new Dictionary<string, string> { ["NATIVEPARALLEL_LIB"] = library },
            "samples/python/allreduce.py", "3");
        Assert.True(code == 0, $"allreduce.py exited {code}:\n{output}");
        Assert.Contains("allreduce.py: 3 ranks ok", output);
        for (int rank = 0; rank < 3; rank++)
        {
            Assert.Contains($"rank {rank}: all_reduce f32 sum ok", output);
            Assert.Contains($"rank {rank}: reduce_scatter f32 sum ok", output);
            Assert.Matches(new Regex($@"rank {rank}: bad datatype -> invalid argument .*: npAllReduce: datatype 0 is not supported"), output);
        }
    }
}
