using NativeParallel.Kernels.Gpu;
using NativeParallel.Tensors;

namespace NativeParallel.Kernels.Ops;

/// <summary>
/// What an op file needs to choose its path and size its grid: the kernel launcher of a tensor's device (CUDA or
/// the emulated device) or, for the CPU device, none (the op's CPU path runs on host pointers).
/// </summary>
internal static class OpLaunch
{
    /// <summary>Threads per block of element-wise and row kernels.</summary>
    public const uint Block = 256;

    /// <summary>
    /// The launcher of <paramref name="t"/>'s device; null when the op's CPU path should run: the CPU device, and any
    /// device that launches no kernels, whose memory must then be host-addressable (a test's stand-in device).
    /// </summary>
    public static IKernelLauncher? LauncherOf(Tensor t) => t.Device as IKernelLauncher;

    /// <summary>Blocks for a grid-stride loop over <paramref name="items"/>: no more than fill the device a few times over.</summary>
    public static uint GridFor(IKernelLauncher launcher, long items, uint perBlock = Block)
    {
        long blocks = (items + perBlock - 1) / perBlock;
        return (uint)Math.Clamp(blocks, 1, Math.Max(1, launcher.MultiprocessorCount) * 32L);
    }

    /// <summary>Blocks for a row kernel (one block per row, grid-stride beyond the cap).</summary>
    public static uint RowGrid(IKernelLauncher launcher, long rows) =>
        (uint)Math.Clamp(rows, 1, Math.Max(1, launcher.MultiprocessorCount) * 64L);

    /// <summary>Blocks to cover <paramref name="extent"/> in tiles of <paramref name="tile"/> (one block per tile).</summary>
    public static uint Tiles(long extent, uint tile) => (uint)Math.Max(1, (extent + tile - 1) / tile);

    /// <summary>16-byte vectors per thread of the row kernels that keep a row in registers (SOFTMAX_VECS, CE_VECS).</summary>
    public const int RowVecs = 8;

    /// <summary>
    /// Threads per block of a row kernel that keeps its row in registers (softmax v2, rmsnorm v2, cross_entropy v2):
    /// the smallest block, in whole warps up to 1024 threads, whose <paramref name="vecs"/> 16-byte vectors per thread
    /// cover a row of <paramref name="n"/> elements at any misalignment (one vector more than n needs). Longer rows
    /// get 1024 threads and the kernels' streaming path.
    /// </summary>
    public static uint RowCacheBlock(int n, DType dtype, int vecs)
    {
        int perVector = 16 / dtype.SizeOf();
        long vectors = (n + perVector - 1) / perVector + 1;
        long threads = (vectors + vecs - 1) / vecs;
        return (uint)Math.Clamp((threads + 31) / 32 * 32, 32, 1024);
    }
}

/// <summary>
/// The entry-point names of one kernel for each storage dtype (<c>stem_f32</c>, <c>stem_bf16</c>...), built once so a
/// launch does no string work.
/// </summary>
internal sealed class EntryPoints(string stem)
{
    private readonly string _f32 = stem + "_f32", _bf16 = stem + "_bf16", _f16 = stem + "_f16";

    /// <summary>The entry point for <paramref name="dtype"/>.</summary>
    public string this[DType dtype] => dtype switch
    {
        DType.F32 => _f32,
        DType.BF16 => _bf16,
        DType.F16 => _f16,
        _ => throw new ArgumentException($"{stem}: no entry point for dtype {dtype.Name()}"),
    };
}
