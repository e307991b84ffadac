using System.Reflection;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;

// Every binding in this assembly is a [LibraryImport] of blittable types only, so runtime
// marshalling can be switched off: the generated stubs then pass structs such as CUstream or
// CUipcMemHandle through untouched, and nothing can silently fall back to a slow marshaller.
[assembly: DisableRuntimeMarshalling]

namespace NativeParallel.Interop;

/// <summary>
/// Logical library names used by the <c>[LibraryImport]</c> declarations. They are never
/// handed to the OS loader: <see cref="NativeLibraries"/> maps each one to a concrete file
/// (whose name depends on OS and toolkit version) through the assembly's import resolver.
/// </summary>
internal static class Libraries
{
    internal const string Cuda = "nativeparallel-cuda";
    internal const string Nvrtc = "nativeparallel-nvrtc";
    internal const string Cublas = "nativeparallel-cublas";
}

/// <summary>The native libraries this assembly binds to.</summary>
public enum NativeLibraryKind
{
    /// <summary>The CUDA driver API (libcuda.so.1 / nvcuda.dll), installed with the GPU driver.</summary>
    Cuda,
    /// <summary>The NVRTC runtime compiler (libnvrtc.so.* / nvrtc64_*.dll), part of the toolkit.</summary>
    Nvrtc,
    /// <summary>cuBLAS (libcublas.so.* / cublas64_*.dll), part of the toolkit.</summary>
    Cublas,
}

/// <summary>
/// Finds and loads the CUDA driver, NVRTC and cuBLAS for this assembly's bindings.
/// </summary>
/// <remarks>
/// <para>
/// One <see cref="NativeLibrary.SetDllImportResolver"/> is installed for the assembly when the
/// module is initialised. For each <see cref="NativeLibraryKind"/> the search order is:
/// the override environment variable (<c>NATIVEPARALLEL_CUDA</c>, <c>NATIVEPARALLEL_NVRTC</c>,
/// <c>NATIVEPARALLEL_CUBLAS</c>; a full file path or a folder), then each candidate file name
/// through the system loader, then the usual toolkit folders (<c>$CUDA_PATH</c>,
/// <c>/usr/local/cuda</c>, the distribution's library folder) and the <c>nvidia/*/lib</c>
/// folders of Python site-packages, where pip-installed NVIDIA wheels put their libraries.
/// Candidate names are ordered newest toolkit first (13, 12, 11).
/// </para>
/// <para>
/// The outcome, success or failure, is cached per kind for the life of the process, so a
/// missing library costs one search, and every later call sees the same answer.
/// </para>
/// </remarks>
public static class NativeLibraries
{
    private sealed record LoadResult(nint Handle, string? Path, string[] Tried, string[] Reasons);

    private static readonly LoadResult?[] s_results = new LoadResult?[3];
    private static string? s_nvrtcBuiltins;
    private static readonly object[] s_locks = [new(), new(), new()];

#pragma warning disable CA2255 // A library module initializer is the only hook that runs before the first P/Invoke binds.
    [ModuleInitializer]
    internal static void InstallResolver()
        => NativeLibrary.SetDllImportResolver(typeof(NativeLibraries).Assembly, Resolve);
#pragma warning restore CA2255

    /// <summary>
    /// Loads (or returns the cached result of loading) the library of the given kind.
    /// </summary>
    /// <param name="kind">Which library.</param>
    /// <param name="loadedPath">The path that loaded (for a library the system loader found by name: the file it
    /// mapped, or the name where that cannot be told), or <see langword="null"/>.</param>
    /// <param name="tried">Every path or name handed to the loader (or checked for existence), in order.</param>
    /// <returns><see langword="true"/> when the library is loaded.</returns>
    public static bool TryLoad(NativeLibraryKind kind, out string? loadedPath, out IReadOnlyList<string> tried)
    {
        LoadResult r = GetOrLoad(kind);
        loadedPath = r.Path;
        tried = r.Tried;
        return r.Handle != 0;
    }

    /// <summary>The path the library of this kind was loaded from, or <see langword="null"/> if it cannot be loaded.</summary>
    public static string? LoadedPath(NativeLibraryKind kind) => GetOrLoad(kind).Path;

    /// <summary>
    /// The NVRTC builtins library (<c>libnvrtc-builtins.so.X.Y</c> / <c>nvrtc-builtins64_XY.dll</c>) loaded from the
    /// folder NVRTC was found in, or <see langword="null"/> when NVRTC is unavailable or has no builtins beside it.
    /// </summary>
    /// <remarks>
    /// NVRTC opens its builtins by name when it first compiles, through the system loader's search path only. When
    /// NVRTC itself was found by a path (<c>NATIVEPARALLEL_NVRTC</c>, a toolkit folder or a pip wheel that is not on the
    /// loader path), that search fails and every compile returns NVRTC_ERROR_BUILTIN_OPERATION_FAILURE. So the builtins
    /// beside NVRTC are loaded first, by full path: the loader then finds them already loaded, by soname.
    /// </remarks>
    public static string? NvrtcBuiltinsPath
    {
        get
        {
            GetOrLoad(NativeLibraryKind.Nvrtc);
            return Volatile.Read(ref s_nvrtcBuiltins);
        }
    }

    /// <summary>Whether the library of this kind can be loaded. Never throws.</summary>
    public static bool IsAvailable(NativeLibraryKind kind) => GetOrLoad(kind).Handle != 0;

    /// <summary>The name of the environment variable that overrides the search for <paramref name="kind"/>.</summary>
    public static string EnvironmentVariable(NativeLibraryKind kind) => kind switch
    {
        NativeLibraryKind.Cuda => "NATIVEPARALLEL_CUDA",
        NativeLibraryKind.Nvrtc => "NATIVEPARALLEL_NVRTC",
        NativeLibraryKind.Cublas => "NATIVEPARALLEL_CUBLAS",
        _ => throw new ArgumentOutOfRangeException(nameof(kind)),
    };

    private static nint Resolve(string libraryName, Assembly assembly, DllImportSearchPath? searchPath)
    {
        NativeLibraryKind kind;
        switch (libraryName)
        {
            case Libraries.Cuda: kind = NativeLibraryKind.Cuda; break;
            case Libraries.Nvrtc: kind = NativeLibraryKind.Nvrtc; break;
            case Libraries.Cublas: kind = NativeLibraryKind.Cublas; break;
            default: return 0; // not ours: let the runtime's default probing handle it
        }

        LoadResult r = GetOrLoad(kind);
        if (r.Handle != 0)
            return r.Handle;

        // Returning 0 would make the runtime retry with the logical name and throw a generic
        // DllNotFoundException naming "nativeparallel-cuda", which tells the user nothing.
        throw new NativeLibraryNotFoundException(kind, EnvironmentVariable(kind), r.Tried, r.Reasons);
    }

    private static LoadResult GetOrLoad(NativeLibraryKind kind)
    {
        int i = (int)kind;
        if ((uint)i >= (uint)s_results.Length)
            throw new ArgumentOutOfRangeException(nameof(kind));

        LoadResult? r = Volatile.Read(ref s_results[i]);
        if (r is not null)
            return r;

        lock (s_locks[i])
        {
            r = s_results[i];
            if (r is null)
            {
                r = Search(kind);
                Volatile.Write(ref s_results[i], r);
            }
            return r;
        }
    }

    private static LoadResult Search(NativeLibraryKind kind)
    {
        var tried = new List<string>();
        var reasons = new List<string>();
        var seen = new HashSet<string>(OperatingSystem.IsWindows() ? StringComparer.OrdinalIgnoreCase : StringComparer.Ordinal);
        string[] names = CandidateNames(kind);

        // 1. Explicit override: a file or a folder.
        string envVar = EnvironmentVariable(kind);
        string? env = Environment.GetEnvironmentVariable(envVar);
        if (!string.IsNullOrWhiteSpace(env))
        {
            env = env.Trim();
            if (File.Exists(env))
            {
                if (TryPath(env, kind, tried, reasons, seen) is { } h)
                    return new LoadResult(h, env, [.. tried], [.. reasons]);
            }
            else if (Directory.Exists(env))
            {
                if (TryFolder(env, names, kind, tried, reasons, seen) is { } hit)
                    return new LoadResult(hit.Handle, hit.Path, [.. tried], [.. reasons]);
            }
            else
            {
                tried.Add(env);
                reasons.Add($"{envVar} points to nothing that exists");
            }
        }

        // 2. Plain names: LD_LIBRARY_PATH, ldconfig cache, PATH/System32 on Windows.
        foreach (string name in names)
        {
            if (!seen.Add(name))
                continue;
            tried.Add(name);
            if (TryLoadCore(name, out nint h, out string? why))
            {
                // The file the loader chose, where the process maps it (Linux), else the name it was asked for.
                string? mapped = MappedPath(name);
                if (kind == NativeLibraryKind.Nvrtc && mapped is not null)
                    PreloadNvrtcBuiltins(mapped); // on the loader path already; loaded here so that info can name it
                reasons.Add("loaded (system loader)");
                return new LoadResult(h, mapped ?? name, [.. tried], [.. reasons]);
            }
            reasons.Add("system loader: " + why);
        }

        // 3. Well-known folders.
        foreach (string dir in CandidateFolders())
        {
            if (TryFolder(dir, names, kind, tried, reasons, seen) is { } hit)
                return new LoadResult(hit.Handle, hit.Path, [.. tried], [.. reasons]);
        }

        return new LoadResult(0, null, [.. tried], [.. reasons]);
    }

    private static (nint Handle, string Path)? TryFolder(string dir, string[] names, NativeLibraryKind kind,
        List<string> tried, List<string> reasons, HashSet<string> seen)
    {
        foreach (string name in names)
        {
            string path = Path.Combine(dir, name);
            if (TryPath(path, kind, tried, reasons, seen) is { } h)
                return (h, path);
        }
        return null;
    }

    private static nint? TryPath(string path, NativeLibraryKind kind, List<string> tried, List<string> reasons, HashSet<string> seen)
    {
        string full;
        try { full = Path.GetFullPath(path); }
        catch (Exception e) when (e is ArgumentException or NotSupportedException or PathTooLongException) { full = path; }
        if (!seen.Add(full))
            return null;

        tried.Add(full);
        if (!File.Exists(full))
        {
            reasons.Add("not found");
            return null;
        }

        if (kind == NativeLibraryKind.Cublas)
            PreloadCublasLt(full);
        if (kind == NativeLibraryKind.Nvrtc)
            PreloadNvrtcBuiltins(full);

        if (TryLoadCore(full, out nint h, out string? why))
        {
            reasons.Add("loaded");
            return h;
        }
        reasons.Add(why ?? "load failed");
        return null;
    }

    // libcublas needs libcublasLt of the same version. Toolkit folders are usually on the
    // loader path, but a folder we found ourselves (e.g. a pip wheel) may not be, so load the
    // sibling first: the dynamic linker then satisfies libcublas's DT_NEEDED by soname.
    private static void PreloadCublasLt(string cublasPath)
    {
        string? dir = Path.GetDirectoryName(cublasPath);
        if (dir is null)
            return;
        string file = Path.GetFileName(cublasPath);
        string lt = OperatingSystem.IsWindows()
            ? file.Replace("cublas64_", "cublasLt64_", StringComparison.OrdinalIgnoreCase)
            : file.Replace("libcublas.", "libcublasLt.", StringComparison.Ordinal);
        string ltPath = Path.Combine(dir, lt);
        if (lt != file && File.Exists(ltPath))
            NativeLibrary.TryLoad(ltPath, out _);
    }

    private static void PreloadNvrtcBuiltins(string nvrtcPath)
    {
        string? builtins = NvrtcBuiltinsBeside(nvrtcPath);
        if (builtins is not null && NativeLibrary.TryLoad(builtins, out _))
            Volatile.Write(ref s_nvrtcBuiltins, builtins);
    }

    /// <summary>
    /// The NVRTC builtins library in the folder of <paramref name="nvrtcPath"/> that this NVRTC opens when it compiles,
    /// or <see langword="null"/> when there is none. The builtins carry NVRTC's full version (libnvrtc.so.12 of CUDA 12.4
    /// opens libnvrtc-builtins.so.12.4): a file of the same major version is chosen, of NVRTC's own minor version when
    /// that can be read from where <paramref name="nvrtcPath"/> links to (libnvrtc.so.11.2 → libnvrtc.so.11.8.89), the
    /// soname (two version parts) before the fully versioned file, the newest when several remain. The alternative
    /// builds of pip wheels (libnvrtc-builtins.alt.so.*) are never chosen. Does not load anything.
    /// </summary>
    public static string? NvrtcBuiltinsBeside(string nvrtcPath)
    {
        string? dir = Path.GetDirectoryName(Path.GetFullPath(nvrtcPath));
        if (dir is null || !Directory.Exists(dir))
            return null;
        bool windows = OperatingSystem.IsWindows();
        string prefix = windows ? "nvrtc-builtins64_" : "libnvrtc-builtins.so.";
        int[] own = NvrtcVersionOf(Path.GetFileName(nvrtcPath), windows);
        try
        {
            string? target = File.ResolveLinkTarget(nvrtcPath, returnFinalTarget: true)?.FullName;
            if (target is not null && NvrtcVersionOf(Path.GetFileName(target), windows) is { Length: > 1 } full && (own.Length == 0 || full[0] == own[0]))
                own = full;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }

        string[] files;
        try { files = Directory.GetFiles(dir, windows ? "nvrtc-builtins64_*.dll" : "libnvrtc-builtins.so.*"); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }

        string? best = null;
        (int Own, int Minor, int Soname) bestRank = default;
        foreach (string file in files)
        {
            string name = Path.GetFileName(file);
            if (!name.StartsWith(prefix, StringComparison.OrdinalIgnoreCase))
                continue;
            int[] version = windows ? WindowsVersion(name[prefix.Length..^".dll".Length]) : DottedVersion(name[prefix.Length..]);
            if (version.Length < 2 || (own.Length > 0 && version[0] != own[0]))
                continue;
            // Compared in order: NVRTC's own minor version, the newest minor, the soname over the fully versioned file.
            var rank = (own.Length > 1 && version[1] == own[1] ? 1 : 0, version[1], version.Length == 2 ? 1 : 0);
            if (best is null || rank.CompareTo(bestRank) > 0)
            {
                best = file;
                bestRank = rank;
            }
        }
        return best;
    }

    // libnvrtc.so.11.8.89 → [11, 8, 89]; libnvrtc.so.12 → [12]; nvrtc64_120_0.dll → [12]; anything else → [].
    private static int[] NvrtcVersionOf(string fileName, bool windows)
    {
        if (windows)
        {
            const string p = "nvrtc64_";
            if (!fileName.StartsWith(p, StringComparison.OrdinalIgnoreCase))
                return [];
            string digits = new(fileName.AsSpan(p.Length).ToArray().TakeWhile(char.IsAsciiDigit).ToArray());
            return digits.Length >= 2 && int.TryParse(digits[..^1], out int major) ? [major] : [];
        }
        const string prefix = "libnvrtc.so.";
        return fileName.StartsWith(prefix, StringComparison.Ordinal) ? DottedVersion(fileName[prefix.Length..]) : [];
    }

    private static int[] DottedVersion(string text)
    {
        string[] parts = text.Split('.');
        var version = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
            if (!int.TryParse(parts[i], out version[i]))
                return [];
        return version;
    }

    // nvrtc-builtins64_124.dll: "124" is 12.4.
    private static int[] WindowsVersion(string digits)
        => digits.Length >= 2 && digits.All(char.IsAsciiDigit) ? [int.Parse(digits[..^1]), digits[^1] - '0'] : [];

    // The file a library loaded by name came from, as the process maps it (Linux); null when it cannot be told.
    private static string? MappedPath(string name)
    {
        if (!OperatingSystem.IsLinux())
            return null;
        try
        {
            string stem = name.Split(".so")[0] + ".so";
            foreach (string line in File.ReadLines("/proc/self/maps"))
            {
                int slash = line.IndexOf('/');
                if (slash < 0)
                    continue;
                string path = line[slash..].Trim();
                string file = Path.GetFileName(path);
                if (file == stem || file.StartsWith(stem + ".", StringComparison.Ordinal))
                    return path;
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
        return null;
    }

    private static bool TryLoadCore(string nameOrPath, out nint handle, out string? reason)
    {
        try
        {
            // NativeLibrary.Load(string) hands the string to dlopen/LoadLibrary as-is, with no
            // name mangling; unlike TryLoad it reports the loader's error text, which is what
            // explains "file exists but will not load" (missing dependency, wrong architecture).
            handle = NativeLibrary.Load(nameOrPath);
            reason = null;
            return true;
        }
        catch (Exception e) when (e is DllNotFoundException or BadImageFormatException)
        {
            handle = 0;
            reason = LastLine(e.Message);
            return false;
        }
    }

    private static string LastLine(string message)
    {
        string[] lines = message.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        return lines.Length == 0 ? message : lines[^1];
    }

    internal static string[] CandidateNames(NativeLibraryKind kind)
    {
        if (OperatingSystem.IsWindows())
        {
            return kind switch
            {
                NativeLibraryKind.Cuda => ["nvcuda.dll"],
                NativeLibraryKind.Nvrtc => ["nvrtc64_130_0.dll", "nvrtc64_120_0.dll", "nvrtc64_112_0.dll"],
                NativeLibraryKind.Cublas => ["cublas64_13.dll", "cublas64_12.dll", "cublas64_11.dll"],
                _ => [],
            };
        }
        if (OperatingSystem.IsLinux())
        {
            return kind switch
            {
                NativeLibraryKind.Cuda => ["libcuda.so.1", "libcuda.so"],
                NativeLibraryKind.Nvrtc => ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2", "libnvrtc.so"],
                NativeLibraryKind.Cublas => ["libcublas.so.13", "libcublas.so.12", "libcublas.so.11", "libcublas.so"],
                _ => [],
            };
        }
        return []; // CUDA ships for Linux and Windows only
    }

    private static IEnumerable<string> CandidateFolders()
    {
        string? cudaPath = Environment.GetEnvironmentVariable("CUDA_PATH");
        if (OperatingSystem.IsWindows())
        {
            if (!string.IsNullOrEmpty(cudaPath))
            {
                yield return Path.Combine(cudaPath, "bin", "x64"); // CUDA 13 layout
                yield return Path.Combine(cudaPath, "bin");
                yield return Path.Combine(cudaPath, "lib", "x64");
            }
            foreach (string d in PythonNvidiaFolders(WindowsSitePackages(), "bin"))
                yield return d;
            yield break;
        }

        if (!string.IsNullOrEmpty(cudaPath))
        {
            yield return Path.Combine(cudaPath, "lib64");
            yield return Path.Combine(cudaPath, "targets", "x86_64-linux", "lib");
        }
        yield return "/usr/local/cuda/lib64";
        yield return "/usr/local/cuda/targets/x86_64-linux/lib";
        yield return "/usr/lib/x86_64-linux-gnu";
        yield return "/usr/lib/wsl/lib"; // libcuda.so.1 under WSL2
        yield return "/usr/lib64";
        foreach (string d in PythonNvidiaFolders(LinuxSitePackages(), "lib"))
            yield return d;
    }

    private static IEnumerable<string> LinuxSitePackages()
    {
        // Active environments first: they are what the user most likely installed wheels into.
        string? venv = Environment.GetEnvironmentVariable("VIRTUAL_ENV");
        string? conda = Environment.GetEnvironmentVariable("CONDA_PREFIX");
        string? home = Environment.GetEnvironmentVariable("HOME");
        var roots = new List<(string Root, string Leaf)>();
        if (!string.IsNullOrEmpty(venv)) roots.Add((Path.Combine(venv, "lib"), "site-packages"));
        if (!string.IsNullOrEmpty(conda)) roots.Add((Path.Combine(conda, "lib"), "site-packages"));
        if (!string.IsNullOrEmpty(home)) roots.Add((Path.Combine(home, ".local", "lib"), "site-packages"));
        roots.Add(("/usr/local/lib", "dist-packages"));
        roots.Add(("/usr/local/lib", "site-packages"));
        roots.Add(("/usr/lib", "dist-packages"));
        roots.Add(("/usr/lib", "site-packages"));

        foreach (var (root, leaf) in roots)
            foreach (string py in SafeDirs(root, "python3*"))
                yield return Path.Combine(py, leaf);
    }

    private static IEnumerable<string> WindowsSitePackages()
    {
        string? venv = Environment.GetEnvironmentVariable("VIRTUAL_ENV");
        if (!string.IsNullOrEmpty(venv))
            yield return Path.Combine(venv, "Lib", "site-packages");
        string local = Environment.GetFolderPath(Environment.SpecialFolder.LocalApplicationData);
        if (!string.IsNullOrEmpty(local))
            foreach (string py in SafeDirs(Path.Combine(local, "Programs", "Python"), "Python3*"))
                yield return Path.Combine(py, "Lib", "site-packages");
    }

    private static IEnumerable<string> PythonNvidiaFolders(IEnumerable<string> sitePackages, string leaf)
    {
        foreach (string sp in sitePackages)
            foreach (string pkg in SafeDirs(Path.Combine(sp, "nvidia"), "*"))
                yield return Path.Combine(pkg, leaf);
    }

    // Sorted descending so that python3.12 is preferred over python3.10, deterministically.
    private static IEnumerable<string> SafeDirs(string root, string pattern)
    {
        try
        {
            if (!Directory.Exists(root))
                return [];
            string[] dirs = Directory.GetDirectories(root, pattern);
            Array.Sort(dirs, static (a, b) => string.CompareOrdinal(b, a));
            return dirs;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return [];
        }
    }
}

/// <summary>
/// Thrown when a CUDA, NVRTC or cuBLAS entry point is called and the library cannot be found
/// or loaded. The message lists every path tried and names the environment variable that
/// overrides the search.
/// </summary>
public sealed class NativeLibraryNotFoundException : DllNotFoundException
{
    /// <summary>Creates the exception for <paramref name="kind"/>.</summary>
    public NativeLibraryNotFoundException(NativeLibraryKind kind, string environmentVariable, IReadOnlyList<string> tried)
        : this(kind, environmentVariable, tried, null)
    {
    }

    internal NativeLibraryNotFoundException(NativeLibraryKind kind, string environmentVariable,
        IReadOnlyList<string> tried, IReadOnlyList<string>? reasons)
        : base(BuildMessage(kind, environmentVariable, tried, reasons))
    {
        Kind = kind;
        EnvironmentVariable = environmentVariable;
        Tried = tried;
    }

    /// <summary>Which library could not be loaded.</summary>
    public NativeLibraryKind Kind { get; }

    /// <summary>The environment variable that overrides the search (a file path or folder).</summary>
    public string EnvironmentVariable { get; }

    /// <summary>Every path or name tried, in order.</summary>
    public IReadOnlyList<string> Tried { get; }

    private static string BuildMessage(NativeLibraryKind kind, string envVar, IReadOnlyList<string> tried, IReadOnlyList<string>? reasons)
    {
        string what = kind switch
        {
            NativeLibraryKind.Cuda => "the CUDA driver library (installed with the NVIDIA GPU driver)",
            NativeLibraryKind.Nvrtc => "the NVRTC runtime compiler (CUDA toolkit, or pip install nvidia-cuda-nvrtc-cu12)",
            NativeLibraryKind.Cublas => "cuBLAS (CUDA toolkit, or pip install nvidia-cublas-cu12)",
            _ => kind.ToString(),
        };
        var sb = new StringBuilder();
        sb.Append("Could not load ").Append(what).Append('.');
        if (tried.Count == 0)
        {
            sb.Append(" No candidate library names exist for this operating system.");
        }
        else
        {
            sb.Append(" Tried ").Append(tried.Count).Append(" locations:");
            for (int i = 0; i < tried.Count; i++)
            {
                sb.Append("\n  ").Append(tried[i]);
                if (reasons is not null && i < reasons.Count)
                    sb.Append("  [").Append(reasons[i]).Append(']');
            }
        }
        sb.Append("\nSet ").Append(envVar).Append(" to the full path of the library, or to the folder that contains it.");
        return sb.ToString();
    }
}
