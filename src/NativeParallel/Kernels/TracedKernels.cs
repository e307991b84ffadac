using NativeParallel.Diagnostics;
using NativeParallel.Tensors;

namespace NativeParallel.Kernels;

/// <summary>
/// A device's kernels with a trace event around each op (name, bytes of its tensors, FLOPs of a matmul). Every device
/// wraps its kernels in this once, so all of them are traced by the same code; with no trace recording each call
/// costs one branch more.
/// </summary>
internal sealed class TracedKernels(IKernels inner) : IKernels
{
    public void Embedding(Tensor ids, Tensor table, Tensor output)
    {
        using var _ = Tracer.Kernel("embedding", ids, table, output);
        inner.Embedding(ids, table, output);
    }

    public void RmsNorm(Tensor x, Tensor weight, Tensor y, float eps)
    {
        using var _ = Tracer.Kernel("rmsnorm", x, weight, y);
        inner.RmsNorm(x, weight, y, eps);
    }

    public void LayerNorm(Tensor x, Tensor weight, Tensor bias, Tensor y, float eps)
    {
        using var _ = Tracer.Kernel("layernorm", x, weight, bias, y);
        inner.LayerNorm(x, weight, bias, y, eps);
    }

    public void Rope(Tensor x, Tensor positions, float theta)
    {
        using var _ = Tracer.Kernel("rope", x, positions);
        inner.Rope(x, positions, theta);
    }

    public void Matmul(Tensor a, Tensor b, Tensor c)
    {
        // c (m, n) = a (m, k) · bᵀ: one multiply and one add per (m, n, k).
        using var _ = Tracer.Kernel("matmul", 2 * c.Count * a.Dim(-1), a, b, c);
        inner.Matmul(a, b, c);
    }

    public void AddBias(Tensor x, Tensor bias)
    {
        using var _ = Tracer.Kernel("add_bias", x, bias);
        inner.AddBias(x, bias);
    }

    public void Add(Tensor a, Tensor b, Tensor output)
    {
        using var _ = Tracer.Kernel("add", a, b, output);
        inner.Add(a, b, output);
    }

    public void SwiGlu(Tensor gate, Tensor up, Tensor output)
    {
        using var _ = Tracer.Kernel("swiglu", gate, up, output);
        inner.SwiGlu(gate, up, output);
    }

    public void Gelu(Tensor x, Tensor output)
    {
        using var _ = Tracer.Kernel("gelu", x, output);
        inner.Gelu(x, output);
    }

    public void Softmax(Tensor x, Tensor y, float scale)
    {
        using var _ = Tracer.Kernel("softmax", x, y);
        inner.Softmax(x, y, scale);
    }

    public void AttentionPrefill(Tensor q, Tensor k, Tensor v, Tensor output, int queryStart, float scale)
    {
        using var _ = Tracer.Kernel("attention_prefill", q, k, v, output);
        inner.AttentionPrefill(q, k, v, output, queryStart, scale);
    }

    public void AttentionDecode(Tensor q, Tensor kCache, Tensor vCache, Tensor lengths, Tensor output, float scale)
    {
        using var _ = Tracer.Kernel("attention_decode", q, kCache, vCache, lengths, output);
        inner.AttentionDecode(q, kCache, vCache, lengths, output, scale);
    }

    public void Argmax(Tensor x, Tensor indices)
    {
        using var _ = Tracer.Kernel("argmax", x, indices);
        inner.Argmax(x, indices);
    }

    public void TopK(Tensor x, int k, Tensor values, Tensor indices)
    {
        using var _ = Tracer.Kernel("topk", x, values, indices);
        inner.TopK(x, k, values, indices);
    }

    public void Reduce(ReduceOp op, ReadOnlySpan<Tensor> inputs, Tensor output)
    {
        using var _ = Tracer.Current is null ? default : Tracer.Kernel("reduce", [.. inputs, output]);
        inner.Reduce(op, inputs, output);
    }
}
