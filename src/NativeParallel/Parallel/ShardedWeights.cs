using NativeParallel.Models;

namespace NativeParallel.Parallel;

/// <summary>
/// Cuts a rank's part out of the full weights, Megatron's way: column-parallel layers (q, k, v, gate, up, the
/// LM head and the embedding's vocabulary) keep a block of output rows; row-parallel layers (o, down) keep a
/// block of input columns, so their partial outputs sum (one all-reduce) to the full result.
/// </summary>
internal static class ShardedWeights
{
    /// <summary>Rows [r0, r1) of a (rows, cols) matrix.</summary>
    public static float[] Rows(float[] w, int cols, int r0, int r1) => w.AsSpan(r0 * cols, (r1 - r0) * cols).ToArray();

    /// <summary>Columns [c0, c1) of a (rows, cols) matrix.</summary>
    public static float[] Columns(float[] w, int rows, int cols, int c0, int c1)
    {
        int width = c1 - c0;
        var result = new float[rows * width];
        for (int r = 0; r < rows; r++) w.AsSpan(r * cols + c0, width).CopyTo(result.AsSpan(r * width));
        return result;
    }

    /// <summary>This rank's slice of one decoder layer.</summary>
    public static LlamaWeights.Layer Layer(LlamaWeights.Layer l, ParallelLayout p)
    {
        var c = p.Config;
        int d = c.HeadDim, h = c.Hidden;
        int q0 = p.FirstQueryHead * d, q1 = q0 + p.QueryHeads * d;
        int kv0 = p.FirstKvHead * d, kv1 = kv0 + p.KvHeads * d;
        int f0 = p.Tp.Rank * p.FfnShard, f1 = f0 + p.FfnShard;
        if (c.Experts > 0)
            return new LlamaWeights.Layer(l.InputNorm, Rows(l.Q, h, q0, q1), Rows(l.K, h, kv0, kv1), Rows(l.V, h, kv0, kv1),
                Columns(l.O, h, c.Heads * d, q0, q1), l.PostNorm, [], [], []) { Router = l.Router, Experts = l.Experts };
        return new LlamaWeights.Layer(l.InputNorm, Rows(l.Q, h, q0, q1), Rows(l.K, h, kv0, kv1), Rows(l.V, h, kv0, kv1),
            Columns(l.O, h, c.Heads * d, q0, q1), l.PostNorm, Rows(l.Gate, h, f0, f1), Rows(l.Up, h, f0, f1),
            Columns(l.Down, h, c.Ffn, f0, f1));
    }
}
