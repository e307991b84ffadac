using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using NativeParallel.Diagnostics;
using NativeParallel.Interop;

namespace NativeParallel.Kernels;

/// <summary>One kernel file compiled for one architecture.</summary>
/// <param name="File">Kernel file, e.g. <c>rmsnorm.cu</c>.</param>
/// <param name="Arch">Target, e.g. <c>sm_90</c> (a CUBIN) or <c>compute_90</c> (PTX for the driver to JIT).</param>
/// <param name="Image">CUBIN bytes, or NUL-terminated PTX text for a compute_ target: what cuModuleLoadData takes.</param>
/// <param name="Log">NVRTC's log, with ptxas's resource report.</param>
/// <param name="CompileTime">Time spent in NVRTC (zero when loaded from the cache).</param>
/// <param name="FromCache">True when the image came from the on-disk cache.</param>
/// <param name="Functions">Resource usage per entry point (empty for PTX targets).</param>
public sealed record CompiledKernel(string File, string Arch, byte[] Image, string Log, TimeSpan CompileTime, bool FromCache,
    IReadOnlyList<KernelResourceUsage> Functions);

/// <summary>
/// Compiles kernels/ sources with NVRTC and caches the binaries on disk, keyed by the SHA-256 of source and
/// headers, options, target and NVRTC version, so a warm start loads without compiling.
/// </summary>
public static class KernelCompiler
{
    private static readonly object s_gate = new();
    private static readonly Dictionary<string, CompiledKernel> s_memory = new(StringComparer.Ordinal);

    /// <summary>The NVRTC version as "major.minor".</summary>
    public static string NvrtcVersion
    {
        get
        {
            var (major, minor) = NvrtcProgram.Version;
            return $"{major}.{minor}";
        }
    }

    /// <summary>Real architectures this NVRTC can build CUBINs for, as sm_XY names.</summary>
    public static IReadOnlyList<string> SupportedArchs() => NvrtcProgram.SupportedArchs().Select(a => $"sm_{a}").ToArray();

    /// <summary>The options every kernel is compiled with for <paramref name="arch"/>.</summary>
    public static IReadOnlyList<string> Options(string arch)
    {
        var options = new List<string> { $"--gpu-architecture={arch}", "--std=c++17" };
        // Source lines in the binary for ncu and compute-sanitizer. NVRTC 11.8's ptxas crashes (SIGSEGV) on
        // -lineinfo for sm_90, so only newer NVRTCs get it.
        if (NvrtcProgram.Version.Major >= 12) options.Add("-lineinfo");
        // Resource report (registers, spills, shared memory) in the log: kernels check reads it.
        options.Add("--ptxas-options=-v");
        return options;
    }

    /// <summary>
    /// Compiles <paramref name="file"/> for <paramref name="arch"/>. With <paramref name="useCache"/> a binary already
    /// in memory or on disk is reused; without it NVRTC always runs (kernels check times it). Either way a fresh
    /// binary is stored in the disk cache.
    /// </summary>
    /// <exception cref="NvrtcException">The source does not compile; carries the whole log, the file and the options.</exception>
    public static CompiledKernel Compile(string file, string arch, bool useCache = true)
    {
        var options = Options(arch).Where(o => !(arch.StartsWith("compute_") && o.StartsWith("--ptxas"))).ToArray();
        string key = CacheKey(file, arch, options);
        lock (s_gate)
        {
            if (useCache && s_memory.TryGetValue(key, out var known)) return known;
        }
        string? cacheDir = Tunables.KernelCacheDir;
        var compiled = (useCache && cacheDir is not null ? TryLoad(cacheDir, key, file, arch) : null) ?? Build(file, arch, options, cacheDir, key);
        lock (s_gate) s_memory[key] = compiled;
        return compiled;
    }

    /// <summary>Forgets the binaries held in memory (the disk cache stays), as a new process would start.</summary>
    internal static void ClearMemoryCache()
    {
        lock (s_gate) s_memory.Clear();
    }

    private static CompiledKernel Build(string file, string arch, string[] options, string? cacheDir, string key)
    {
        var stopwatch = Stopwatch.StartNew();
        using var program = new NvrtcProgram(KernelSources.Read(file), file, KernelSources.Headers);
        program.CompileOrThrow(options);
        bool ptx = arch.StartsWith("compute_", StringComparison.Ordinal);
        byte[] image = ptx ? Encoding.ASCII.GetBytes(program.GetPtx() + "\0") : program.GetCubin();
        stopwatch.Stop();
        string log = program.Log;
        Log.Info($"compiled {file} for {arch} in {stopwatch.Elapsed.TotalMilliseconds:F0} ms (NVRTC {NvrtcVersion})");
        if (cacheDir is not null) TryStore(cacheDir, key, image, log);
        return new CompiledKernel(file, arch, image, log, stopwatch.Elapsed, false, KernelResourceUsage.ParsePtxasLog(log));
    }

    private static string CacheKey(string file, string arch, string[] options)
    {
        string material = string.Join('\n', [KernelSources.ContentHash(file), file, arch, NvrtcVersion, .. options]);
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(material)))[..32];
    }

    private static CompiledKernel? TryLoad(string dir, string key, string file, string arch)
    {
        string image = Path.Combine(dir, key + ".bin"), log = Path.Combine(dir, key + ".log");
        try
        {
            if (!File.Exists(image) || !File.Exists(log)) return null;
            string text = File.ReadAllText(log);
            Log.Info($"loaded {file} for {arch} from the kernel cache {image}");
            return new CompiledKernel(file, arch, File.ReadAllBytes(image), text, TimeSpan.Zero, true, KernelResourceUsage.ParsePtxasLog(text));
        }
        catch (IOException e)
        {
            Log.Warn($"kernel cache entry {image} is unreadable ({e.Message}); recompiling");
            return null;
        }
    }

    private static void TryStore(string dir, string key, byte[] image, string log)
    {
        try
        {
            Directory.CreateDirectory(dir);
            // Write-then-rename: concurrent ranks compiling the same kernel never see a half-written file.
            WriteAtomically(Path.Combine(dir, key + ".log"), Encoding.UTF8.GetBytes(log));
            WriteAtomically(Path.Combine(dir, key + ".bin"), image);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Log.Warn($"cannot write the kernel cache in {dir} ({e.Message}); set NATIVEPARALLEL_CACHE_DIR to a writable folder");
        }
    }

    private static void WriteAtomically(string path, byte[] bytes)
    {
        string temporary = $"{path}.{Environment.ProcessId}.{Environment.CurrentManagedThreadId}.tmp";
        File.WriteAllBytes(temporary, bytes);
        File.Move(temporary, path, overwrite: true);
    }
}
