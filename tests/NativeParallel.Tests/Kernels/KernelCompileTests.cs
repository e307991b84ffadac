using NativeParallel.Interop;
using NativeParallel.Kernels;

namespace NativeParallel.Tests.Kernels;

/// <summary>Every kernel file compiles with NVRTC for sm_80 and sm_90, every entry point without spills.</summary>
public sealed class KernelCompileTests
{
    public static TheoryData<string, string> FilesAndArchs =>
        new(from file in KernelSources.Files from arch in new[] { "sm_80", "sm_90" } select (file, arch));

    [Theory]
    [MemberData(nameof(FilesAndArchs))]
    public void CompilesWithoutSpills(string file, string arch)
    {
        Hardware.RequireNvrtc();
        var compiled = KernelCompiler.Compile(file, arch, useCache: false);
        Assert.NotEmpty(compiled.Image);
        Assert.NotEmpty(compiled.Functions);
        foreach (var f in compiled.Functions)
        {
            Assert.Equal(arch, f.Arch);
            Assert.False(f.Spills, $"{f.Function} ({file}, {arch}) spills {f.SpillStoreBytes} B stored / {f.SpillLoadBytes} B loaded");
        }
    }

    [Fact]
    public void EveryLaunchedEntryPointExists()
    {
        Hardware.RequireNvrtc();
        // The names the op files' launchers use, per file; each must be an entry point of the compiled file.
        var expected = new Dictionary<string, string[]>
        {
            ["embedding.cu"] = ["embedding_fwd_f32", "embedding_fwd_bf16", "embedding_fwd_f16"],
            ["matmul.cu"] = ["matmul_f32_f32", "matmul_f32_bf16", "matmul_tc_bf16_f32", "matmul_tc_bf16_bf16", "matmul_v3_bf16_f32", "matmul_v3_bf16_bf16",
                "matmul_v4_bf16_f32", "matmul_v4_bf16_bf16"],
            ["attention.cu"] = ["attention_prefill_f32", "attention_prefill_bf16", "attention_decode_f32", "attention_decode_bf16",
                "attention_decode_split_f32", "attention_decode_split_bf16", "attention_decode_combine_f32", "attention_decode_combine_bf16"],
            ["softmax.cu"] = ["softmax_fwd_v2_f32", "softmax_fwd_v2_bf16"],
            ["rmsnorm.cu"] = ["rmsnorm_fwd_v2_f32", "rmsnorm_fwd_v2_bf16"],
            ["reduce.cu"] = (from op in new[] { "sum", "prod", "max", "min", "avg" } from dt in new[] { "f32", "bf16", "f16" } select $"reduce_{op}_{dt}").ToArray(),
        };
        foreach (var (file, names) in expected)
        {
            var functions = KernelCompiler.Compile(file, "sm_80").Functions.Select(f => f.Function).ToHashSet();
            foreach (string name in names) Assert.Contains(name, functions);
        }
    }

    [Fact]
    public void ArgumentStructsMatchTheirCudaMirrors()
    {
        Hardware.RequireNvrtc();
        // One program per struct: include its kernel file and static_assert the C# size.
        foreach (var (file, cStruct, managedSize) in NativeParallel.Kernels.Ops.OpCatalog.ArgStructs)
        {
            string source = $"#include \"{file}\"\nstatic_assert(sizeof({cStruct}) == {managedSize}, \"{cStruct} size differs from its C# mirror ({managedSize} bytes)\");\n";
            var headers = new Dictionary<string, string>(KernelSources.Headers) { [file] = KernelSources.Read(file) };
            using var program = new NvrtcProgram(source, $"layout_{cStruct}.cu", headers);
            bool ok = program.Compile(["--gpu-architecture=sm_80", "--std=c++17"]);
            Assert.True(ok, $"{cStruct}: {program.Log}");
        }
    }

    [Fact]
    public void LimitsHeaderMatchesKernelLimits()
    {
        string header = KernelSources.Headers["common/limits.cuh"];
        Assert.Contains($"#define NP_MAX_HEAD_DIM {KernelLimits.MaxHeadDim}", header);
        Assert.Contains($"#define NP_MAX_TOPK {KernelLimits.MaxTopK}", header);
        Assert.Contains($"#define NP_MAX_REDUCE_INPUTS {KernelLimits.MaxReduceInputs}", header);
    }

    [Fact]
    public void CompileErrorCarriesLogFileAndOptions()
    {
        Hardware.RequireNvrtc();
        using var program = new NvrtcProgram("extern \"C\" __global__ void broken(float* x) { x[0] = undefined_name; }", "broken.cu");
        var e = Assert.Throws<NvrtcException>(() => program.CompileOrThrow(["--gpu-architecture=sm_80"]));
        Assert.Contains("broken.cu", e.Message);
        Assert.Contains("undefined_name", e.Message);
        Assert.Contains("--gpu-architecture=sm_80", e.Message);
    }
}
