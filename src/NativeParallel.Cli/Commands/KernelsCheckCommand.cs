using System.Diagnostics;
using NativeParallel.Cli.Progress;
using NativeParallel.Devices;
using NativeParallel.Diagnostics;
using NativeParallel.Interop;
using NativeParallel.Kernels;
using NativeParallel.Kernels.Check;
using NativeParallel.Tensors;

namespace NativeParallel.Cli.Commands;

/// <summary><c>nativeparallel kernels check</c>: compile every kernel for each arch, then run every case on a device.</summary>
internal static class KernelsCheckCommand
{
    public static int Run(CommandLine line)
    {
        if (Entry.HelpRequested(line)) return 0;
        string? deviceName = line.Option("device");
        string? archOption = line.Option("arch");
        string? opFilter = line.Option("op");
        ulong seed = (ulong)line.Int("seed", (long)(Stopwatch.GetTimestamp() & 0x7FFF_FFFF));
        bool cached = line.Flag("cached");
        int schedules = line.Int32("schedules", 1);
        bool sanitize = line.Flag("sanitize");
        string? kernelsDir = line.Option("kernels");
        string? json = line.Option("json");
        bool quiet = line.Flag("quiet");
        line.RejectUnknown();
        if (schedules < 1) throw new UsageException("--schedules must be at least 1");
        if ((schedules > 1 || sanitize) && deviceName != "emu") throw new UsageException("--schedules and --sanitize need --device emu");
        if (kernelsDir is not null)
        {
            if (!Directory.Exists(kernelsDir)) throw new UsageException($"--kernels {kernelsDir}: no such folder");
            Environment.SetEnvironmentVariable("NATIVEPARALLEL_KERNELS_DIR", Path.GetFullPath(kernelsDir));
        }
        if (sanitize && !SanitizerHost.IsActive) return SanitizerHost.Reexecute();

        bool compileOk = true;
        var compileRows = new List<object>();
        if (!NativeLibraries.IsAvailable(NativeLibraryKind.Nvrtc))
        {
            bool required = Tunables.Required.Contains("nvrtc");
            string message = "NVRTC is unavailable: kernels were not compiled (install libnvrtc11.2 from Debian non-free, or set NATIVEPARALLEL_NVRTC)";
            if (deviceName is null || required)
            {
                Console.Error.WriteLine($"nativeparallel: {message}");
                return 1;
            }
            Console.WriteLine($"note: {message}");
        }
        else
        {
            var archs = (archOption ?? "sm_80,sm_90").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            compileOk = CompileAll(archs, cached, compileRows, quiet);
        }

        var caseRows = new List<object>();
        int passed = 0, failed = 0;
        string? deviceDescription = null;
        if (deviceName is not null)
        {
            using var device = DeviceRegistry.Open(deviceName);
            deviceDescription = $"{device.Name}: {device.Description}";
            Console.WriteLine();
            Console.WriteLine($"running kernel cases on {deviceDescription}, seed {seed} (reproduce with --seed {seed})" +
                              (schedules > 1 ? $", {schedules} fiber schedules per case" : ""));
            Console.WriteLine($"{"op",-18} {"dtype",-5} {"shape",-58} {"rel err",10} {"bound",8}  result");
            var cases = KernelSuite.Cases.Where(c => opFilter is null || c.Op == opFilter).ToList();
            using var progress = WorkProgress.Start($"kernels check on {device.Name}", cases.Count, "cases", quiet);
            foreach (var kernelCase in cases)
            {
                var result = ScheduledCheck.Run(kernelCase, device, seed, schedules);
                if (result.Passed) passed++;
                else failed++;
                Console.WriteLine($"{kernelCase.Op,-18} {kernelCase.DType.Name(),-5} {kernelCase.Shape,-58} {result.RelativeError,10:E2} {result.Bound,8:E0}  " +
                                  (result.Passed ? "ok" : $"FAIL {result.Message}"));
                caseRows.Add(new
                {
                    op = kernelCase.Op, dtype = kernelCase.DType.Name(), shape = kernelCase.Shape, relative_error = result.RelativeError,
                    bound = result.Bound, passed = result.Passed, message = result.Message,
                });
                progress.Advance($"{kernelCase.Op} {kernelCase.DType.Name()}");
            }
            Console.WriteLine($"{passed} passed, {failed} failed on {device.Name}");
        }

        bool ok = compileOk && failed == 0;
        JsonReport.Write(json, "kernels check", line, new
        {
            nvrtc = NativeLibraries.IsAvailable(NativeLibraryKind.Nvrtc) ? KernelCompiler.NvrtcVersion : null,
            compiled = compileRows,
            device = deviceDescription,
            seed,
            cases = caseRows,
            passed,
            failed,
            ok,
        });
        return ok ? 0 : 1;
    }

    private static bool CompileAll(string[] archs, bool cached, List<object> rows, bool quiet)
    {
        bool ok = true;
        using var progress = WorkProgress.Start("kernels check: compile", (long)archs.Length * KernelSources.Files.Count, "files", quiet);
        Console.WriteLine($"NVRTC {KernelCompiler.NvrtcVersion} ({NativeLibraries.LoadedPath(NativeLibraryKind.Nvrtc)}), {KernelSources.Files.Count} kernel files, targets {string.Join(", ", archs)}");
        Console.WriteLine($"{"file",-16} {"entry point",-24} {"arch",-6} {"regs",5} {"spill B",8} {"stack B",8} {"smem B",7} {"compile ms",11}");
        foreach (string arch in archs)
            foreach (string file in KernelSources.Files)
            {
                CompiledKernel compiled;
                try
                {
                    compiled = KernelCompiler.Compile(file, arch, useCache: cached);
                }
                catch (NvrtcException e)
                {
                    ok = false;
                    Console.WriteLine($"{file,-16} {"COMPILE ERROR",-24} {arch,-6}");
                    Console.WriteLine(e.Message);
                    rows.Add(new { file, arch, error = e.Message });
                    progress.Advance($"{file} {arch}");
                    continue;
                }
                string ms = compiled.FromCache ? "cache" : $"{compiled.CompileTime.TotalMilliseconds:F0}";
                if (compiled.Functions.Count == 0 && !arch.StartsWith("compute_", StringComparison.Ordinal))
                {
                    ok = false;
                    Console.WriteLine($"{file,-16} {"NO RESOURCE REPORT",-24} {arch,-6}  (ptxas -v output missing from the NVRTC log)");
                }
                foreach (var f in compiled.Functions.OrderBy(f => f.Function, StringComparer.Ordinal))
                {
                    int spill = f.SpillStoreBytes + f.SpillLoadBytes;
                    if (f.Spills) ok = false;
                    Console.WriteLine($"{file,-16} {f.Function,-24} {arch,-6} {f.Registers,5} {spill,8} {f.StackFrameBytes,8} {f.SharedMemoryBytes,7} {ms,11}{(f.Spills ? "  SPILLS" : "")}");
                    rows.Add(new
                    {
                        file, function = f.Function, arch, registers = f.Registers, spill_store_bytes = f.SpillStoreBytes,
                        spill_load_bytes = f.SpillLoadBytes, stack_bytes = f.StackFrameBytes, shared_bytes = f.SharedMemoryBytes,
                        compile_ms = compiled.CompileTime.TotalMilliseconds, from_cache = compiled.FromCache,
                    });
                }
                progress.Advance($"{file} {arch}");
            }
        Console.WriteLine(ok ? "compile: every kernel built with 0 spill bytes" : "compile: FAILED (see rows above)");
        return ok;
    }
}
