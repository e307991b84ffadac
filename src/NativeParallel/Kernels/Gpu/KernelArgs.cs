using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace NativeParallel.Kernels.Gpu;

// Mirrors of the argument structs in kernels/*.cu, field for field. Each kernel takes its struct by value as
// its only parameter, so a launch passes one pointer to a stack copy: no boxing, no allocation.
// KernelArgsLayoutTests compiles a static_assert of every size with NVRTC against these.

/// <summary>kernels/embedding.cu EmbeddingArgs.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct EmbeddingArgs
{
    public ulong Ids, Table, Out;
    public int Tokens, Hidden, Vocab;
}

/// <summary>kernels/rmsnorm.cu RmsNormArgs.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct RmsNormArgs
{
    public ulong X, Weight, Y;
    public int Rows, D;
    public float Eps;
}

/// <summary>kernels/layernorm.cu LayerNormArgs.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct LayerNormArgs
{
    public ulong X, Weight, Bias, Y;
    public int Rows, D;
    public float Eps;
}

/// <summary>kernels/rope.cu RopeArgs.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct RopeArgs
{
    public ulong X, Positions;
    public int Tokens, Heads, D;
    public float Theta;
}

/// <summary>kernels/matmul.cu MatmulArgs.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct MatmulArgs
{
    public ulong A, B, C;
    public int M, N, K;
}

/// <summary>kernels/bias_add.cu BiasAddArgs.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct BiasAddArgs
{
    public ulong X, Bias;
    public long Count;
    public int N;
}

/// <summary>kernels/residual_add.cu ResidualAddArgs, kernels/swiglu.cu SwiGluArgs: two inputs, one output.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct BinaryArgs
{
    public ulong A, B, Out;
    public long Count;
}

/// <summary>kernels/gelu.cu GeluArgs.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct UnaryArgs
{
    public ulong X, Out;
    public long Count;
}

/// <summary>kernels/softmax.cu SoftmaxArgs.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct SoftmaxArgs
{
    public ulong X, Y;
    public int Rows, N;
    public float Scale;
}

/// <summary>kernels/attention.cu AttentionPrefillArgs.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct AttentionPrefillArgs
{
    public ulong Q, K, V, Out;
    public int Batch, Tq, Tk, Hq, Hkv, D, QueryStart;
    public float Scale;
}

/// <summary>kernels/attention.cu AttentionDecodeArgs.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct AttentionDecodeArgs
{
    public ulong Q, KCache, VCache, Lengths, Out;
    public int Batch, Capacity, Hq, Hkv, D;
    public float Scale;
}

/// <summary>kernels/attention.cu AttentionDecodeSplitArgs (decode v2: split and combine).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct AttentionDecodeSplitArgs
{
    public ulong Q, KCache, VCache, Lengths, Out, Partials;
    public int Batch, Capacity, Hq, Hkv, D, Splits, Chunk;
    public float Scale;
}

/// <summary>kernels/argmax.cu ArgmaxArgs.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct ArgmaxArgs
{
    public ulong X, Indices;
    public int Rows, N;
}

/// <summary>kernels/topk.cu TopKArgs.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct TopKArgs
{
    public ulong X, Values, Indices;
    public int Rows, N, K;
}

/// <summary>kernels/reduce.cu ReduceArgs.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct ReduceArgs
{
    public SourcePointers Sources;
    public ulong Dst;
    public long Count;
    public int Inputs;

    [InlineArray(KernelLimits.MaxReduceInputs)]
    public struct SourcePointers
    {
        private ulong _element;
    }
}

/// <summary>The C name and C# mirror of every argument struct, for the layout test.</summary>
internal static class KernelArgsCatalog
{
    public static readonly IReadOnlyList<(string File, string CStruct, int ManagedSize)> All =
    [
        ("embedding.cu", "EmbeddingArgs", Unsafe.SizeOf<EmbeddingArgs>()),
        ("rmsnorm.cu", "RmsNormArgs", Unsafe.SizeOf<RmsNormArgs>()),
        ("layernorm.cu", "LayerNormArgs", Unsafe.SizeOf<LayerNormArgs>()),
        ("rope.cu", "RopeArgs", Unsafe.SizeOf<RopeArgs>()),
        ("matmul.cu", "MatmulArgs", Unsafe.SizeOf<MatmulArgs>()),
        ("bias_add.cu", "BiasAddArgs", Unsafe.SizeOf<BiasAddArgs>()),
        ("residual_add.cu", "ResidualAddArgs", Unsafe.SizeOf<BinaryArgs>()),
        ("swiglu.cu", "SwiGluArgs", Unsafe.SizeOf<BinaryArgs>()),
        ("gelu.cu", "GeluArgs", Unsafe.SizeOf<UnaryArgs>()),
        ("softmax.cu", "SoftmaxArgs", Unsafe.SizeOf<SoftmaxArgs>()),
        ("attention.cu", "AttentionPrefillArgs", Unsafe.SizeOf<AttentionPrefillArgs>()),
        ("attention.cu", "AttentionDecodeArgs", Unsafe.SizeOf<AttentionDecodeArgs>()),
        ("attention.cu", "AttentionDecodeSplitArgs", Unsafe.SizeOf<AttentionDecodeSplitArgs>()),
        ("argmax.cu", "ArgmaxArgs", Unsafe.SizeOf<ArgmaxArgs>()),
        ("topk.cu", "TopKArgs", Unsafe.SizeOf<TopKArgs>()),
        ("reduce.cu", "ReduceArgs", Unsafe.SizeOf<ReduceArgs>()),
        .. Ops.OpCatalog.ArgStructs,
    ];
}
