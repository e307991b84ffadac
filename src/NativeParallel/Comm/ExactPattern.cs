using NativeParallel.Kernels;

namespace NativeParallel.Comm;

/// <summary>
/// Inputs whose collective results are exact in every dtype (f32, bf16, f16, i32, i64) and in any reduction
/// order: small integers for sums and extremes, products of ones and twos, avg inputs that are multiples of the
/// rank count. nccl-tests' trick, so #wrong is an exact count, not a tolerance.
/// </summary>
public static class ExactPattern
{
    /// <summary>Element <paramref name="i"/> of rank <paramref name="rank"/>'s input for <paramref name="op"/>.</summary>
    public static long Value(ReduceOp op, int rank, int ranks, long i) => op switch
    {
        ReduceOp.Prod => (rank + i) % 3 == 0 ? 2 : 1,
        ReduceOp.Avg => ranks * ((rank + i) % 4),
        ReduceOp.Max or ReduceOp.Min => (rank * 7 + i * 3) % 11 - 5,
        _ => (rank + 2 * i) % 7 - 2,
    };

    /// <summary>The reduction over all ranks of element <paramref name="i"/>.</summary>
    public static long Reduced(ReduceOp op, int ranks, long i)
    {
        long acc = Value(op, 0, ranks, i);
        for (int r = 1; r < ranks; r++)
        {
            long v = Value(op, r, ranks, i);
            acc = op switch
            {
                ReduceOp.Sum or ReduceOp.Avg => acc + v,
                ReduceOp.Prod => acc * v,
                ReduceOp.Max => Math.Max(acc, v),
                _ => Math.Min(acc, v),
            };
        }
        return op == ReduceOp.Avg ? acc / ranks : acc;
    }
}
