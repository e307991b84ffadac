using NativeParallel.Kernels;
using NativeParallel.Tensors;

namespace NativeParallel.Native;

/// <summary>npResult_t: NCCL's result codes, same numbers, so a host's NCCL error handling reads them as it would NCCL's.</summary>
internal enum NpResult
{
    Success = 0,
    UnhandledCudaError = 1,
    SystemError = 2,
    InternalError = 3,
    InvalidArgument = 4,
    InvalidUsage = 5,
    RemoteError = 6,
}

/// <summary>npDataType_t and npRedOp_t, numbered as ncclDataType_t and ncclRedOp_t (only the types we reduce exist).</summary>
internal static class NpEnums
{
    /// <summary>NCCL's numbers for the element types the collectives support.</summary>
    public static DType DataType(int value) => value switch
    {
        2 => DType.I32,
        4 => DType.I64,
        6 => DType.F16,
        7 => DType.F32,
        9 => DType.BF16,
        _ => throw new ArgumentException($"datatype {value} is not supported: use npInt32 (2), npInt64 (4), npFloat16 (6), npFloat32 (7) or npBfloat16 (9)"),
    };

    /// <summary>ncclSum, ncclProd, ncclMax, ncclMin, ncclAvg.</summary>
    public static ReduceOp RedOp(int value) => value switch
    {
        0 => ReduceOp.Sum,
        1 => ReduceOp.Prod,
        2 => ReduceOp.Max,
        3 => ReduceOp.Min,
        4 => ReduceOp.Avg,
        _ => throw new ArgumentException($"reduction op {value} is not supported: use npSum (0), npProd (1), npMax (2), npMin (3) or npAvg (4)"),
    };
}
