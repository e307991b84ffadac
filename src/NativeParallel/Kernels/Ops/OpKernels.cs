using NativeParallel.Tensors;

namespace NativeParallel.Kernels.Ops;

/// <summary>
/// The <see cref="IKernels"/> facade of every device: each method is its op's static Run, which checks the
/// arguments, traces itself and dispatches on the tensors' device (a kernel launcher for CUDA and the emulated
/// device, the CPU path otherwise). Stateless: one instance serves every device.
/// </summary>
internal sealed class OpKernels : IKernels
{
    /// <summary>The one instance.</summary>
    public static readonly OpKernels Instance = new();

    private OpKernels() { }

    public void Embedding(Tensor ids, Tensor table, Tensor output) => Ops.Embedding.Run(ids, table, output);
    public void RmsNorm(Tensor x, Tensor weight, Tensor y, float eps) => Ops.RmsNorm.Run(x, weight, y, eps);
    public void LayerNorm(Tensor x, Tensor weight, Tensor bias, Tensor y, float eps) => Ops.LayerNorm.Run(x, weight, bias, y, eps);
    public void Rope(Tensor x, Tensor positions, float theta) => Ops.Rope.Run(x, positions, theta);
    public void Matmul(Tensor a, Tensor b, Tensor c) => Ops.Matmul.Run(a, b, c);
    public void AddBias(Tensor x, Tensor bias) => Ops.AddBias.Run(x, bias);
    public void Add(Tensor a, Tensor b, Tensor output) => Ops.Add.Run(a, b, output);
    public void SwiGlu(Tensor gate, Tensor up, Tensor output) => Ops.SwiGlu.Run(gate, up, output);
    public void Gelu(Tensor x, Tensor output) => Ops.Gelu.Run(x, output);
    public void Softmax(Tensor x, Tensor y, float scale) => Ops.Softmax.Run(x, y, scale);
    public void AttentionPrefill(Tensor q, Tensor k, Tensor v, Tensor output, int queryStart, float scale) => Ops.AttentionPrefill.Run(q, k, v, output, queryStart, scale);
    public void AttentionDecode(Tensor q, Tensor kCache, Tensor vCache, Tensor lengths, Tensor output, float scale) => Ops.AttentionDecode.Run(q, kCache, vCache, lengths, output, scale);
    public void Argmax(Tensor x, Tensor indices) => Ops.Argmax.Run(x, indices);
    public void TopK(Tensor x, int k, Tensor values, Tensor indices) => Ops.TopK.Run(x, k, values, indices);
    public void Reduce(ReduceOp op, ReadOnlySpan<Tensor> inputs, Tensor output) => Ops.Reduce.Run(op, inputs, output);
}
