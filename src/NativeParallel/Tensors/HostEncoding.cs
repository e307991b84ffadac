using System.Runtime.InteropServices;

namespace NativeParallel.Tensors;

/// <summary>Encodes floats into a dtype's bytes and back, on the host.</summary>
public static class HostEncoding
{
    /// <summary>Encodes f32 values as f32, bf16 or f16 bytes (round to nearest even).</summary>
    public static byte[] Encode(ReadOnlySpan<float> values, DType dtype)
    {
        switch (dtype)
        {
            case DType.F32:
                return MemoryMarshal.AsBytes(values).ToArray();
            case DType.BF16:
            case DType.F16:
            {
                var bits = new ushort[values.Length];
                if (dtype == DType.BF16) for (int i = 0; i < bits.Length; i++) bits[i] = FloatBits.ToBF16(values[i]);
                else for (int i = 0; i < bits.Length; i++) bits[i] = FloatBits.ToF16(values[i]);
                return MemoryMarshal.AsBytes(bits.AsSpan()).ToArray();
            }
            case DType.I32:
            {
                var ints = new int[values.Length];
                for (int i = 0; i < ints.Length; i++) ints[i] = checked((int)values[i]);
                return MemoryMarshal.AsBytes(ints.AsSpan()).ToArray();
            }
            default:
                throw new ArgumentException($"cannot encode floats as {dtype.Name()}");
        }
    }

    /// <summary>Decodes f32, bf16, f16 (or i32) bytes as f32 values.</summary>
    public static float[] DecodeFloats(ReadOnlySpan<byte> bytes, DType dtype)
    {
        switch (dtype)
        {
            case DType.F32:
                return MemoryMarshal.Cast<byte, float>(bytes).ToArray();
            case DType.BF16:
            {
                var bits = MemoryMarshal.Cast<byte, ushort>(bytes);
                var values = new float[bits.Length];
                for (int i = 0; i < values.Length; i++) values[i] = FloatBits.FromBF16(bits[i]);
                return values;
            }
            case DType.F16:
            {
                var bits = MemoryMarshal.Cast<byte, ushort>(bytes);
                var values = new float[bits.Length];
                for (int i = 0; i < values.Length; i++) values[i] = FloatBits.FromF16(bits[i]);
                return values;
            }
            case DType.I32:
            {
                var ints = MemoryMarshal.Cast<byte, int>(bytes);
                var values = new float[ints.Length];
                for (int i = 0; i < values.Length; i++) values[i] = ints[i];
                return values;
            }
            default:
                throw new ArgumentException($"cannot decode {dtype.Name()} as floats");
        }
    }
}
