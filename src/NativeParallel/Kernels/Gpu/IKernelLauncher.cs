namespace NativeParallel.Kernels.Gpu;

/// <summary>Grid and block extents of a launch.</summary>
public readonly record struct Dim3(uint X, uint Y = 1, uint Z = 1)
{
    /// <inheritdoc/>
    public override string ToString() => $"({X}, {Y}, {Z})";
}

/// <summary>
/// What the op files' launchers (Kernels/Ops/) need from a device that runs kernels/*.cu: the target architecture, its size,
/// and a launch of a named entry point with one argument struct. The CUDA device implements it; an emulated
/// device can implement it too, so the host code (argument packing, grid math, caching) is shared.
/// </summary>
public interface IKernelLauncher
{
    /// <summary>Name used in errors, e.g. <c>cuda:0</c>.</summary>
    string Name { get; }

    /// <summary>Number of streaming multiprocessors (sizes grid-stride grids).</summary>
    int MultiprocessorCount { get; }

    /// <summary>Launches <paramref name="function"/> of <paramref name="file"/> on the default stream with <paramref name="args"/> as its only parameter.</summary>
    void Launch<TArgs>(string file, string function, Dim3 grid, Dim3 block, uint sharedBytes, in TArgs args) where TArgs : unmanaged;
}
