using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;
using NativeParallel.Diagnostics;
using NativeParallel.Kernels;

namespace NativeParallel.Devices;

/// <summary>
/// Builds a kernel file for the emulated device: the very kernels/*.cu source, compiled by the host C++ compiler
/// with kernels/emu/cuda_emu.h, into a shared library that also holds the fiber launcher (emu_runtime.h) and one
/// trampoline per entry point (<c>np_emu_entry_NAME(const void* args)</c>, which calls NAME with its struct).
/// Libraries are cached under the kernel cache folder, keyed by the sources, compiler, flags and sanitizer mode.
/// </summary>
public static class EmuCompiler
{
    private static readonly Regex EntryPoint = new(@"extern\s+""C""\s+void\s+(\w+)\s*\(\s*\w+\s+\w+\s*\)", RegexOptions.Compiled);
    private static readonly Regex LineMarker = new(@"^# \d+ ""([^""]+)""", RegexOptions.Compiled | RegexOptions.Multiline);
    private static readonly Lazy<(string? Path, string Version)> s_compiler = new(FindCompiler);
    private static readonly object s_gate = new();

    /// <summary>The host compiler (path and version line), or null when none is installed.</summary>
    public static (string? Path, string Version) Compiler => s_compiler.Value;

    /// <summary>Why the emulated device cannot build kernels here, or null when it can.</summary>
    public static string? UnavailableReason =>
        Compiler.Path is null ? "no host C++ compiler (g++ or clang++, or NATIVEPARALLEL_CXX) was found" : null;

    /// <summary>A built kernel file: the shared library and its entry points.</summary>
    public sealed record Library(string File, string Path, IReadOnlyList<string> EntryPoints, TimeSpan BuildTime, bool FromCache);

    /// <summary>Builds (or finds in the cache) the library for <paramref name="file"/>; sanitize adds ASan and UBSan.</summary>
    /// <exception cref="InvalidOperationException">No compiler, or the kernel does not compile; the message has the compiler output.</exception>
    public static Library Build(string file, bool sanitize)
    {
        var (compiler, version) = Compiler;
        if (compiler is null) throw new InvalidOperationException($"emu: {UnavailableReason}");
        string[] flags = Flags(sanitize);
        string key = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(
            string.Join('\n', [KernelSources.ContentHash(file), file, version, .. flags]))))[..24];
        string root = Path.Combine(Tunables.KernelCacheDir ?? Path.Combine(Path.GetTempPath(), $"nativeparallel-{Environment.UserName}"), "emu", key);
        string library = Path.Combine(root, Path.ChangeExtension(file, ".so"));
        string entriesFile = library + ".entries";
        lock (s_gate)
        {
            if (File.Exists(library) && File.Exists(entriesFile))
                return new Library(file, library, File.ReadAllLines(entriesFile), TimeSpan.Zero, true);
            var clock = Stopwatch.StartNew();
            string sources = Path.Combine(root, "src");
            foreach (var (name, text) in KernelSources.All())
            {
                string path = Path.Combine(sources, name);
                Directory.CreateDirectory(Path.GetDirectoryName(path)!);
                File.WriteAllText(path, text);
            }
            string[] common = ["-std=c++17", "-DNP_EMU", "-Wno-unknown-pragmas", "-include", Path.Combine(sources, "emu", "cuda_emu.h"), "-I", sources];
            // Entry points: the extern "C" functions of the kernel file itself, after macros are expanded.
            string preprocessed = Run(compiler, [.. common, "-E", "-x", "c++", Path.Combine(sources, file)], file);
            var entries = FindEntryPoints(preprocessed, file);
            if (entries.Count == 0) throw new InvalidOperationException($"emu: no extern \"C\" __global__ entry points found in kernels/{file}");
            var unit = new StringBuilder();
            unit.AppendLine($"#include \"{file}\"");
            unit.AppendLine("#include \"emu/emu_runtime.h\"");
            unit.AppendLine("template <typename A> static inline void np_emu_call(void (*kernel)(A), const void* args) { kernel(*static_cast<const A*>(args)); }");
            foreach (string entry in entries)
                unit.AppendLine($"extern \"C\" void np_emu_entry_{entry}(const void* args) {{ np_emu_call({entry}, args); }}");
            string unitPath = Path.Combine(sources, Path.ChangeExtension(file, ".emu.cpp"));
            File.WriteAllText(unitPath, unit.ToString());
            string temporary = $"{library}.{Environment.ProcessId}.tmp";
            Run(compiler, [.. common, .. flags, "-shared", "-fPIC", "-o", temporary, unitPath, "-lpthread"], file);
            File.Move(temporary, library, overwrite: true);
            File.WriteAllLines(entriesFile, entries);
            clock.Stop();
            Log.Info($"emu: built {file} with {Path.GetFileName(compiler)} in {clock.Elapsed.TotalMilliseconds:F0} ms ({entries.Count} entry points){(sanitize ? ", sanitized" : "")}");
            return new Library(file, library, entries, clock.Elapsed, false);
        }
    }

    private static string[] Flags(bool sanitize) => sanitize
        ? ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined"]
        : ["-O2", "-g"];

    private static List<string> FindEntryPoints(string preprocessed, string file)
    {
        // Keep only text the preprocessor attributes to the kernel file (not to headers it includes).
        var entries = new List<string>();
        bool inKernelFile = false;
        foreach (string line in preprocessed.Split('\n'))
        {
            var marker = LineMarker.Match(line);
            if (marker.Success)
            {
                inKernelFile = marker.Groups[1].Value.EndsWith("/" + file, StringComparison.Ordinal);
                continue;
            }
            if (!inKernelFile) continue;
            foreach (Match m in EntryPoint.Matches(line))
                if (!entries.Contains(m.Groups[1].Value)) entries.Add(m.Groups[1].Value);
        }
        return entries;
    }

    private static string Run(string compiler, string[] arguments, string file)
    {
        var info = new ProcessStartInfo(compiler) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string a in arguments) info.ArgumentList.Add(a);
        using var process = Process.Start(info) ?? throw new InvalidOperationException($"emu: cannot start {compiler}");
        var stderr = process.StandardError.ReadToEndAsync();
        string stdout = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0)
            throw new InvalidOperationException($"emu: {Path.GetFileName(compiler)} failed on kernels/{file} (exit {process.ExitCode}):\n" +
                $"{compiler} {string.Join(' ', arguments)}\n{stderr.Result}");
        return stdout;
    }

    private static (string? Path, string Version) FindCompiler()
    {
        var candidates = Tunables.HostCompiler is { } configured ? [configured] : new[] { "g++", "clang++" };
        foreach (string candidate in candidates)
        {
            string? path = candidate.Contains('/') ? (File.Exists(candidate) ? candidate : null)
                : (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Select(d => Path.Combine(d, candidate)).FirstOrDefault(File.Exists);
            if (path is null) continue;
            try
            {
                return (path, Run(path, ["--version"], "(version)").Split('\n')[0].Trim());
            }
            catch (Exception e) when (e is InvalidOperationException or System.ComponentModel.Win32Exception)
            {
                continue;
            }
        }
        return (null, "");
    }
}
