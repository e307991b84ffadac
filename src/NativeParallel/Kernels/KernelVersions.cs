using NativeParallel.Diagnostics;

namespace NativeParallel.Kernels;

/// <summary>
/// Which version of a device kernel runs, llm.c-style: each kernels/*.cu keeps its earlier versions (v1, v2, ...)
/// callable beside the default, so a benchmark can time them side by side and a test can check every one.
/// The choice is, in order: a scope opened by <see cref="Use"/> on this thread, then NATIVEPARALLEL_KERNEL_VERSION
/// (<c>matmul=v2,matmul_bwd=v1</c>), then the op's default.
/// </summary>
public static class KernelVersions
{
    /// <summary>The ops with several device versions: name, versions (oldest first) and the default.</summary>
    public static readonly IReadOnlyDictionary<string, (string[] Versions, string Default)> Ops = new Dictionary<string, (string[], string)>
    {
        // bf16 operands: v2 64 x 64 tensor-core tiles; v3 128 x 128, two cp.async stages of BK 32; v4 four of BK 16.
        // f32 operands have v1 only.
        ["matmul"] = (["v2", "v3", "v4"], "v3"),
        // bf16 operands: v1 SIMT tiles; v2 and v3 the tensor-core tiles of matmul v3 and v4 with transposed ldmatrix.
        // f32: v1 only.
        ["matmul_bwd"] = (["v1", "v2", "v3"], "v2"),
    };

    /// <summary>What each version is, for tables: "op version" to a few words.</summary>
    private static readonly Dictionary<string, string> Descriptions = new()
    {
        ["matmul v1"] = "SIMT tiles",  // f32 operands' only version
        ["matmul v2"] = "mma.sync 64x64",
        ["matmul v3"] = "mma.sync 128x128, 2 cp.async stages of BK 32",
        ["matmul v4"] = "mma.sync 128x128, 4 cp.async stages of BK 16",
        ["matmul_bwd v1"] = "SIMT tiles",
        ["matmul_bwd v2"] = "mma.sync 128x128, 2 cp.async stages of BK 32",
        ["matmul_bwd v3"] = "mma.sync 128x128, 4 cp.async stages of BK 16",
    };

    [ThreadStatic] private static Dictionary<string, string>? t_scoped;

    /// <summary>A few words on what <paramref name="version"/> of <paramref name="op"/> is.</summary>
    public static string Describe(string op, string version) => Descriptions.TryGetValue($"{op} {version}", out string? text) ? text : version;

    /// <summary>Fails with the reason when NATIVEPARALLEL_KERNEL_VERSION names an op or version that does not exist.</summary>
    public static void CheckEnvironment() => _ = s_fromEnvironment.Value;
    private static readonly Lazy<Dictionary<string, string>> s_fromEnvironment = new(() => Parse(Tunables.Raw("NATIVEPARALLEL_KERNEL_VERSION")));

    /// <summary>The version of <paramref name="op"/> that runs now on this thread.</summary>
    public static string Selected(string op)
    {
        if (!Ops.TryGetValue(op, out var entry)) throw new ArgumentException($"kernel versions: '{op}' has one version only; versioned ops: {string.Join(", ", Ops.Keys)}");
        if (t_scoped is not null && t_scoped.TryGetValue(op, out string? scoped)) return scoped;
        return s_fromEnvironment.Value.TryGetValue(op, out string? chosen) ? chosen : entry.Default;
    }

    /// <summary>Runs <paramref name="op"/>'s <paramref name="version"/> on this thread until the scope is disposed.</summary>
    public static IDisposable Use(string op, string version)
    {
        Validate(op, version, "kernel versions");
        t_scoped ??= new Dictionary<string, string>();
        string? previous = t_scoped.TryGetValue(op, out string? p) ? p : null;
        t_scoped[op] = version;
        return new Scope(op, previous);
    }

    /// <summary>Parses <c>op=version[,op=version...]</c>; every op and version must exist.</summary>
    internal static Dictionary<string, string> Parse(string? text)
    {
        var chosen = new Dictionary<string, string>();
        if (string.IsNullOrWhiteSpace(text)) return chosen;
        foreach (string item in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            string[] parts = item.Split('=', 2, StringSplitOptions.TrimEntries);
            if (parts.Length != 2) throw new ArgumentException($"NATIVEPARALLEL_KERNEL_VERSION: '{item}' is not op=version (e.g. matmul=v2)");
            Validate(parts[0], parts[1], "NATIVEPARALLEL_KERNEL_VERSION");
            chosen[parts[0]] = parts[1];
        }
        return chosen;
    }

    private static void Validate(string op, string version, string where)
    {
        if (!Ops.TryGetValue(op, out var entry))
            throw new ArgumentException($"{where}: '{op}' has no versions to choose from; versioned ops: {string.Join(", ", Ops.Keys)}");
        if (!entry.Versions.Contains(version))
            throw new ArgumentException($"{where}: {op} has no version '{version}'; it has {string.Join(", ", entry.Versions)} (default {entry.Default})");
    }

    private sealed class Scope(string op, string? previous) : IDisposable
    {
        public void Dispose()
        {
            if (previous is null) t_scoped!.Remove(op);
            else t_scoped![op] = previous;
        }
    }
}
