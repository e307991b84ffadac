using System.Runtime.InteropServices;
using NativeParallel.Kernels;
using NativeParallel.Kernels.Cpu;
using NativeParallel.Tensors;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace NativeParallel.Comm;

/// <summary>
/// The reduction step of host-memory collectives: acc = acc op incoming, element-wise over raw bytes of any
/// collective dtype (f32, bf16, f16, i32, i64), vectorised. Avg sums, then <see cref="Finish"/> divides by the
/// rank count. Each call combines two operands in a fixed order, so a fixed algorithm gives fixed results.
/// </summary>
internal static unsafe class HostReduce
{
    private const int Bf16Chunk = 2048;

    public static void Apply(ReduceOp op, DType dtype, Span<byte> acc, ReadOnlySpan<byte> incoming)
    {
        switch (dtype)
        {
            case DType.F32: Typed(op, MemoryMarshal.Cast<byte, float>(acc), MemoryMarshal.Cast<byte, float>(incoming)); break;
            case DType.F16: SixteenBit(op, MemoryMarshal.Cast<byte, ushort>(acc), MemoryMarshal.Cast<byte, ushort>(incoming), bf16: false); break;
            case DType.I32: Typed(op, MemoryMarshal.Cast<byte, int>(acc), MemoryMarshal.Cast<byte, int>(incoming)); break;
            case DType.I64: Typed(op, MemoryMarshal.Cast<byte, long>(acc), MemoryMarshal.Cast<byte, long>(incoming)); break;
            case DType.BF16: SixteenBit(op, MemoryMarshal.Cast<byte, ushort>(acc), MemoryMarshal.Cast<byte, ushort>(incoming), bf16: true); break;
            default: throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "not a collective dtype");
        }
    }

    /// <summary>The last step of avg: divide by the number of ranks (exact when the sum is a multiple of it).</summary>
    public static void Finish(ReduceOp op, DType dtype, Span<byte> acc, int ranks)
    {
        if (op != ReduceOp.Avg || ranks == 1) return;
        switch (dtype)
        {
            case DType.F32: TensorPrimitives.Divide(MemoryMarshal.Cast<byte, float>(acc), ranks, MemoryMarshal.Cast<byte, float>(acc)); break;
            case DType.F16: TensorPrimitives.Divide(MemoryMarshal.Cast<byte, Half>(acc), (Half)ranks, MemoryMarshal.Cast<byte, Half>(acc)); break;
            case DType.I32: TensorPrimitives.Divide(MemoryMarshal.Cast<byte, int>(acc), ranks, MemoryMarshal.Cast<byte, int>(acc)); break;
            case DType.I64: TensorPrimitives.Divide(MemoryMarshal.Cast<byte, long>(acc), ranks, MemoryMarshal.Cast<byte, long>(acc)); break;
            case DType.BF16:
            {
                var bits = MemoryMarshal.Cast<byte, ushort>(acc);
                for (int i = 0; i < bits.Length; i++) bits[i] = FloatBits.ToBF16(FloatBits.FromBF16(bits[i]) / ranks);
                break;
            }
        }
    }

    private static void Typed<T>(ReduceOp op, Span<T> acc, ReadOnlySpan<T> x) where T : unmanaged, System.Numerics.INumber<T> =>
        ElementwiseReduce.Combine(op, acc, x);

    // 16-bit floats combine in f32 (vectorised widening and narrowing), rounded once per step.
    private static void SixteenBit(ReduceOp op, Span<ushort> acc, ReadOnlySpan<ushort> x, bool bf16)
    {
        Span<float> a = stackalloc float[Bf16Chunk], b = stackalloc float[Bf16Chunk];
        for (int start = 0; start < acc.Length; start += Bf16Chunk)
        {
            int n = Math.Min(Bf16Chunk, acc.Length - start);
            fixed (ushort* pa = acc[start..], px = x[start..])
            {
                if (bf16)
                {
                    Bf16Vector.Widen(pa, a[..n]);
                    Bf16Vector.Widen(px, b[..n]);
                }
                else
                {
                    F16Vector.Widen(pa, a[..n]);
                    F16Vector.Widen(px, b[..n]);
                }
                Typed(op, a[..n], b[..n]);
                if (bf16) Bf16Vector.Narrow(a[..n], pa);
                else F16Vector.Narrow(a[..n], pa);
            }
        }
    }
}
