using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace NativeParallel.Kernels.Cpu;

/// <summary>acc = acc op x element-wise on the host, for any number type: the CPU reduce kernel and the collectives' reduction step both use it.</summary>
internal static class ElementwiseReduce
{
    /// <summary>Combines <paramref name="x"/> into <paramref name="acc"/>; avg sums (the caller divides at the end).</summary>
    public static void Combine<T>(ReduceOp op, Span<T> acc, ReadOnlySpan<T> x) where T : unmanaged, System.Numerics.INumber<T>
    {
        switch (op)
        {
            case ReduceOp.Sum or ReduceOp.Avg: TensorPrimitives.Add(acc, x, acc); break;
            case ReduceOp.Prod: TensorPrimitives.Multiply(acc, x, acc); break;
            case ReduceOp.Max: TensorPrimitives.Max(acc, x, acc); break;
            case ReduceOp.Min: TensorPrimitives.Min(acc, x, acc); break;
            default: throw new ArgumentOutOfRangeException(nameof(op), op, "unknown reduce op");
        }
    }
}
