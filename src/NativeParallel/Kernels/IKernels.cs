using NativeParallel.Tensors;

namespace NativeParallel.Kernels;

/// <summary>Element-wise reduction applied across inputs (the collectives' reduction ops).</summary>
public enum ReduceOp
{
    /// <summary>Sum.</summary>
    Sum,
    /// <summary>Product.</summary>
    Prod,
    /// <summary>Maximum.</summary>
    Max,
    /// <summary>Minimum.</summary>
    Min,
    /// <summary>Mean of the inputs (sum, then divided by the input count).</summary>
    Avg,
}

/// <summary>
/// The kernels every device provides, one method per op: the facade the models and strategies call. Each op is
/// written in one file of Kernels/Ops/ (contract, checks, float64 reference, CPU path, launcher, cases) and each
/// method here is that op's Run, which dispatches on the tensors' device. Shapes are row-major and every tensor
/// contiguous. Float ops compute in f32 whatever the storage dtype; each op is checked against its float64
/// reference on every device present (see <see cref="Check.KernelSuite"/>).
/// Work is issued on the device's default stream; read results through the tensor (which synchronises).
/// </summary>
public interface IKernels
{
    /// <summary>out[t, :] = table[ids[t], :]. ids: i32 (tokens); table: (vocab, hidden); out: (tokens, hidden), same dtype as table. Ids outside [0, vocab) give zeros.</summary>
    void Embedding(Tensor ids, Tensor table, Tensor output);

    /// <summary>y = x / sqrt(mean(x²) + eps) · weight over the last dimension. x, y: (rows, d); weight: (d).</summary>
    void RmsNorm(Tensor x, Tensor weight, Tensor y, float eps);

    /// <summary>y = (x − mean) / sqrt(var + eps) · weight + bias over the last dimension. x, y: (rows, d); weight, bias: (d).</summary>
    void LayerNorm(Tensor x, Tensor weight, Tensor bias, Tensor y, float eps);

    /// <summary>
    /// Rotary embedding in place, Hugging Face Llama convention (rotate_half: element i pairs with i + d/2):
    /// x: (tokens, heads, d) with d even; positions: i32 (tokens); angle = pos · theta^(−2i/d).
    /// </summary>
    void Rope(Tensor x, Tensor positions, float theta);

    /// <summary>c = a · bᵀ, f32 accumulate. a: (m, k); b: (n, k), the nn.Linear weight layout; c: (m, n). a and b are both f32 or both bf16; c is f32 or bf16.</summary>
    void Matmul(Tensor a, Tensor b, Tensor c);

    /// <summary>x[r, :] += bias in place. x: (rows, n); bias: (n).</summary>
    void AddBias(Tensor x, Tensor bias);

    /// <summary>output = a + b element-wise (the residual add); output may be a or b.</summary>
    void Add(Tensor a, Tensor b, Tensor output);

    /// <summary>output = silu(gate) · up (SwiGLU); silu(g) = g / (1 + e^−g).</summary>
    void SwiGlu(Tensor gate, Tensor up, Tensor output);

    /// <summary>output = gelu(x), tanh approximation (GPT-2's).</summary>
    void Gelu(Tensor x, Tensor output);

    /// <summary>y = softmax(scale · x) over the last dimension. x, y: (rows, n).</summary>
    void Softmax(Tensor x, Tensor y, float scale);

    /// <summary>
    /// Causal attention with grouped-query heads. q: (batch, tq, hq, d); k, v: (batch, tk, hkv, d), hq a multiple of
    /// hkv (query head h reads kv head h / (hq / hkv)); output: (batch, tq, hq, d). Query i sits at global position
    /// queryStart + i and sees keys j ≤ queryStart + i (so a token-split slice attends to gathered K/V).
    /// </summary>
    void AttentionPrefill(Tensor q, Tensor k, Tensor v, Tensor output, int queryStart, float scale);

    /// <summary>
    /// One-token decode over a KV cache. q: (batch, hq, d); kCache, vCache: (batch, capacity, hkv, d); lengths: i32
    /// (batch), the number of valid cache rows (the new token included); output: (batch, hq, d).
    /// </summary>
    void AttentionDecode(Tensor q, Tensor kCache, Tensor vCache, Tensor lengths, Tensor output, float scale);

    /// <summary>indices[r] = index of the largest x[r, :] (lowest index on ties). x: (rows, n), n ≥ 1; indices: i32 (rows).</summary>
    void Argmax(Tensor x, Tensor indices);

    /// <summary>The k largest of each row, in descending order (lower index first on ties). x: (rows, n); values: f32 (rows, k); indices: i32 (rows, k); k ≤ n.</summary>
    void TopK(Tensor x, int k, Tensor values, Tensor indices);

    /// <summary>output = op(inputs[0], ..., inputs[m−1]) element-wise, 1 ≤ m ≤ 8, all of one float dtype; output may be one of the inputs (in place).</summary>
    void Reduce(ReduceOp op, ReadOnlySpan<Tensor> inputs, Tensor output);
}
