using System.Reflection;
using System.Security.Cryptography;
using System.Text;

namespace NativeParallel.Kernels;

/// <summary>
/// The CUDA C sources of kernels/, embedded in this assembly: one .cu file per op and the shared headers of
/// kernels/common/. NVRTC compiles them at run time, so the library needs no native build step.
/// </summary>
public static class KernelSources
{
    private const string Prefix = "kernels/";
    private static readonly Lazy<Dictionary<string, string>> s_all = new(LoadAll);

    /// <summary>The kernel files (e.g. <c>rmsnorm.cu</c>), sorted.</summary>
    public static IReadOnlyList<string> Files { get; } =
        s_all.Value.Keys.Where(k => k.EndsWith(".cu", StringComparison.Ordinal)).Order(StringComparer.Ordinal).ToArray();

    /// <summary>
    /// The headers as NVRTC wants them: each common header under its path from kernels/ (<c>common/dtypes.cuh</c>,
    /// how kernel files include it) and under its bare name (how common headers include each other).
    /// </summary>
    public static IReadOnlyDictionary<string, string> Headers { get; } = BuildHeaders();

    /// <summary>The text of a kernel file.</summary>
    public static string Read(string file) =>
        s_all.Value.TryGetValue(file, out var text)
            ? text
            : throw new FileNotFoundException($"no kernel source '{file}' is embedded; known: {string.Join(", ", Files)}");

    /// <summary>SHA-256 over a kernel file and every header (any header edit invalidates every cached binary).</summary>
    public static string ContentHash(string file)
    {
        var sb = new StringBuilder(Read(file));
        foreach (var (name, text) in s_all.Value.Where(p => p.Key.EndsWith(".cuh", StringComparison.Ordinal)).OrderBy(p => p.Key, StringComparer.Ordinal))
            sb.Append('\0').Append(name).Append('\0').Append(text);
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(sb.ToString())));
    }

    private static IReadOnlyDictionary<string, string> BuildHeaders()
    {
        var headers = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (name, text) in s_all.Value)
        {
            if (!name.EndsWith(".cuh", StringComparison.Ordinal)) continue;
            headers[name] = text;
            headers[Path.GetFileName(name)] = text;
        }
        return headers;
    }

    private static Dictionary<string, string> LoadAll()
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
