namespace NativeParallel.Kernels.Check;

/// <summary>
/// Every kernel case: each op of Kernels/Ops/ (found by <see cref="Ops.OpCatalog"/>), each dtype it supports, shapes
/// that are not multiples of a block or a warp (0, 1, 31, 33, 1000...). The cases live in their op's file; the same
/// list runs on every device: in the test suite and in <c>nativeparallel kernels check --device</c>.
/// </summary>
public static class KernelSuite
{
    /// <summary>All cases, in a fixed order (by op name, then as each op lists them).</summary>
    public static IReadOnlyList<KernelCase> Cases { get; } = Ops.OpCatalog.Cases;
}
