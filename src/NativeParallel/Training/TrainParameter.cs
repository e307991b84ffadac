using NativeParallel.Devices;
using NativeParallel.Tensors;

namespace NativeParallel.Training;

/// <summary>
/// One trained tensor on the device: its f32 master value, the working copy forward and backward read (the master
/// itself for an f32 model; a bf16 copy, rewritten by each AdamW step, for a bf16 model), its gradient in the
/// working dtype (accumulated by backward, zeroed each step) and the two f32 AdamW moments. <see cref="Decay"/> is
/// true for 2-D tensors (embeddings and linear weights), which take weight decay; norms do not.
/// </summary>
public sealed class TrainParameter : IDisposable
{
    internal TrainParameter(IDevice device, string name, float[] values, DType working, Tensor grad, params int[] shape)
    {
        Name = name;
        Value = Tensor.FromFloats(device, values, DType.F32, shape);
        Working = working == DType.F32 ? Value : Tensor.FromFloats(device, values, working, shape);
        Grad = grad;
        M = Zeros(device, DType.F32, shape);
        V = Zeros(device, DType.F32, shape);
        Decay = shape.Length == 2;
    }

    /// <summary>The Hugging Face name (e.g. <c>model.layers.0.self_attn.q_proj.weight</c>).</summary>
    public string Name { get; }

    /// <summary>The master value (f32).</summary>
    public Tensor Value { get; }

    /// <summary>What forward and backward read: <see cref="Value"/> itself, or its bf16 copy for a bf16 model.</summary>
    public Tensor Working { get; }

    /// <summary>True when <see cref="Working"/> is a separate lower-precision copy that each update rewrites.</summary>
    public bool HasWorkingCopy => !ReferenceEquals(Working, Value);

    /// <summary>∂loss/∂value in the working dtype, accumulated by backward: a view of the trainer's flat gradient buffer.</summary>
    public Tensor Grad { get; }

    /// <summary>AdamW's first moment.</summary>
    public Tensor M { get; }

    /// <summary>AdamW's second moment.</summary>
    public Tensor V { get; }

    /// <summary>Whether weight decay applies (2-D tensors only, as is usual for Llama training).</summary>
    public bool Decay { get; }

    /// <summary>Element count.</summary>
    public long Count => Value.Count;

    private static Tensor Zeros(IDevice device, DType dtype, int[] shape)
    {
        var t = Tensor.Empty(device, dtype, shape);
        t.FillBytes(0);
        return t;
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        Value.Dispose();
        if (HasWorkingCopy) Working.Dispose();
        M.Dispose();
        V.Dispose();
    }
}
