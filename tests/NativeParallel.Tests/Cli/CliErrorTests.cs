using System.Buffers.Binary;
using System.Text;
using NativeParallel.Cli;
using NativeParallel.Comm;
using NativeParallel.Devices;
using NativeParallel.Interop;
using NativeParallel.Models;

namespace NativeParallel.Tests.Cli;

/// <summary>
/// Every failure that reaches the command line ends as one line, <c>nativeparallel: Type: message</c>, and exit code 1
/// (2 for usage errors): never a stack trace, unless NATIVEPARALLEL_DEBUG=INFO asks for one.
/// </summary>
[Collection(nameof(Kernels.EnvironmentCollection))]
public sealed class CliErrorTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("np-cli-errors-").FullName;
    private readonly string? _debug = Environment.GetEnvironmentVariable("NATIVEPARALLEL_DEBUG");

    public CliErrorTests() => Environment.SetEnvironmentVariable("NATIVEPARALLEL_DEBUG", null);

    public void Dispose()
    {
        Environment.SetEnvironmentVariable("NATIVEPARALLEL_DEBUG", _debug);
        Directory.Delete(_folder, recursive: true);
    }

    private static (int Code, string Output) Run(params string[] args)
    {
        var previousOut = Console.Out;
        var previousError = Console.Error;
        var output = new StringWriter();
        var error = new StringWriter();
        Console.SetOut(output);
        Console.SetError(error);
        try
        {
            int code = Entry.Run(args);
            return (code, error.ToString());
        }
        finally
        {
            Console.SetOut(previousOut);
            Console.SetError(previousError);
        }
    }

    /// <summary>The error output is exactly one line "nativeparallel: TYPE: ..." with no stack frame.</summary>
    private static string AssertOneLine(string output, string type)
    {
        string[] lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length == 1, $"expected one line, got {lines.Length}:\n{output}");
        Assert.DoesNotContain("   at ", output);
        Assert.StartsWith($"nativeparallel: {type}: ", lines[0]);
        return lines[0].TrimEnd();
    }

    private static (int Code, string Output) Fail(Exception thrown)
    {
        var writer = new StringWriter();
        return (Entry.Fail(thrown, writer), writer.ToString());
    }

    // Thrown and caught, so that it carries a stack trace as a real failure does.
    private static Exception Thrown(Exception e)
    {
        try { throw e; }
        catch (Exception caught) { return caught; }
    }

    private string SaveModel()
    {
        string folder = Path.Combine(_folder, $"model-{Guid.NewGuid():N}");
        var config = new LlamaConfig { Vocab = 64, Hidden = 64, Layers = 2, Heads = 4, KvHeads = 2, Ffn = 96 };
        HuggingFaceCheckpoint.Save(new LlamaWeights(config, 5), folder);
        return folder;
    }

    private static string[] RunModel(string folder) => ["run", "--model", folder, "--device", "cpu", "--prompt-tokens", "4", "--new-tokens", "2", "--strategy", "dp=2"];

    [Fact]
    public void ATruncatedSafetensorsFileIsOneLine()
    {
        string folder = SaveModel();
        string file = Path.Combine(folder, "model.safetensors");
        using (var stream = File.Open(file, FileMode.Open)) stream.SetLength(stream.Length / 2);
        var (code, output) = Run(RunModel(folder));
        Assert.Equal(1, code);
        Assert.Contains("is not inside the file's", AssertOneLine(output, "InvalidDataException"));
    }

    [Fact]
    public void ASafetensorsFileCutInsideItsHeaderIsOneLine()
    {
        string folder = SaveModel();
        string file = Path.Combine(folder, "model.safetensors");
        using (var stream = File.Open(file, FileMode.Open)) stream.SetLength(20);
        var (code, output) = Run(RunModel(folder));
        Assert.Equal(1, code);
        Assert.Contains("does not fit the file", AssertOneLine(output, "InvalidDataException"));
    }

    [Theory]
    [InlineData("{\"model.embed_tokens.weight\": {\"shape\": [64, 64], \"data_offsets\": [0, 16384]}}", "'dtype'")] // a key missing
    [InlineData("{\"model.embed_tokens.weight\": {\"dtype\": \"F32\", \"shape\": [64], \"data_offsets\": [0]}}", "data_offsets")]
    [InlineData("{\"model.embed_tokens.weight\": {\"dtype\": \"F32\", \"shape\": \"64\", \"data_offsets\": [0, 4]}}", "shape must be an array")]
    [InlineData("{\"model.embed_tokens.weight\": {\"dtype\": \"F32\",", "not valid")] // broken JSON
    public void ABadSafetensorsHeaderIsOneLine(string header, string expected)
    {
        string folder = SaveModel();
        byte[] json = Encoding.UTF8.GetBytes(header);
        var bytes = new byte[8 + json.Length + 64];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)json.Length);
        json.CopyTo(bytes, 8);
        File.WriteAllBytes(Path.Combine(folder, "model.safetensors"), bytes);
        var (code, output) = Run(RunModel(folder));
        Assert.Equal(1, code);
        Assert.Contains(expected, AssertOneLine(output, "InvalidDataException"));
    }

    [Fact]
    public void BrokenJsonInConfigIsOneLine()
    {
        string folder = SaveModel();
        File.WriteAllText(Path.Combine(folder, "config.json"), "{\"vocab_size\": 64, \"hidden_size\": ");
        var (code, output) = Run(RunModel(folder));
        Assert.Equal(1, code);
        string line = AssertOneLine(output, "InvalidDataException");
        Assert.Contains("config.json: not valid JSON", line);
    }

    [Fact]
    public void AConfigValueOfTheWrongKindIsOneLine()
    {
        string folder = SaveModel();
        string config = File.ReadAllText(Path.Combine(folder, "config.json"));
        File.WriteAllText(Path.Combine(folder, "config.json"), System.Text.RegularExpressions.Regex.Replace(config, "\"hidden_size\": *64", "\"hidden_size\": \"wide\""));
        var (code, output) = Run(RunModel(folder));
        Assert.Equal(1, code);
        Assert.Contains("config.json: 'hidden_size' is \"wide\", not an integer", AssertOneLine(output, "InvalidDataException"));
    }

    [Fact]
    public void AMissingModelFolderIsOneLine()
    {
        var (code, output) = Run(RunModel(Path.Combine(_folder, "nothing-here")));
        Assert.Equal(1, code);
        Assert.Contains("config.json", AssertOneLine(output, "FileNotFoundException"));
    }

    [Fact]
    public void AMissingCudaDriverIsOneLine()
    {
        if (Hardware.HasCuda) Assert.Skip("this machine has a GPU");
        var (code, output) = Run("run", "--device", "cuda", "--prompt-tokens", "4", "--new-tokens", "2", "--strategy", "dp=2");
        Assert.Equal(1, code);
        Assert.DoesNotContain("   at ", output);
        Assert.Single(output.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith("nativeparallel: ", output);
    }

    public static TheoryData<string, Exception> DeviceFailures => new()
    {
        { "KernelLaunchException", new KernelLaunchException("rmsnorm_fwd_f32 on cuda:0: grid 4096x1x1", CudaException.Create(CUresult.CUDA_ERROR_LAUNCH_FAILED, "cuLaunchKernel")) },
        { "CublasException", CublasException.Create(CublasStatus.CUBLAS_STATUS_NOT_SUPPORTED, "cublasGemmEx") },
        { "CudaException", CudaException.Create(CUresult.CUDA_ERROR_OUT_OF_MEMORY, "cuMemAlloc_v2") },
        { "OutOfMemoryException", new OutOfMemoryException("cuda:0: cannot allocate 1099511627776 bytes; 0 of 1 bytes free on the device") },
        { "NvrtcException", new NvrtcException("nvrtcCompileProgram", NvrtcResult.NVRTC_ERROR_COMPILATION, "NVRTC_ERROR_COMPILATION", "softmax.cu(3): error: expected a ;\n1 error detected", "softmax.cu", ["--gpu-architecture=sm_90"]) },
        { "NativeLibraryNotFoundException", new NativeLibraryNotFoundException(NativeLibraryKind.Cublas, "NATIVEPARALLEL_CUBLAS", ["libcublas.so.13", "libcublas.so.12"]) },
        { "CollectiveException", new CollectiveException("all_reduce #3 on world: rank 1 timed out after 300 s waiting for rank 0", Collective.AllReduce, 3, "world", 1, 0) },
        { "InvalidDataException", new AggregateException(new InvalidDataException("shard.bin: not an llm.c token shard")) },
    };

    [Theory]
    [MemberData(nameof(DeviceFailures))]
    public void EveryKindOfFailureIsOneLineWithItsTypeAndExitCodeOne(string type, Exception exception)
    {
        var (code, output) = Fail(Thrown(exception));
        Assert.Equal(1, code);
        string line = AssertOneLine(output, type);
        Assert.DoesNotContain("unexpected", line);
    }

    [Fact]
    public void AUsageErrorFromInsideARankExitsTwo()
    {
        var (code, output) = Fail(Thrown(new AggregateException(Thrown(new UsageException("--tp must divide the heads")))));
        Assert.Equal(2, code);
        Assert.Equal("nativeparallel: --tp must divide the heads. See 'nativeparallel --help'.", output.TrimEnd());
    }

    [Fact]
    public void AnUnexpectedExceptionIsOneLineWithAHintAndTheStackTraceOnlyWhenAskedFor()
    {
        var (code, output) = Fail(Thrown(new NullReferenceException("Object reference not set to an instance of an object.")));
        Assert.Equal(1, code);
        Assert.Contains("NATIVEPARALLEL_DEBUG=INFO", AssertOneLine(output, "NullReferenceException"));

        Environment.SetEnvironmentVariable("NATIVEPARALLEL_DEBUG", "INFO");
        (code, output) = Fail(Thrown(new NullReferenceException("Object reference not set to an instance of an object.")));
        Assert.Equal(1, code);
        Assert.StartsWith("nativeparallel: NullReferenceException: ", output);
        Assert.Contains("   at ", output);
        Assert.Contains(nameof(Thrown), output);
    }

    [Fact]
    public void AMultiLineMessageKeepsItsDetailForDebugOnly()
    {
        var nvrtc = Thrown(new NvrtcException("nvrtcCompileProgram", NvrtcResult.NVRTC_ERROR_COMPILATION, "NVRTC_ERROR_COMPILATION", "softmax.cu(3): error: expected a ;", "softmax.cu", []));
        var (_, output) = Fail(nvrtc);
        Assert.Contains("more lines with NATIVEPARALLEL_DEBUG=INFO", AssertOneLine(output, "NvrtcException"));

        Environment.SetEnvironmentVariable("NATIVEPARALLEL_DEBUG", "INFO");
        (_, output) = Fail(nvrtc);
        Assert.Contains("softmax.cu(3): error: expected a ;", output);
    }
}
