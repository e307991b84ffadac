using System.Runtime.CompilerServices;

namespace NativeParallel.Tensors;

/// <summary>
/// Conversions between f32 and the 16-bit float formats, bit-exact with the kernels' helpers in
/// kernels/common/dtypes.cuh: round to nearest even, NaN kept NaN.
/// </summary>
public static class FloatBits
{
    /// <summary>f32 → bf16 bits, round to nearest even; NaN stays a quiet NaN.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort ToBF16(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if ((bits & 0x7FFF_FFFFu) > 0x7F80_0000u) return (ushort)((bits >> 16) | 0x0040);
        uint roundingBias = 0x7FFFu + ((bits >> 16) & 1u);
        return (ushort)((bits + roundingBias) >> 16);
    }

    /// <summary>bf16 bits → f32 (exact).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float FromBF16(ushort bits) => BitConverter.UInt32BitsToSingle((uint)bits << 16);

    /// <summary>f32 → f16 bits, round to nearest even (IEEE, as the hardware does).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort ToF16(float value) => BitConverter.HalfToUInt16Bits((Half)value);

    /// <summary>f16 bits → f32 (exact).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float FromF16(ushort bits) => (float)BitConverter.UInt16BitsToHalf(bits);

    /// <summary>Rounds a float to what the given float dtype can hold (identity for f32).</summary>
    public static float RoundTo(DType dtype, float value) => dtype switch
    {
        DType.F32 => value,
        DType.BF16 => FromBF16(ToBF16(value)),
        DType.F16 => FromF16(ToF16(value)),
        _ => throw new ArgumentException($"{dtype.Name()} is not a float dtype"),
    };
}
