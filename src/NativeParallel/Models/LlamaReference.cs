using Ops = NativeParallel.Kernels.Ops;
using NativeParallel.Tensors;

namespace NativeParallel.Models;

/// <summary>
/// The Llama forward pass built from the ops' float64 references (each op's <c>Reference</c> in Kernels/Ops/) on the host: no cache, no device, every
/// intermediate rounded to the model dtype as a device stores it. The golden run that every device and every
/// parallel layout is checked against.
/// </summary>
public static class LlamaReference
{
    /// <summary>Logits (tokens, vocab) for a whole sequence starting at position 0.</summary>
    public static float[] Logits(LlamaWeights w, int[] ids)
    {
        var c = w.Config;
        int t = ids.Length, h = c.Hidden, d = c.HeadDim, qd = c.Heads * d, kvd = c.KvHeads * d;
        float[] F(double[] values) => Store(values, c.DType);
        var positions = Enumerable.Range(0, t).ToArray();
        float scale = 1f / MathF.Sqrt(d);
        var x = F(Ops.Embedding.Reference(ids, w.Embedding, c.Vocab, h));
        foreach (var layer in w.Layers)
        {
            var normed = F(Ops.RmsNorm.Reference(x, layer.InputNorm, t, h, c.NormEps));
            var q = F(Ops.Rope.Reference(F(Ops.Matmul.Reference(normed, layer.Q, t, qd, h)), positions, t, c.Heads, d, c.RopeTheta));
            var k = F(Ops.Rope.Reference(F(Ops.Matmul.Reference(normed, layer.K, t, kvd, h)), positions, t, c.KvHeads, d, c.RopeTheta));
            var v = F(Ops.Matmul.Reference(normed, layer.V, t, kvd, h));
            var attention = F(Ops.AttentionPrefill.Reference(q, k, v, 1, t, t, c.Heads, c.KvHeads, d, 0, scale));
            x = F(Ops.Add.Reference(x, F(Ops.Matmul.Reference(attention, layer.O, t, h, qd))));
            normed = F(Ops.RmsNorm.Reference(x, layer.PostNorm, t, h, c.NormEps));
            if (c.Experts > 0)
            {
                x = F(Ops.Add.Reference(x, Moe(layer, normed, c, t, F)));
                continue;
            }
            var gate = F(Ops.Matmul.Reference(normed, layer.Gate, t, c.Ffn, h));
            var up = F(Ops.Matmul.Reference(normed, layer.Up, t, c.Ffn, h));
            var mlp = F(Ops.Matmul.Reference(F(Ops.SwiGlu.Reference(gate, up)), layer.Down, t, h, c.Ffn));
            x = F(Ops.Add.Reference(x, mlp));
        }
        var final = F(Ops.RmsNorm.Reference(x, w.FinalNorm, t, h, c.NormEps));
        return F(Ops.Matmul.Reference(final, w.LmHead, t, c.Vocab, h));
    }

    // Mixtral's MoE FFN, expert by expert over the tokens routed to it, combined in each token's top-k order.
    private static float[] Moe(LlamaWeights.Layer layer, float[] normed, LlamaConfig c, int t, Func<double[], float[]> F)
    {
        int h = c.Hidden;
        var routes = MoeRouting.Select(F(Ops.Matmul.Reference(normed, layer.Router, t, c.Experts, h)), c.Experts, c.ExpertsPerToken);
        var output = new double[t * h];
        for (int token = 0; token < t; token++)
        {
            var row = normed.AsSpan(token * h, h).ToArray();
            for (int j = 0; j < routes[token].Experts.Length; j++)
            {
                var expert = layer.Experts[routes[token].Experts[j]];
                var gate = F(Ops.Matmul.Reference(row, expert.Gate, 1, c.Ffn, h));
                var up = F(Ops.Matmul.Reference(row, expert.Up, 1, c.Ffn, h));
                var y = F(Ops.Matmul.Reference(F(Ops.SwiGlu.Reference(gate, up)), expert.Down, 1, h, c.Ffn));
                for (int i = 0; i < h; i++) output[token * h + i] += routes[token].Weights[j] * (double)y[i];
            }
        }
        return Array.ConvertAll(output, v => (float)v);
    }

    /// <summary>
    /// Generation by recomputing the whole sequence per token (slow, obviously right): greedy, or drawn by
    /// <paramref name="sampler"/> (step i is draw i of its stream, as the device runs draw).
    /// </summary>
    public static int[] Generate(LlamaWeights w, int[] prompt, int newTokens, Sampler? sampler = null)
    {
        var sequence = prompt.ToList();
        var generated = new int[newTokens];
        for (int i = 0; i < newTokens; i++)
        {
            var logits = Logits(w, sequence.ToArray());
            int last = sequence.Count - 1;
            var row = logits.AsSpan(last * w.Config.Vocab, w.Config.Vocab);
            generated[i] = sampler is null ? Ops.Argmax.Reference(row.ToArray(), 1, w.Config.Vocab)[0] : sampler.Next(row, i);
            sequence.Add(generated[i]);
        }
        return generated;
    }

    private static float[] Store(double[] values, DType dtype)
    {
        var result = new float[values.Length];
        for (int i = 0; i < result.Length; i++) result[i] = FloatBits.RoundTo(dtype, (float)values[i]);
        return result;
    }
}
