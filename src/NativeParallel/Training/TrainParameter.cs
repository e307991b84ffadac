using NativeParallel.Devices;
using NativeParallel.Tensors;

namespace NativeParallel.Training;

/// <summary>
/// One trained tensor on the device: its f32 value, its gradient (accumulated by backward, zeroed each step) and the
/// two AdamW moments. <see cref="Decay"/> is true for 2-D tensors (embeddings and linear weights), which take
/// weight decay; norms do not.
/// </summary>
public sealed class TrainParameter : IDisposable
{
    internal TrainParameter(IDevice device, string name, float[] values, params int[] shape)
    {
        Name = name;
        Value = Tensor.FromFloats(device, values, DType.F32, shape);
        Grad = Zeros(device, shape);
        M = Zeros(device, shape);
        V = Zeros(device, shape);
        Decay = shape.Length == 2;
    }

    /// <summary>The Hugging Face name (e.g. <c>model.layers.0.self_attn.q_proj.weight</c>).</summary>
    public string Name { get; }

    /// <summary>The value (f32).</summary>
    public Tensor Value { get; }

    /// <summary>∂loss/∂value, accumulated by backward.</summary>
    public Tensor Grad { get; }

    /// <summary>AdamW's first moment.</summary>
    public Tensor M { get; }

    /// <summary>AdamW's second moment.</summary>
    public Tensor V { get; }

    /// <summary>Whether weight decay applies (2-D tensors only, as is usual for Llama training).</summary>
    public bool Decay { get; }

    /// <summary>Element count.</summary>
    public long Count => Value.Count;

    private static Tensor Zeros(IDevice device, int[] shape)
    {
        var t = Tensor.Empty(device, DType.F32, shape);
        t.FillBytes(0);
        return t;
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        Value.Dispose();
        Grad.Dispose();
        M.Dispose();
        V.Dispose();
    }
}
