using System.Diagnostics;
using NativeParallel.Kernels;

namespace NativeParallel.Tests.Emu;

/// <summary>
/// The emulated device catches what it is for: each test plants one bug in a copy of kernels/, runs
/// <c>nativeparallel kernels check --device emu --kernels COPY</c> in a child process, and expects the failure
/// named. The unmodified kernels pass the same checks in the emu kernel suite.
/// </summary>
public sealed class PlantedBugTests
{
    [Fact]
    public void MissingSyncthreadsIsCaughtByTheFiberSchedules()
    {
        // matmul's second barrier keeps the next tile's loads from overwriting values other threads still read.
        var (code, output) = CheckPlanted("matmul.cu",
            "        __syncthreads();  // the next tile overwrites what this one read", "", "matmul", ["--schedules", "3"]);
        Assert.True(code == 1, output);
        Assert.Contains("race in matmul: the output differs between fiber schedules", output);
    }

    [Fact]
    public void ABarrierNotEveryThreadReachesIsReportedAsADeadlock()
    {
        // Half of warp 0 waits at the block barrier while the other half waits for it at a warp barrier; the other
        // warps pass their warp barrier and wait at the next block barrier.
        var (code, output) = CheckPlanted("softmax.cu",
            "    __shared__ float scratch[32];\n", "    __shared__ float scratch[32];\n    if (threadIdx.x < 16) __syncthreads(); else __syncwarp();\n",
            "softmax");
        Assert.True(code == 1, output);
        // The 32000-column case: softmax v2 sizes its block to 1024 threads for that row.
        // Whichever case and block deadlocks first is reported (two worker threads run blocks): the kernel's dtype,
        // block and block size vary, the split of its threads does not.
        Assert.Matches(@"deadlock in kernel softmax_fwd_v2_(f32|bf16), block \(\d+, 0, 0\): threads 0-15, 32-\d+ wait in __syncthreads; threads 16-31 wait in __syncwarp", output);
    }

    [Fact]
    public void AnOutOfBoundsIndexIsCaughtByTheSanitizer()
    {
        // One element past the end: the grid-stride loop runs to i == count.
        var (code, output) = CheckPlanted("gelu.cu", "i < a.count; i +=", "i <= a.count; i +=", "gelu", ["--sanitize"]);
        Assert.True(code == 1, output);
        Assert.Contains("AddressSanitizer: heap-buffer-overflow", output);
        Assert.Contains("gelu", output);
    }

    [Fact]
    public void AWrongTensorCoreFragmentIndexIsCaughtByTheReference()
    {
        // Swapping ldmatrix's second and third matrices feeds the mma rows 8-15 where it wants columns 8-15.
        // load_a_fragment is matmul v2's (v3 and v4 address ldmatrix themselves).
        var (code, output) = CheckPlanted("common/mma.cuh", "(lane % 8 + 8 * ((lane / 8) % 2)) * stride + 8 * (lane / 16)",
            "(lane % 8 + 8 * (lane / 16)) * stride + 8 * ((lane / 8) % 2)", "matmul", versions: "matmul=v2");
        Assert.True(code == 1, output);
        Assert.Matches(@"matmul +bf16 +m=33 n=31 k=65 out=bf16 .* FAIL .*relative error", output);
        Assert.Matches(@"matmul +f32 +m=33 n=31 k=65 out=f32 .* ok", output); // the SIMT path does not use fragments
    }

    [Fact]
    public void ReadingACpAsyncStageBeforeItsWaitIsCaught()
    {
        // Waiting for one group too few lets a warp multiply a stage whose copies have not landed: the emulated
        // cp.async lands its bytes only at the wait that covers them, so the tile holds the previous stage's data.
        var (code, output) = CheckPlanted("matmul.cu", "ptx_cp_async_wait<STAGES - 2>();", "ptx_cp_async_wait<STAGES - 1>();",
            "matmul", versions: "matmul=v4");
        Assert.True(code == 1, output);
        Assert.Matches(@"matmul +bf16 +m=136 n=200 k=96 out=bf16 .* FAIL", output);
    }

    [Fact]
    public void TheWholeSuitePassesUnderTheSanitizers()
    {
        // Once per CI run: every kernel case, built with AddressSanitizer and UndefinedBehaviorSanitizer.
        Hardware.RequireEmu();
        var (code, output) = RunCli(["kernels", "check", "--device", "emu", "--sanitize", "--arch", "sm_80", "--cached"]);
        Assert.True(code == 0, output);
        Assert.Matches(@"\d+ passed, 0 failed on emu", output);
        Assert.DoesNotContain("AddressSanitizer", output);
    }

    private static (int Code, string Output) CheckPlanted(string file, string find, string replace, string op, string[]? extra = null, string? versions = null)
    {
        Hardware.RequireEmu();
        string dir = Path.Combine(Path.GetTempPath(), $"np-planted-{Guid.NewGuid():N}");
        try
        {
            foreach (var (name, text) in KernelSources.All())
            {
                string path = Path.Combine(dir, name);
                Directory.CreateDirectory(Path.GetDirectoryName(path)!);
                File.WriteAllText(path, text);
            }
            string target = Path.Combine(dir, file);
            string original = File.ReadAllText(target);
            Assert.True(original.Contains(find), $"the text to plant the bug at is no longer in kernels/{file}: update this test");
            File.WriteAllText(target, original.Replace(find, replace));
            return RunCli(["kernels", "check", "--device", "emu", "--op", op, "--kernels", dir, "--arch", "sm_80", .. extra ?? []], versions);
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }

    private static (int Code, string Output) RunCli(string[] args, string? versions = null)
    {
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        if (versions is not null) info.Environment["NATIVEPARALLEL_KERNEL_VERSION"] = versions;
        info.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "NativeParallel.Cli.dll"));
        foreach (string a in args) info.ArgumentList.Add(a);
        using var process = Process.Start(info)!;
        var error = process.StandardError.ReadToEndAsync();
        string output = process.StandardOutput.ReadToEnd();
        if (!process.WaitForExit(TimeSpan.FromMinutes(5)))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"nativeparallel {string.Join(' ', args)} did not finish in 5 minutes");
        }
        return (process.ExitCode, output + error.Result);
    }
}
