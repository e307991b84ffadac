using System.Reflection;
using System.Runtime.CompilerServices;
using NativeParallel.Kernels.Check;

namespace NativeParallel.Kernels.Ops;

/// <summary>
/// Every op of Kernels/Ops/, found once by its <see cref="KernelOpAttribute"/>. By convention an op class has
/// <c>internal static IEnumerable&lt;KernelCase&gt; Cases()</c> and its argument structs nested inside it, each
/// named as its C struct in the op's .cu file (the layout test compiles a <c>static_assert</c> of each size).
/// </summary>
internal static class OpCatalog
{
    private static readonly Lazy<IReadOnlyList<(Type Type, KernelOpAttribute Op)>> s_ops = new(Find);

    /// <summary>The op classes, ordered by name.</summary>
    public static IReadOnlyList<(Type Type, KernelOpAttribute Op)> Ops => s_ops.Value;

    /// <summary>Every op's kernel-suite cases, in op order.</summary>
    public static IReadOnlyList<KernelCase> Cases =>
        Ops.SelectMany(o => (IEnumerable<KernelCase>)o.Type.GetMethod("Cases", BindingFlags.Static | BindingFlags.NonPublic | BindingFlags.Public)!
            .Invoke(null, null)!).ToArray();

    /// <summary>(kernel file, C struct name, C# size) of every nested argument struct.</summary>
    public static IReadOnlyList<(string File, string CStruct, int ManagedSize)> ArgStructs =>
        Ops.SelectMany(o => o.Type.GetNestedTypes(BindingFlags.Public | BindingFlags.NonPublic)
                .Where(t => t.IsValueType && t.Name.EndsWith("Args", StringComparison.Ordinal))
                .Select(t => (o.Op.File, t.Name, RuntimeHelpers.SizeOf(t.TypeHandle)))).ToArray();

    private static IReadOnlyList<(Type, KernelOpAttribute)> Find()
    {
        var ops = new List<(Type, KernelOpAttribute)>();
        foreach (var type in typeof(OpCatalog).Assembly.GetTypes())
        {
            if (type.GetCustomAttribute<KernelOpAttribute>() is not { } op) continue;
            if (type.GetMethod("Cases", BindingFlags.Static | BindingFlags.NonPublic | BindingFlags.Public, Type.EmptyTypes) is null)
                throw new InvalidOperationException($"op class {type.Name} ({op.Name}) has no static Cases() method");
            ops.Add((type, op));
        }
        return ops.OrderBy(o => o.Item2.Name, StringComparer.Ordinal).ToArray();
    }
}
