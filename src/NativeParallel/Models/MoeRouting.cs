namespace NativeParallel.Models;

/// <summary>
/// Mixtral's router: each token goes to its top-k experts by router logit (lower index first on ties), weighted
/// by the softmax of those k logits, on the host in float64: the float64 reference's router. The device computes
/// the same rule with its top-k and softmax kernels (<see cref="MoeExperts"/>).
/// </summary>
public static class MoeRouting
{
    /// <summary>One token's choice: experts in descending logit order and their weights.</summary>
    public readonly record struct Route(int[] Experts, float[] Weights);

    /// <summary>Routes each row of <paramref name="logits"/> (tokens, experts).</summary>
    public static Route[] Select(float[] logits, int experts, int k)
    {
        int tokens = logits.Length / experts;
        var routes = new Route[tokens];
        for (int t = 0; t < tokens; t++)
        {
            var row = logits.AsSpan(t * experts, experts);
            var chosen = new int[k];
            var used = new bool[experts];
            for (int j = 0; j < k; j++)
            {
                int best = -1;
                for (int e = 0; e < experts; e++)
                    if (!used[e] && (best < 0 || row[e] > row[best])) best = e;
                used[best] = true;
                chosen[j] = best;
            }
            double max = row[chosen[0]], sum = 0;
            var weights = new float[k];
            for (int j = 0; j < k; j++) sum += Math.Exp(row[chosen[j]] - max);
            for (int j = 0; j < k; j++) weights[j] = (float)(Math.Exp(row[chosen[j]] - max) / sum);
            routes[t] = new Route(chosen, weights);
        }
        return routes;
    }
}
