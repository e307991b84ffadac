using System.Diagnostics;
using NativeParallel.Devices;

namespace NativeParallel.Cli.Commands;

/// <summary>
/// <c>--sanitize</c>: kernels built with AddressSanitizer only work in a process that loaded libasan first, so the
/// command runs itself again with LD_PRELOAD set and NATIVEPARALLEL_EMU_SANITIZE=1, and returns the child's exit
/// code. A sanitizer report (out-of-bounds access, undefined behaviour) ends the child with a non-zero code.
/// </summary>
internal static class SanitizerHost
{
    public static bool IsActive => Environment.GetEnvironmentVariable("NATIVEPARALLEL_EMU_SANITIZE") == "1";

    public static int Reexecute()
    {
        string compiler = EmuCompiler.Compiler.Path ?? throw new InvalidOperationException($"--sanitize: {EmuCompiler.UnavailableReason}");
        string libasan = Capture(compiler, "-print-file-name=libasan.so").Trim();
        if (!File.Exists(libasan)) throw new InvalidOperationException($"--sanitize: {compiler} has no AddressSanitizer runtime (looked for {libasan}); install libasan");
        string self = Environment.ProcessPath ?? throw new InvalidOperationException("--sanitize: cannot tell how this process was started");
        var info = new ProcessStartInfo(self) { UseShellExecute = false };
        if (Path.GetFileNameWithoutExtension(self) == "dotnet") info.ArgumentList.Add(typeof(SanitizerHost).Assembly.Location);
        foreach (string arg in Environment.GetCommandLineArgs().Skip(1)) info.ArgumentList.Add(arg);
        info.Environment["LD_PRELOAD"] = libasan;
        // .NET raises SIGSEGV itself for null references: leave that signal to it. Leaks of the runtime are not ours.
        info.Environment["ASAN_OPTIONS"] = "detect_leaks=0:handle_segv=0:allow_user_segv_handler=1:detect_stack_use_after_return=0:halt_on_error=1";
        info.Environment["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1";
        info.Environment["NATIVEPARALLEL_EMU_SANITIZE"] = "1";
        Console.WriteLine($"--sanitize: running again with {libasan} preloaded; kernels are built with -fsanitize=address,undefined");
        Console.Out.Flush();
        using var child = Process.Start(info) ?? throw new InvalidOperationException($"--sanitize: cannot start {self}");
        child.WaitForExit();
        if (child.ExitCode != 0) Console.Error.WriteLine($"--sanitize: the sanitized run failed (exit {child.ExitCode}); a sanitizer report above names the kernel and the access");
        return child.ExitCode == 0 ? 0 : 1;
    }

    private static string Capture(string file, string argument)
    {
        var info = new ProcessStartInfo(file, argument) { RedirectStandardOutput = true, UseShellExecute = false };
        using var process = Process.Start(info)!;
        string output = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        return output;
    }
}
