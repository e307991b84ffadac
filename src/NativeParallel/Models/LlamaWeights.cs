using NativeParallel.Tensors;

namespace NativeParallel.Models;

/// <summary>
/// Seeded random weights of a <see cref="LlamaConfig"/>, held on the host as f32 values already rounded to the
/// model dtype (the reference reads them; devices upload them). Tensor i of the model is stream (seed, i) of
/// <see cref="SeededRandom"/>, so every device and rank builds the same model. Names follow Hugging Face Llama.
/// </summary>
public sealed class LlamaWeights
{
    /// <summary>One decoder layer's weights; matrices are (out, in) as nn.Linear stores them.</summary>
    public sealed record Layer(float[] InputNorm, float[] Q, float[] K, float[] V, float[] O, float[] PostNorm, float[] Gate, float[] Up, float[] Down)
    {
        /// <summary>MoE layers: block_sparse_moe.gate.weight (experts, hidden); empty for dense layers.</summary>
        public float[] Router { get; init; } = [];
        /// <summary>MoE layers: experts.{e}.w1 (ffn, hidden), w3 (ffn, hidden), w2 (hidden, ffn) per expert.</summary>
        public Expert[] Experts { get; init; } = [];
    }

    /// <summary>One expert's SwiGLU MLP.</summary>
    public sealed record Expert(float[] Gate, float[] Up, float[] Down);

    /// <summary>Builds the weights for <paramref name="config"/> from <paramref name="seed"/>.</summary>
    public LlamaWeights(LlamaConfig config, ulong seed)
    {
        config.Validate();
        Config = config;
        int stream = 0;
        int h = config.Hidden, qd = config.Heads * config.HeadDim, kvd = config.KvHeads * config.HeadDim;
        float[] Matrix(int rows, int cols) => Normal(seed, stream++, (long)rows * cols, 1f / MathF.Sqrt(cols), config.DType);
        float[] Norm(int n) => Uniform(seed, stream++, n, 0.8f, 1.2f, config.DType);
        Embedding = Normal(seed, stream++, (long)config.Vocab * h, 1f, config.DType);
        Layers = new Layer[config.Layers];
        for (int l = 0; l < config.Layers; l++)
        {
            if (config.Experts == 0)
            {
                Layers[l] = new Layer(Norm(h), Matrix(qd, h), Matrix(kvd, h), Matrix(kvd, h), Matrix(h, qd), Norm(h),
                    Matrix(config.Ffn, h), Matrix(config.Ffn, h), Matrix(h, config.Ffn));
                continue;
            }
            var attention = (Norm(h), Matrix(qd, h), Matrix(kvd, h), Matrix(kvd, h), Matrix(h, qd), Norm(h));
            Layers[l] = new Layer(attention.Item1, attention.Item2, attention.Item3, attention.Item4, attention.Item5, attention.Item6, [], [], [])
            {
                Router = Matrix(config.Experts, h),
                Experts = Enumerable.Range(0, config.Experts).Select(_ => new Expert(Matrix(config.Ffn, h), Matrix(config.Ffn, h), Matrix(h, config.Ffn))).ToArray(),
            };
        }
        FinalNorm = Norm(h);
        LmHead = Matrix(config.Vocab, h);
    }

    /// <summary>Weights read from elsewhere (a checkpoint): the arrays as given, already in the config's dtype.</summary>
    public LlamaWeights(LlamaConfig config, float[] embedding, Layer[] layers, float[] finalNorm, float[] lmHead)
    {
        config.Validate();
        Config = config;
        Embedding = embedding;
        Layers = layers;
        FinalNorm = finalNorm;
        LmHead = lmHead;
    }

    /// <summary>The shape.</summary>
    public LlamaConfig Config { get; }
    /// <summary>model.embed_tokens.weight (vocab, hidden).</summary>
    public float[] Embedding { get; }
    /// <summary>model.layers.*.</summary>
    public Layer[] Layers { get; }
    /// <summary>model.norm.weight (hidden).</summary>
    public float[] FinalNorm { get; }
    /// <summary>lm_head.weight (vocab, hidden).</summary>
    public float[] LmHead { get; }

    private static float[] Normal(ulong seed, int stream, long count, float std, DType dtype)
    {
        var values = new float[count];
        SeededRandom.Normal(seed * 7919 + (ulong)stream, values, 0f, std);
        return Round(values, dtype);
    }

    private static float[] Uniform(ulong seed, int stream, long count, float lo, float hi, DType dtype)
    {
        var values = new float[count];
        SeededRandom.Uniform(seed * 7919 + (ulong)stream, values, lo, hi);
        return Round(values, dtype);
    }

    private static float[] Round(float[] values, DType dtype)
    {
        if (dtype != DType.F32) for (int i = 0; i < values.Length; i++) values[i] = FloatBits.RoundTo(dtype, values[i]);
        return values;
    }
}
