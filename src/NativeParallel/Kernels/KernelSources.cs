using System.Security.Cryptography;
using System.Text;
using NativeParallel.Diagnostics;

namespace NativeParallel.Kernels;

/// <summary>
/// The CUDA C sources of kernels/, embedded in this assembly: one .cu file per op, the shared headers of
/// kernels/common/, and the emulated device's headers (kernels/emu/). NVRTC (or the host compiler, for the
/// emulated device) compiles them at run time, so the library needs no native build step.
/// NATIVEPARALLEL_KERNELS_DIR points at a kernels/ folder on disk whose files replace the embedded ones: edit a
/// kernel and check it without rebuilding.
/// </summary>
public static class KernelSources
{
    private const string Prefix = "kernels/";
    private static readonly Lazy<Dictionary<string, string>> s_embedded = new(LoadEmbedded);

    /// <summary>The kernel files (e.g. <c>rmsnorm.cu</c>), sorted.</summary>
    public static IReadOnlyList<string> Files =>
        All().Keys.Where(k => k.EndsWith(".cu", StringComparison.Ordinal) && !k.Contains('/')).Order(StringComparer.Ordinal).ToArray();

    /// <summary>
    /// The headers as NVRTC wants them: each common header under its path from kernels/ (<c>common/dtypes.cuh</c>,
    /// how kernel files include it) and under its bare name (how common headers include each other).
    /// </summary>
    public static IReadOnlyDictionary<string, string> Headers
    {
        get
        {
            var headers = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var (name, text) in All())
            {
                if (!name.EndsWith(".cuh", StringComparison.Ordinal)) continue;
                headers[name] = text;
                headers[Path.GetFileName(name)] = text;
            }
            return headers;
        }
    }

    /// <summary>Every source file by its path under kernels/ (kernel files, common headers, emulator headers).</summary>
    public static IReadOnlyDictionary<string, string> All()
    {
        string? dir = Tunables.KernelsDir;
        if (dir is null) return s_embedded.Value;
        var merged = new Dictionary<string, string>(s_embedded.Value, StringComparer.Ordinal);
        foreach (string path in Directory.EnumerateFiles(dir, "*", SearchOption.AllDirectories))
        {
            string name = Path.GetRelativePath(dir, path).Replace('\\', '/');
            if (name.EndsWith(".cu", StringComparison.Ordinal) || name.EndsWith(".cuh", StringComparison.Ordinal) || name.StartsWith("emu/", StringComparison.Ordinal))
                merged[name] = File.ReadAllText(path);
        }
        return merged;
    }

    /// <summary>The text of a kernel file.</summary>
    public static string Read(string file) =>
        All().TryGetValue(file, out var text)
            ? text
            : throw new FileNotFoundException($"no kernel source '{file}'; known: {string.Join(", ", Files)}");

    /// <summary>SHA-256 over a kernel file and every header (any header edit invalidates every cached binary).</summary>
    public static string ContentHash(string file)
    {
        var all = All();
        var sb = new StringBuilder(Read(file));
        foreach (var (name, text) in all.Where(p => !p.Key.EndsWith(".cu", StringComparison.Ordinal)).OrderBy(p => p.Key, StringComparer.Ordinal))
            sb.Append('\0').Append(name).Append('\0').Append(text);
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(sb.ToString())));
    }

    private static Dictionary<string, string> LoadEmbedded()
    {
        var assembly = typeof(KernelSources).Assembly;
        var sources = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (string resource in assembly.GetManifestResourceNames())
        {
            if (!resource.StartsWith(Prefix, StringComparison.Ordinal)) continue;
            using var stream = assembly.GetManifestResourceStream(resource)!;
            using var reader = new StreamReader(stream, Encoding.UTF8);
            // Resource names may carry Windows separators when packed on Windows.
            sources[resource[Prefix.Length..].Replace('\\', '/')] = reader.ReadToEnd();
        }
        if (sources.Count == 0) throw new InvalidOperationException($"no kernel sources are embedded in {assembly.GetName().Name}");
        return sources;
    }
}
