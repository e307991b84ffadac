using NativeParallel.Tensors;

namespace NativeParallel.Models;

/// <summary>Shape of a Llama-style decoder (the Hugging Face LlamaConfig fields that matter here).</summary>
public sealed record LlamaConfig
{
    /// <summary>Vocabulary size.</summary>
    public int Vocab { get; init; } = 1000;
    /// <summary>Model width.</summary>
    public int Hidden { get; init; } = 256;
    /// <summary>Decoder layers.</summary>
    public int Layers { get; init; } = 2;
    /// <summary>Query heads.</summary>
    public int Heads { get; init; } = 8;
    /// <summary>Key/value heads (grouped-query attention when fewer than <see cref="Heads"/>).</summary>
    public int KvHeads { get; init; } = 2;
    /// <summary>MLP width (gate, up).</summary>
    public int Ffn { get; init; } = 688;
    /// <summary>RoPE base.</summary>
    public float RopeTheta { get; init; } = 10000f;
    /// <summary>RMSNorm epsilon.</summary>
    public float NormEps { get; init; } = 1e-5f;
    /// <summary>Storage dtype of weights and activations (f32 or bf16).</summary>
    public DType DType { get; init; } = DType.F32;
    /// <summary>Mixture-of-experts FFN (Mixtral style) with this many experts; 0 for a dense SwiGLU MLP.</summary>
    public int Experts { get; init; }
    /// <summary>Experts each token is routed to (top-k of the router).</summary>
    public int ExpertsPerToken { get; init; } = 2;
    /// <summary>
    /// Expert parallelism: each expert takes at most ceil(factor × routed tokens / experts) tokens per layer
    /// call; the rest are dropped (counted). 0 means no limit.
    /// </summary>
    public double CapacityFactor { get; init; }

    /// <summary>Longest sequence the KV cache holds.</summary>
    public int MaxSequence { get; init; } = 256;

    /// <summary>Per-head width.</summary>
    public int HeadDim => Hidden / Heads;

    /// <summary>The small default model of <c>nativeparallel run</c>.</summary>
    public static LlamaConfig Small { get; } = new();

    /// <summary>Throws when the shape is inconsistent.</summary>
    public void Validate()
    {
        // Sizes first: the divisions below need them positive.
        if (Vocab < 1 || Hidden < 1 || Layers < 1 || Heads < 1 || KvHeads < 1 || Ffn < 1 || MaxSequence < 1)
            throw new ArgumentException($"vocab ({Vocab}), hidden ({Hidden}), layers ({Layers}), heads ({Heads}), kv heads ({KvHeads}), ffn ({Ffn}) and max sequence ({MaxSequence}) must be at least 1");
        if (!float.IsFinite(RopeTheta) || RopeTheta <= 0) throw new ArgumentException($"rope theta ({RopeTheta}) must be a positive number");
        if (!float.IsFinite(NormEps) || NormEps < 0) throw new ArgumentException($"norm epsilon ({NormEps}) must be a number at least 0");
        if (Hidden % Heads != 0) throw new ArgumentException($"hidden ({Hidden}) must be a multiple of heads ({Heads})");
        if (Heads % KvHeads != 0) throw new ArgumentException($"heads ({Heads}) must be a multiple of kv heads ({KvHeads})");
        if (HeadDim % 2 != 0) throw new ArgumentException($"head dimension ({HeadDim}) must be even for RoPE");
        if (DType is not (DType.F32 or DType.BF16)) throw new ArgumentException($"dtype must be f32 or bf16, got {DType.Name()}");
        if (Experts < 0 || (Experts > 0 && (ExpertsPerToken < 1 || ExpertsPerToken > Experts)))
            throw new ArgumentException($"experts per token ({ExpertsPerToken}) must be in 1..experts ({Experts})");
    }

    /// <summary>Parameter count.</summary>
    public long Parameters =>
        2L * Vocab * Hidden + Hidden +
        Layers * (2L * Hidden + (long)Hidden * HeadDim * (2 * Heads + 2 * KvHeads) +
                  (Experts == 0 ? 3L * Hidden * Ffn : Experts * (3L * Hidden * Ffn + Hidden)));
}
