namespace NativeParallel.Kernels.Reference;

/// <summary>
/// The plain reference for every kernel: scalar C#, float64 accumulation, written to be obviously correct and
/// never fast. Inputs are the f32 values the device saw (already rounded to the storage dtype); outputs are
/// float64, compared with a device's output by relative error.
/// </summary>
public static class ReferenceKernels
{
    /// <summary>out[t, :] = table[ids[t], :]; ids out of range give zeros.</summary>
    public static double[] Embedding(int[] ids, float[] table, int vocab, int hidden)
    {
        var output = new double[ids.Length * hidden];
        for (int t = 0; t < ids.Length; t++)
        {
            if ((uint)ids[t] >= (uint)vocab) continue;
            for (int j = 0; j < hidden; j++) output[t * hidden + j] = table[(long)ids[t] * hidden + j];
        }
        return output;
    }

    /// <summary>RMSNorm over rows of length d.</summary>
    public static double[] RmsNorm(float[] x, float[] weight, int rows, int d, float eps)
    {
        var y = new double[rows * d];
        for (int r = 0; r < rows; r++)
        {
            double sumSquares = 0;
            for (int j = 0; j < d; j++) sumSquares += (double)x[r * d + j] * x[r * d + j];
            double inv = 1.0 / Math.Sqrt(sumSquares / d + eps);
            for (int j = 0; j < d; j++) y[r * d + j] = x[r * d + j] * inv * weight[j];
        }
        return y;
    }

    /// <summary>LayerNorm over rows of length d (biased variance, as PyTorch).</summary>
    public static double[] LayerNorm(float[] x, float[] weight, float[] bias, int rows, int d, float eps)
    {
        var y = new double[rows * d];
        for (int r = 0; r < rows; r++)
        {
            double mean = 0;
            for (int j = 0; j < d; j++) mean += x[r * d + j];
            mean /= d;
            double variance = 0;
            for (int j = 0; j < d; j++) variance += (x[r * d + j] - mean) * (x[r * d + j] - mean);
            variance /= d;
            double inv = 1.0 / Math.Sqrt(variance + eps);
            for (int j = 0; j < d; j++) y[r * d + j] = (x[r * d + j] - mean) * inv * weight[j] + bias[j];
        }
        return y;
    }

    /// <summary>Rotary embedding, rotate_half convention: (x_i, x_{i+d/2}) rotated by pos · theta^(−2i/d).</summary>
    public static double[] Rope(float[] x, int[] positions, int tokens, int heads, int d, float theta)
    {
        var y = new double[x.Length];
        int half = d / 2;
        for (int t = 0; t < tokens; t++)
            for (int h = 0; h < heads; h++)
            {
                long row = ((long)t * heads + h) * d;
                for (int i = 0; i < half; i++)
                {
                    double frequency = Math.Pow(theta, -2.0 * i / d);
                    double angle = positions[t] * frequency;
                    double cos = Math.Cos(angle), sin = Math.Sin(angle);
                    double x1 = x[row + i], x2 = x[row + i + half];
                    y[row + i] = x1 * cos - x2 * sin;
                    y[row + i + half] = x2 * cos + x1 * sin;
                }
            }
        return y;
    }

    /// <summary>c = a · bᵀ with a: (m, k), b: (n, k).</summary>
    public static double[] Matmul(float[] a, float[] b, int m, int n, int k)
    {
        var c = new double[(long)m * n];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double sum = 0;
                for (int p = 0; p < k; p++) sum += (double)a[(long)i * k + p] * b[(long)j * k + p];
                c[(long)i * n + j] = sum;
            }
        return c;
    }

    /// <summary>x[r, :] + bias.</summary>
    public static double[] AddBias(float[] x, float[] bias, int rows, int n)
    {
        var y = new double[x.Length];
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < n; j++) y[r * n + j] = (double)x[r * n + j] + bias[j];
        return y;
    }

    /// <summary>a + b.</summary>
    public static double[] Add(float[] a, float[] b)
    {
        var y = new double[a.Length];
        for (int i = 0; i < a.Length; i++) y[i] = (double)a[i] + b[i];
        return y;
    }

    /// <summary>silu(gate) · up.</summary>
    public static double[] SwiGlu(float[] gate, float[] up)
    {
        var y = new double[gate.Length];
        for (int i = 0; i < y.Length; i++) y[i] = gate[i] / (1.0 + Math.Exp(-gate[i])) * up[i];
        return y;
    }

    /// <summary>GELU, tanh approximation: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).</summary>
    public static double[] Gelu(float[] x)
    {
        var y = new double[x.Length];
        double c = Math.Sqrt(2.0 / Math.PI);
        for (int i = 0; i < y.Length; i++)
        {
            double v = x[i];
            y[i] = 0.5 * v * (1.0 + Math.Tanh(c * (v + 0.044715 * v * v * v)));
        }
        return y;
    }

    /// <summary>softmax(scale · x) over rows of length n.</summary>
    public static double[] Softmax(float[] x, int rows, int n, float scale)
    {
        var y = new double[x.Length];
        for (int r = 0; r < rows; r++)
        {
            double max = double.NegativeInfinity;
            for (int j = 0; j < n; j++) max = Math.Max(max, (double)scale * x[r * n + j]);
            double sum = 0;
            for (int j = 0; j < n; j++) sum += y[r * n + j] = Math.Exp((double)scale * x[r * n + j] - max);
            for (int j = 0; j < n; j++) y[r * n + j] /= sum;
        }
        return y;
    }

    /// <summary>Causal grouped-query attention; query i at position queryStart + i sees keys j ≤ queryStart + i.</summary>
    public static double[] AttentionPrefill(float[] q, float[] k, float[] v, int batch, int tq, int tk, int hq, int hkv,
        int d, int queryStart, float scale)
    {
        var output = new double[(long)batch * tq * hq * d];
        int group = hq / hkv;
        var scores = new double[tk];
        for (int b = 0; b < batch; b++)
            for (int i = 0; i < tq; i++)
                for (int h = 0; h < hq; h++)
                {
                    int kvHead = h / group;
                    int visible = Math.Min(tk, queryStart + i + 1);
                    long qRow = (((long)b * tq + i) * hq + h) * d;
                    long outRow = qRow;
                    AttendRow(q, qRow, k, v, j => (((long)b * tk + j) * hkv + kvHead) * d, visible, d, scale, scores, output, outRow);
                }
        return output;
    }

    /// <summary>One query token per sequence over the first lengths[b] rows of the KV cache.</summary>
    public static double[] AttentionDecode(float[] q, float[] kCache, float[] vCache, int[] lengths, int batch,
        int capacity, int hq, int hkv, int d, float scale)
    {
        var output = new double[(long)batch * hq * d];
        int group = hq / hkv;
        var scores = new double[capacity];
        for (int b = 0; b < batch; b++)
            for (int h = 0; h < hq; h++)
            {
                int kvHead = h / group;
                long qRow = ((long)b * hq + h) * d;
                AttendRow(q, qRow, kCache, vCache, j => (((long)b * capacity + j) * hkv + kvHead) * d, lengths[b], d, scale,
                    scores, output, qRow);
            }
        return output;
    }

    private static void AttendRow(float[] q, long qRow, float[] k, float[] v, Func<int, long> keyRow, int visible, int d,
        float scale, double[] scores, double[] output, long outRow)
    {
        if (visible <= 0) return; // nothing visible: the output row is zeros
        double max = double.NegativeInfinity;
        for (int j = 0; j < visible; j++)
        {
            long kRow = keyRow(j);
            double dot = 0;
            for (int c = 0; c < d; c++) dot += (double)q[qRow + c] * k[kRow + c];
            scores[j] = dot * scale;
            max = Math.Max(max, scores[j]);
        }
        double sum = 0;
        for (int j = 0; j < visible; j++) sum += scores[j] = Math.Exp(scores[j] - max);
        for (int j = 0; j < visible; j++)
        {
            long vRow = keyRow(j);
            double p = scores[j] / sum;
            for (int c = 0; c < d; c++) output[outRow + c] += p * v[vRow + c];
        }
    }

    /// <summary>Index of the row maximum, lowest index on ties.</summary>
    public static int[] Argmax(float[] x, int rows, int n)
    {
        var indices = new int[rows];
        for (int r = 0; r < rows; r++)
        {
            int best = 0;
            for (int j = 1; j < n; j++) if (x[r * n + j] > x[r * n + best]) best = j;
            indices[r] = best;
        }
        return indices;
    }

    /// <summary>The k largest per row, descending, lower index first on ties.</summary>
    public static (double[] Values, int[] Indices) TopK(float[] x, int rows, int n, int k)
    {
        var values = new double[rows * k];
        var indices = new int[rows * k];
        for (int r = 0; r < rows; r++)
        {
            var order = Enumerable.Range(0, n).OrderByDescending(j => x[r * n + j]).ThenBy(j => j).Take(k).ToArray();
            for (int i = 0; i < k; i++)
            {
                indices[r * k + i] = order[i];
                values[r * k + i] = x[r * n + order[i]];
            }
        }
        return (values, indices);
    }

    /// <summary>op over the inputs element-wise.</summary>
    public static double[] Reduce(ReduceOp op, float[][] inputs)
    {
        int count = inputs[0].Length;
        var y = new double[count];
        for (int i = 0; i < count; i++)
        {
            double acc = inputs[0][i];
            for (int s = 1; s < inputs.Length; s++)
            {
                double v = inputs[s][i];
                acc = op switch
                {
                    ReduceOp.Sum or ReduceOp.Avg => acc + v,
                    ReduceOp.Prod => acc * v,
                    ReduceOp.Max => Math.Max(acc, v),
                    ReduceOp.Min => Math.Min(acc, v),
                    _ => throw new ArgumentOutOfRangeException(nameof(op)),
                };
            }
            y[i] = op == ReduceOp.Avg ? acc / inputs.Length : acc;
        }
        return y;
    }
}
