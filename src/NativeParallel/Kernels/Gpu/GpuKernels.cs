using NativeParallel.Tensors;

namespace NativeParallel.Kernels.Gpu;

/// <summary>
/// Block sizing shared by the row kernels that keep a row in registers (softmax v2, rmsnorm v2, cross_entropy v2);
/// each op's launcher lives in its file of Kernels/Ops/.
/// </summary>
internal static class GpuKernels
{
    /// <summary>16-byte vectors per thread of softmax and cross_entropy (SOFTMAX_VECS, CE_VECS).</summary>
    internal const int RowVecs = 8;

    /// <summary>
    /// The smallest block, in whole warps up to 1024 threads, whose <paramref name="vecs"/> 16-byte vectors per thread
    /// cover a row of <paramref name="n"/> elements at any misalignment (one vector more than n needs). Longer rows
    /// get 1024 threads and the kernels' streaming path.
    /// </summary>
    internal static uint RowCacheBlock(int n, DType dtype, int vecs)
    {
        int perVector = 16 / dtype.SizeOf();
        long vectors = (n + perVector - 1) / perVector + 1;
        long threads = (vectors + vecs - 1) / vecs;
        return (uint)Math.Clamp((threads + 31) / 32 * 32, 32, 1024);
    }
}
