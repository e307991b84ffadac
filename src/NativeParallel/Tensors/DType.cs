namespace NativeParallel.Tensors;

/// <summary>Element types a tensor can hold. Floating types are computed in f32 by every kernel.</summary>
public enum DType
{
    /// <summary>IEEE 754 binary32.</summary>
    F32,
    /// <summary>bfloat16: the top 16 bits of an f32 (8-bit exponent, 7-bit mantissa).</summary>
    BF16,
    /// <summary>IEEE 754 binary16.</summary>
    F16,
    /// <summary>32-bit signed integer (token ids, positions, indices).</summary>
    I32,
    /// <summary>64-bit signed integer.</summary>
    I64,
}

/// <summary>Sizes, names and parsing of <see cref="DType"/>.</summary>
public static class DTypes
{
    /// <summary>Bytes per element.</summary>
    public static int SizeOf(this DType dtype) => dtype switch
    {
        DType.F32 or DType.I32 => 4,
        DType.BF16 or DType.F16 => 2,
        DType.I64 => 8,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "unknown dtype"),
    };

    /// <summary>True for f32, bf16 and f16.</summary>
    public static bool IsFloat(this DType dtype) => dtype is DType.F32 or DType.BF16 or DType.F16;

    /// <summary>Short name used in kernel entry points and on the command line: f32, bf16, f16, i32, i64.</summary>
    public static string Name(this DType dtype) => dtype switch
    {
        DType.F32 => "f32",
        DType.BF16 => "bf16",
        DType.F16 => "f16",
        DType.I32 => "i32",
        DType.I64 => "i64",
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "unknown dtype"),
    };

    /// <summary>Parses f32/float/float32, bf16/bfloat16, f16/half/float16, i32/int32/int, i64/int64.</summary>
    public static DType Parse(string text) => text.ToLowerInvariant() switch
    {
        "f32" or "float" or "float32" or "fp32" => DType.F32,
        "bf16" or "bfloat16" => DType.BF16,
        "f16" or "half" or "float16" or "fp16" => DType.F16,
        "i32" or "int32" or "int" => DType.I32,
        "i64" or "int64" or "long" => DType.I64,
        _ => throw new ArgumentException($"unknown dtype '{text}': expected f32, bf16, f16, i32 or i64"),
    };
}
