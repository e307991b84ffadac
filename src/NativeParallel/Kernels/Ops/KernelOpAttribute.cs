namespace NativeParallel.Kernels.Ops;

/// <summary>
/// Marks a class of Kernels/Ops/ as one op written in one file: its contract, argument checks, float64
/// reference, CPU path, launcher with its argument-struct mirrors, and kernel-suite cases. <see cref="OpCatalog"/>
/// finds it, so adding an op touches its .cu, its op file and one benchmark line, nothing else.
/// </summary>
/// <param name="name">The op's name in the kernel suite and on the command line (e.g. <c>swiglu_bwd</c>).</param>
/// <param name="file">The kernels/ file holding its entry points (e.g. <c>swiglu.cu</c>).</param>
[AttributeUsage(AttributeTargets.Class, AllowMultiple = false)]
internal sealed class KernelOpAttribute(string name, string file) : Attribute
{
    /// <summary>The op's name.</summary>
    public string Name { get; } = name;

    /// <summary>The kernel file.</summary>
    public string File { get; } = file;
}
