using NativeParallel.Models;

namespace NativeParallel.Training.Reference;

/// <summary>
/// The float64 reference trainer: a plain forward pass of the Llama decoder in double precision (loops, no
/// kernels), gradients by central finite differences of that loss, and AdamW written out in double as
/// torch.optim.AdamW defines it, with torch's gradient clipping. A mixture-of-experts layer routes as Mixtral does
/// (top-k router logits, lower index first on ties, softmax over those k) and drops as the trainer does (each expert
/// keeps its first ceil(capacity factor × routings / experts) routings in slot order; none dropped at factor 0). It shares no code with <see cref="LlamaTrainer"/>
/// or its backward kernels, so agreement is a real check. Finite differences cost two forwards per parameter: it is
/// for tiny models (a few thousand parameters) in tests.
/// </summary>
public sealed class ReferenceTrainer
{
    private readonly LlamaConfig _c;
    private readonly (string Name, int[] Shape, int Offset, bool Decay)[] _layout;
    private readonly double[] _m, _v;

    /// <summary>Starts from <paramref name="weights"/> (dense or MoE), in <see cref="LlamaTrainer.Parameters"/> order.</summary>
    public ReferenceTrainer(LlamaWeights weights)
    {
        _c = weights.Config;
        var tensors = new List<(string, float[], int[])> { ("embed", weights.Embedding, [_c.Vocab, _c.Hidden]) };
        int h = _c.Hidden, qd = _c.Heads * _c.HeadDim, kvd = _c.KvHeads * _c.HeadDim, f = _c.Ffn;
        foreach (var l in weights.Layers)
        {
            tensors.Add(("input_norm", l.InputNorm, [h]));
            tensors.Add(("q", l.Q, [qd, h]));
            tensors.Add(("k", l.K, [kvd, h]));
            tensors.Add(("v", l.V, [kvd, h]));
            tensors.Add(("o", l.O, [h, qd]));
            tensors.Add(("post_norm", l.PostNorm, [h]));
            if (_c.Experts == 0)
            {
                tensors.Add(("gate", l.Gate, [f, h]));
                tensors.Add(("up", l.Up, [f, h]));
                tensors.Add(("down", l.Down, [h, f]));
                continue;
            }
            tensors.Add(("router", l.Router, [_c.Experts, h]));
            foreach (var e in l.Experts)
            {
                tensors.Add(("w1", e.Gate, [f, h]));
                tensors.Add(("w3", e.Up, [f, h]));
                tensors.Add(("w2", e.Down, [h, f]));
            }
        }
        tensors.Add(("final_norm", weights.FinalNorm, [h]));
        tensors.Add(("lm_head", weights.LmHead, [_c.Vocab, h]));
        _layout = new (string, int[], int, bool)[tensors.Count];
        var values = new List<double>();
        for (int i = 0; i < tensors.Count; i++)
        {
            var (name, data, shape) = tensors[i];
            _layout[i] = (name, shape, values.Count, shape.Length == 2);
            foreach (float x in data) values.Add(x);
        }
        Theta = values.ToArray();
        _m = new double[Theta.Length];
        _v = new double[Theta.Length];
    }

    /// <summary>Every parameter, flattened in <see cref="LlamaTrainer.Parameters"/> order.</summary>
    public double[] Theta { get; }

    /// <summary>The flat range of parameter tensor <paramref name="index"/>.</summary>
    public (int Offset, int Count) Range(int index)
    {
        var entry = _layout[index];
        return (entry.Offset, entry.Shape.Aggregate(1, (a, b) => a * b));
    }

    /// <summary>Mean cross-entropy of (inputs, targets), B rows of T tokens, in float64.</summary>
    public double Loss(double[] theta, int[] inputs, int[] targets, int batch, int sequence)
    {
        int n = batch * sequence, h = _c.Hidden, d = _c.HeadDim, hq = _c.Heads, hkv = _c.KvHeads, f = _c.Ffn, vocab = _c.Vocab;
        int qd = hq * d, kvd = hkv * d;
        int next = 0;
        int Take() => _layout[next++].Offset;
        int embed = Take();
        var x = new double[n * h];
        for (int t = 0; t < n; t++)
            for (int j = 0; j < h; j++) x[t * h + j] = theta[embed + inputs[t] * h + j];
        for (int layer = 0; layer < _c.Layers; layer++)
        {
            int inNorm = Take(), wq = Take(), wk = Take(), wv = Take(), wo = Take(), postNorm = Take();
            var n1 = RmsNorm(x, theta, inNorm, n, h);
            var q = Linear(n1, theta, wq, n, qd, h);
            var k = Linear(n1, theta, wk, n, kvd, h);
            var v = Linear(n1, theta, wv, n, kvd, h);
            Rope(q, n, hq, d, sequence);
            Rope(k, n, hkv, d, sequence);
            var attention = Attention(q, k, v, batch, sequence, hq, hkv, d);
            var projected = Linear(attention, theta, wo, n, h, qd);
            for (int i = 0; i < x.Length; i++) x[i] += projected[i];
            var n2 = RmsNorm(x, theta, postNorm, n, h);
            var ffn = _c.Experts == 0 ? SwiGlu(n2, theta, Take(), Take(), Take(), n) : Moe(n2, theta, Take, n);
            for (int i = 0; i < x.Length; i++) x[i] += ffn[i];
        }
        var final = RmsNorm(x, theta, Take(), n, h);
        var logits = Linear(final, theta, Take(), n, vocab, h);
        double total = 0;
        for (int t = 0; t < n; t++)
        {
            double max = double.NegativeInfinity;
            for (int j = 0; j < vocab; j++) max = Math.Max(max, logits[t * vocab + j]);
            double sum = 0;
            for (int j = 0; j < vocab; j++) sum += Math.Exp(logits[t * vocab + j] - max);
            total += max + Math.Log(sum) - logits[t * vocab + targets[t]];
        }
        return total / n;
    }

    /// <summary>∂loss/∂θ by central differences with step <paramref name="h"/>.</summary>
    public double[] Gradient(int[] inputs, int[] targets, int batch, int sequence, double h = 1e-5)
    {
        var theta = (double[])Theta.Clone();
        var gradient = new double[theta.Length];
        System.Threading.Tasks.Parallel.For(0, Environment.ProcessorCount, worker =>
        {
            var local = (double[])theta.Clone();
            for (int i = worker; i < local.Length; i += Environment.ProcessorCount)
            {
                double saved = local[i];
                local[i] = saved + h;
                double plus = Loss(local, inputs, targets, batch, sequence);
                local[i] = saved - h;
                double minus = Loss(local, inputs, targets, batch, sequence);
                local[i] = saved;
                gradient[i] = (plus - minus) / (2 * h);
            }
        });
        return gradient;
    }

    /// <summary>
    /// One step as torch does it: loss, gradient, clip_grad_norm_ (coefficient min(1, clip/(norm + 1e-6)); 0 = off),
    /// then AdamW (decay lr·wd·p first, on 2-D tensors; moments; bias-corrected update). Returns (loss, norm).
    /// </summary>
    public (double Loss, double GradNorm) Step(int[] inputs, int[] targets, int batch, int sequence, double lr, double beta1, double beta2,
        double eps, double weightDecay, int step, double gradClip)
    {
        double loss = Loss(Theta, inputs, targets, batch, sequence);
        var g = Gradient(inputs, targets, batch, sequence);
        double norm = Math.Sqrt(g.Sum(x => x * x));
        double coefficient = gradClip > 0 ? Math.Min(1.0, gradClip / (norm + 1e-6)) : 1.0;
        double bias1 = 1 - Math.Pow(beta1, step), bias2 = 1 - Math.Pow(beta2, step);
        foreach (var (_, shape, offset, decay) in _layout)
        {
            int count = shape.Aggregate(1, (a, b) => a * b);
            for (int i = offset; i < offset + count; i++)
            {
                double gi = g[i] * coefficient;
                if (decay) Theta[i] -= lr * weightDecay * Theta[i];
                _m[i] = beta1 * _m[i] + (1 - beta1) * gi;
                _v[i] = beta2 * _v[i] + (1 - beta2) * gi * gi;
                double denom = Math.Sqrt(_v[i]) / Math.Sqrt(bias2) + eps;
                Theta[i] -= lr / bias1 * _m[i] / denom;
            }
        }
        return (loss, norm);
    }

    // down(silu(gate(x)) · up(x)) over rows of x, with the three weights at theta[gate], theta[up], theta[down].
    private double[] SwiGlu(double[] x, double[] theta, int gate, int up, int down, int rows)
    {
        int h = _c.Hidden, f = _c.Ffn;
        var g = Linear(x, theta, gate, rows, f, h);
        var u = Linear(x, theta, up, rows, f, h);
        for (int i = 0; i < g.Length; i++) g[i] = g[i] / (1 + Math.Exp(-g[i])) * u[i];
        return Linear(g, theta, down, rows, h, f);
    }

    // Mixtral's FFN: the router's top-k per token, softmax over those logits, each kept routing's expert MLP.
    private double[] Moe(double[] x, double[] theta, Func<int> take, int tokens)
    {
        int h = _c.Hidden, experts = _c.Experts, k = _c.ExpertsPerToken;
        var logits = Linear(x, theta, take(), tokens, experts, h);
        var weights = new (int W1, int W3, int W2)[experts];
        for (int e = 0; e < experts; e++) weights[e] = (take(), take(), take());
        long capacity = _c.CapacityFactor > 0 ? (long)Math.Ceiling(_c.CapacityFactor * tokens * k / experts) : long.MaxValue;
        var taken = new long[experts];
        var output = new double[tokens * h];
        var chosen = new int[k];
        for (int t = 0; t < tokens; t++)
        {
            var row = logits.AsSpan(t * experts, experts);
            for (int j = 0; j < k; j++)
            {
                int best = -1;
                for (int e = 0; e < experts; e++)
                    if (Array.IndexOf(chosen, e, 0, j) < 0 && (best < 0 || row[e] > row[best])) best = e;
                chosen[j] = best;
            }
            double sum = 0;
            for (int j = 0; j < k; j++) sum += Math.Exp(row[chosen[j]] - row[chosen[0]]);
            var input = x.AsSpan(t * h, h).ToArray();
            for (int j = 0; j < k; j++)
            {
                int e = chosen[j];
                if (taken[e]++ >= capacity) continue; // dropped: slots arrive in order t·k + j
                double p = Math.Exp(row[e] - row[chosen[0]]) / sum;
                var y = SwiGlu(input, theta, weights[e].W1, weights[e].W3, weights[e].W2, 1);
                for (int i = 0; i < h; i++) output[t * h + i] += p * y[i];
            }
        }
        return output;
    }

    private double[] RmsNorm(double[] x, double[] theta, int weight, int rows, int d)
    {
        var y = new double[x.Length];
        for (int r = 0; r < rows; r++)
        {
            double sum = 0;
            for (int j = 0; j < d; j++) sum += x[r * d + j] * x[r * d + j];
            double inv = 1 / Math.Sqrt(sum / d + _c.NormEps);
            for (int j = 0; j < d; j++) y[r * d + j] = x[r * d + j] * inv * theta[weight + j];
        }
        return y;
    }

    // y = x · Wᵀ with W (outputs, inputs) at theta[weight].
    private static double[] Linear(double[] x, double[] theta, int weight, int rows, int outputs, int inputs)
    {
        var y = new double[rows * outputs];
        for (int r = 0; r < rows; r++)
            for (int o = 0; o < outputs; o++)
            {
                double sum = 0;
                for (int i = 0; i < inputs; i++) sum += x[r * inputs + i] * theta[weight + o * inputs + i];
                y[r * outputs + o] = sum;
            }
        return y;
    }

    // rotate_half RoPE; token t of the batch sits at position t mod T of its row.
    private void Rope(double[] x, int tokens, int heads, int d, int sequence)
    {
        int half = d / 2;
        for (int t = 0; t < tokens; t++)
            for (int hh = 0; hh < heads; hh++)
                for (int i = 0; i < half; i++)
                {
                    double angle = (t % sequence) * Math.Pow(_c.RopeTheta, -2.0 * i / d);
                    int a = (t * heads + hh) * d + i, b = a + half;
                    double x1 = x[a], x2 = x[b];
                    x[a] = x1 * Math.Cos(angle) - x2 * Math.Sin(angle);
                    x[b] = x2 * Math.Cos(angle) + x1 * Math.Sin(angle);
                }
    }

    private static double[] Attention(double[] q, double[] k, double[] v, int batch, int sequence, int hq, int hkv, int d)
    {
        var output = new double[batch * sequence * hq * d];
        double scale = 1 / Math.Sqrt(d);
        var scores = new double[sequence];
        for (int b = 0; b < batch; b++)
            for (int i = 0; i < sequence; i++)
                for (int head = 0; head < hq; head++)
                {
                    int kvHead = head / (hq / hkv);
                    int qRow = ((b * sequence + i) * hq + head) * d;
                    double max = double.NegativeInfinity;
                    for (int j = 0; j <= i; j++)
                    {
                        int kRow = ((b * sequence + j) * hkv + kvHead) * d;
                        double s = 0;
                        for (int e = 0; e < d; e++) s += q[qRow + e] * k[kRow + e];
                        scores[j] = s * scale;
                        max = Math.Max(max, scores[j]);
                    }
                    double sum = 0;
                    for (int j = 0; j <= i; j++) sum += scores[j] = Math.Exp(scores[j] - max);
                    for (int j = 0; j <= i; j++)
                    {
                        int vRow = ((b * sequence + j) * hkv + kvHead) * d;
                        for (int e = 0; e < d; e++) output[qRow + e] += scores[j] / sum * v[vRow + e];
                    }
                }
        return output;
    }
}
