namespace NativeParallel.Kernels.Reference;

/// <summary>
/// The float64 references of the forward ops, in one place for code that composes them (the model's independent
/// reference, <c>Models/LlamaReference.cs</c>, and gradient tests). Each forwards to the op's own Reference in
/// Kernels/Ops/, where it sits beside the kernels it checks: scalar C#, float64 accumulation, obviously correct and
/// never fast. Inputs are the f32 values the device saw (already rounded to the storage dtype).
/// </summary>
public static class ReferenceKernels
{
    /// <summary><see cref="Ops.Embedding.Reference"/>.</summary>
    public static double[] Embedding(int[] ids, float[] table, int vocab, int hidden) => Ops.Embedding.Reference(ids, table, vocab, hidden);

    /// <summary><see cref="Ops.RmsNorm.Reference"/>.</summary>
    public static double[] RmsNorm(float[] x, float[] weight, int rows, int d, float eps) => Ops.RmsNorm.Reference(x, weight, rows, d, eps);

    /// <summary><see cref="Ops.LayerNorm.Reference"/>.</summary>
    public static double[] LayerNorm(float[] x, float[] weight, float[] bias, int rows, int d, float eps) => Ops.LayerNorm.Reference(x, weight, bias, rows, d, eps);

    /// <summary><see cref="Ops.Rope.Reference"/>.</summary>
    public static double[] Rope(float[] x, int[] positions, int tokens, int heads, int d, float theta) => Ops.Rope.Reference(x, positions, tokens, heads, d, theta);

    /// <summary><see cref="Ops.Matmul.Reference"/>.</summary>
    public static double[] Matmul(float[] a, float[] b, int m, int n, int k) => Ops.Matmul.Reference(a, b, m, n, k);

    /// <summary><see cref="Ops.AddBias.Reference"/>.</summary>
    public static double[] AddBias(float[] x, float[] bias, int rows, int n) => Ops.AddBias.Reference(x, bias, rows, n);

    /// <summary><see cref="Ops.Add.Reference"/>.</summary>
    public static double[] Add(float[] a, float[] b) => Ops.Add.Reference(a, b);

    /// <summary><see cref="Ops.SwiGlu.Reference"/>.</summary>
    public static double[] SwiGlu(float[] gate, float[] up) => Ops.SwiGlu.Reference(gate, up);

    /// <summary><see cref="Ops.Gelu.Reference"/>.</summary>
    public static double[] Gelu(float[] x) => Ops.Gelu.Reference(x);

    /// <summary><see cref="Ops.Softmax.Reference"/>.</summary>
    public static double[] Softmax(float[] x, int rows, int n, float scale) => Ops.Softmax.Reference(x, rows, n, scale);

    /// <summary><see cref="Ops.AttentionPrefill.Reference"/>.</summary>
    public static double[] AttentionPrefill(float[] q, float[] k, float[] v, int batch, int tq, int tk, int hq, int hkv,
        int d, int queryStart, float scale) => Ops.AttentionPrefill.Reference(q, k, v, batch, tq, tk, hq, hkv, d, queryStart, scale);

    /// <summary><see cref="Ops.AttentionDecode.Reference"/>.</summary>
    public static double[] AttentionDecode(float[] q, float[] kCache, float[] vCache, int[] lengths, int batch,
        int capacity, int hq, int hkv, int d, float scale) => Ops.AttentionDecode.Reference(q, kCache, vCache, lengths, batch, capacity, hq, hkv, d, scale);

    /// <summary><see cref="Ops.Argmax.Reference"/>.</summary>
    public static int[] Argmax(float[] x, int rows, int n) => Ops.Argmax.Reference(x, rows, n);

    /// <summary><see cref="Ops.TopK.Reference"/>.</summary>
    public static (double[] Values, int[] Indices) TopK(float[] x, int rows, int n, int k) => Ops.TopK.Reference(x, rows, n, k);

    /// <summary><see cref="Ops.Reduce.Reference"/>.</summary>
    public static double[] Reduce(ReduceOp op, float[][] inputs) => Ops.Reduce.Reference(op, inputs);
}
