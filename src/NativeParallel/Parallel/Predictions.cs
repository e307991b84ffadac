using NativeParallel.Models;
using NativeParallel.Tensors;

namespace NativeParallel.Parallel;

/// <summary>
/// The standard formulas the run table prints beside its measurements: bytes sent per processed token (summed
/// over ranks, ring collectives) and the pipeline bubble. TP: two all-reduces of a token's hidden state per layer
/// (plus one for the vocabulary-parallel embedding) at 2(t−1)·S each, and the LM head's all-gather of (t−1)·V;
/// PP: one hidden state per stage boundary from each TP rank; SP: each layer all-gathers every prompt token's K
/// and V, (s−1)·2·kv, and the logits; decode tokens are computed by every SP rank, so TP and PP traffic of decode
/// is paid s times; EP: two all-to-alls per MoE layer of the routed tokens' hidden states; DP: nothing.
/// Bubble: (p−1)/(m+p−1) for m micro-batches through p stages.
/// </summary>
public static class Predictions
{
    /// <summary>Predicted bytes on the wire per processed token (all ranks).</summary>
    public static double BytesPerToken(LlamaConfig c, Strategy s, int promptTokens, int newTokens)
    {
        int es = c.DType.SizeOf();
        double h = c.Hidden * es, kv = c.KvHeads * c.HeadDim * es, vocab = c.Vocab * es;
        int t = s.Tp, p = s.Pp, q = s.Sp;
        // The share of processed tokens that are prompt tokens (split by SP); decode tokens run on every SP rank.
        double prefill = (double)promptTokens / (promptTokens + newTokens - 1), replicated = prefill + (1 - prefill) * q;
        // MoE layers are not TP-split: only attention's o_proj all-reduces there.
        int allReducesPerLayer = c.Experts > 0 ? 1 : 2;
        double tp = t > 1 ? (allReducesPerLayer * c.Layers + 1.0) * 2 * (t - 1) * h + (t - 1) * vocab : 0;
        // EP: two all-to-alls per MoE layer; each of a token's k routings leaves the rank with probability (e−1)/e,
        // carrying its hidden state and its expert id (i32) out and the expert's output back, in the model's dtype.
        double ep = s.Ep > 1 ? c.Layers * c.ExpertsPerToken * (s.Ep - 1.0) / s.Ep * (2 * h + sizeof(int)) : 0;
        double pp = (p - 1) * h * t;
        double sp = q > 1 ? prefill * ((q - 1) * 2 * kv * c.Layers + t * (q - 1) * c.Vocab * sizeof(float)) : 0;
        return (tp + pp) * replicated + sp + ep * t;
    }

    /// <summary>The idle fraction of a pipeline of <paramref name="stages"/> fed <paramref name="microBatches"/> micro-batches.</summary>
    public static double Bubble(int stages, int microBatches) => stages <= 1 ? 0 : (stages - 1.0) / (microBatches + stages - 1);
}
